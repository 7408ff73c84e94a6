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
