"""A diverged run stops with a clear error before anything is saved."""

import os

import keras
import numpy as np
import pytest

from keras_prompt import BestPromptCheckpoint
from keras_prompt import FiniteGuard
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt.training.finite_guard import TrainingDivergedError
from tests.test_case import tiny_backbone


def diverging_classifier():
    model = PromptClassifier(
        FrozenBackbone(tiny_backbone("bert"), prompt_length=2),
        num_classes=2,
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e30))
    return model


def data():
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(5, 30, (16, 6)).astype("int32"),
        "segment_ids": np.zeros((16, 6), "int32"),
        "padding_mask": np.ones((16, 6), "int32"),
    }
    return x, rng.integers(0, 2, 16)


def test_diverged_training_raises_naming_the_step_and_writes_nothing(
    tmp_path,
):
    model = diverging_classifier()
    path = os.path.join(str(tmp_path), "best.prompt.safetensors")
    x, y = data()
    with pytest.raises(TrainingDivergedError, match="learning rate") as info:
        model.fit(
            x,
            y,
            batch_size=4,
            epochs=3,
            verbose=0,
            callbacks=[
                FiniteGuard(),
                BestPromptCheckpoint(path, monitor="loss", mode="min"),
            ],
        )
    assert "Training diverged at step" in str(info.value)
    assert not os.path.exists(path)


def test_check_every_is_validated():
    with pytest.raises(ValueError, match="check_every"):
        FiniteGuard(check_every=0)
    with pytest.raises(TypeError, match="check_every"):
        FiniteGuard(check_every=1.5)


def guard_on(losses, epoch_steps=None, every=1, **kwargs):
    """Feeds `FiniteGuard` the running means Keras reports for the
    per-step `losses` (epochs of `epoch_steps`; every `every` steps, as
    with `steps_per_execution`); returns the step it stopped at, or
    `None`."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
    guard = FiniteGuard(**kwargs)
    guard.set_model(model)
    guard.on_train_begin()
    epoch_steps = epoch_steps or len(losses)
    for step, _ in enumerate(losses):
        batch = step % epoch_steps
        if batch == 0:
            guard.on_epoch_begin(step // epoch_steps)
        if (batch + 1) % every and batch + 1 < epoch_steps:
            continue
        mean = np.mean(losses[step - batch : step + 1])
        try:
            guard.on_train_batch_end(batch, {"loss": mean})
        except TrainingDivergedError as error:
            assert "Nothing was saved" in str(error)
            assert "learning_rate=0.5" in str(error)
            return step + 1
    return None


def test_a_loss_running_away_from_its_start_stops_the_run():
    # The rule: the mean of the last 10 steps over 10 x the first loss.
    start = [0.7]
    assert guard_on(start + [0.5] * 40) is None
    assert guard_on(start + [5.0] * 40) is None  # 7.1 x: far, not 10 x
    climbing = start + [2.0**k for k in range(40)]
    # Steps 2-11 average 102.3 > 7: stopped at step 11, not before.
    assert guard_on(climbing) == 11
    # Epochs of 3 steps: the running means restart, the rule holds.
    assert guard_on(climbing, epoch_steps=3) == 11
    # Reported every 4 steps: the steps in between are recovered from the
    # running mean; the first report (steps 1-4, mean 6.175) is the start.
    first = start + [8.0] * 3
    assert guard_on(first + [0.5] * 40, every=4) is None
    assert guard_on(first + [60.0] * 40, every=4) is None
    assert guard_on(first + [70.0] * 40, every=4) == 16
    assert guard_on(start + [8.0] * 40, window=5) == 6
    # Off: no factor, or a start that bounds nothing.
    assert guard_on(climbing, factor=None) is None
    assert guard_on([0.0] + [2.0**k for k in range(40)]) is None
    # Non-finite values still stop at once.
    assert guard_on(start + [float("inf")]) == 2


def test_divergence_settings_are_validated():
    with pytest.raises(ValueError, match="factor"):
        FiniteGuard(factor=1.0)
    with pytest.raises(ValueError, match="window"):
        FiniteGuard(window=0)
