"""`PromptTrainingCheckpoint` and `Recipe.fit(resume=True)`: interrupted
runs continue to the very prompt an uninterrupted run reaches.

A tiny random BERT (with dropout, so the seed-generator states matter) is
prompt-tuned on a few examples of the real SST-2 in `../shared/tfds`; a
callback raises at a chosen step to stand in for a crash.
"""

import os

import keras
import numpy as np
import pytest

import keras_prompt
from keras_prompt.prompt_files import read_prompt_file
from keras_prompt.training import Recipe
from keras_prompt.training.training_checkpoint import STATE_FILE
from keras_prompt.training.training_checkpoint import PromptTrainingCheckpoint
from keras_prompt.training.training_checkpoint import seed_generators
from tests.cli.test_tune import needs_sst2
from tests.cli.test_tune import tiny_bert_preset
from tests.conftest import SHARED_TFDS_DIR
from tests.test_case import tiny_backbone

STEPS, INTERVAL, EVERY = 10, 4, 3


class Crash(Exception):
    pass


class CrashAt(keras.callbacks.Callback):
    """Raises after the optimizer step `step`, before later callbacks."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Crash(self.step)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return tiny_bert_preset(str(tmp_path_factory.mktemp("tiny_bert")))


def recipe():
    return Recipe(
        task="glue/sst2",
        prompt_length=3,
        initializer="random_uniform",
        optimizer_name="adam",
        learning_rate=0.05,
        batch_size=8,
        steps=STEPS,
        eval_interval=STEPS,
        eval_batch_size=16,
        encoder_sequence_length=16,
        seed=0,
    )


def run(preset, output_dir, crash_at=None, changes=None, **kwargs):
    """Builds the model afresh (as a new process would) and fits it."""
    keras_prompt.set_random_seed(0)
    r = recipe().replace(pooling="mean", **(changes or {}))
    model = r.build_model(preset)
    result = r.fit(
        model,
        output_dir,
        train_data=r.examples(model, "train", SHARED_TFDS_DIR, 48),
        validation_data=r.examples(model, "validation", SHARED_TFDS_DIR, 16),
        callbacks=[CrashAt(crash_at)] if crash_at else None,
        verbose=0,
        restore_best=False,
        eval_interval=INTERVAL,
        **kwargs,
    )
    state = {k: v.numpy().copy() for k, v in model.trained_variables().items()}
    for weight in model.trainable_weights:
        state[weight.path] = weight.numpy().copy()
    return model, result, state


@needs_sst2
def test_resumed_recipe_reaches_the_uninterrupted_prompt(preset, tmp_path):
    model, reference, expected = run(
        preset, tmp_path / "straight", checkpoint_every=EVERY
    )
    assert any(
        isinstance(layer, keras.layers.Dropout)
        for layer in model._flatten_layers()
    )
    # Crashes inside an epoch (5: after the save of step 3 and the epoch end
    # at 4), right after an evaluation's save (8) and at the last step.
    folder = tmp_path / "resumed"
    for step in (5, 8, STEPS):
        with pytest.raises(Crash):
            run(preset, folder, crash_at=step, resume=True, checkpoint_every=3)
    _, result, state = run(preset, folder, resume=True, checkpoint_every=3)
    for name in expected:
        np.testing.assert_array_equal(state[name], expected[name])
    assert result.steps == STEPS
    assert [e["step"] for e in result.evaluations] == [4, 8, 10]
    for got, want in zip(result.evaluations, reference.evaluations):
        assert got["value"] == want["value"]
        assert got["epoch"] == want["epoch"]
    assert result.best_step == reference.best_step
    # (Not byte for byte: safetensors orders its header keys per process.)
    got, got_metadata = read_prompt_file(folder / "best.prompt.safetensors")
    want, want_metadata = read_prompt_file(
        tmp_path / "straight" / "best.prompt.safetensors"
    )
    assert got_metadata == want_metadata
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert seed_generators(model)  # Dropout draws: their states matter.


@needs_sst2
@pytest.mark.parametrize(
    "changes",
    [
        {"reparameterization": {"method": "residual", "bottleneck_dim": 4}},
        {"schedule": "cosine"},
    ],
    ids=["residual", "cosine"],
)
def test_resumed_run_with_more_state_reaches_the_same_weights(
    preset, tmp_path, changes
):
    """A residual reparameterisation's raw prompt and network are in the
    checkpoint, and a cosine schedule goes on from the saved step: the
    resumed run ends with the same weights."""
    _, _, expected = run(
        preset, tmp_path / "straight", changes=changes, checkpoint_every=EVERY
    )
    if "reparameterization" in changes:
        assert any("reparameterization" in name for name in expected)
    folder = tmp_path / "resumed"
    with pytest.raises(Crash):
        run(
            preset,
            folder,
            crash_at=5,
            changes=changes,
            resume=True,
            checkpoint_every=EVERY,
        )
    _, _, state = run(
        preset, folder, changes=changes, resume=True, checkpoint_every=EVERY
    )
    assert state.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(state[name], expected[name])
    # The schedule matters: a constant rate ends elsewhere.
    if "schedule" in changes:
        _, _, constant = run(
            preset, tmp_path / "constant", checkpoint_every=EVERY
        )
        assert any(
            not np.array_equal(constant[name], expected[name])
            for name in expected
        )


@needs_sst2
def test_checkpoint_is_refused_without_resume_and_for_other_settings(
    preset, tmp_path
):
    with pytest.raises(Crash):
        run(
            preset,
            tmp_path,
            crash_at=4,
            checkpoint_every=EVERY,
            run_config={"lr": 1},
        )
    with pytest.raises(ValueError, match="resume=True"):
        run(preset, tmp_path, checkpoint_every=EVERY)
    with pytest.raises(ValueError, match=r"other settings \(run.lr: 1 -> 2\)"):
        run(
            preset,
            tmp_path,
            checkpoint_every=EVERY,
            resume=True,
            run_config={"lr": 2},
        )
    # A resume with no checkpoint starts from the beginning.
    _, result, _ = run(preset, tmp_path / "new", resume=True)
    assert result.steps == STEPS


def test_plain_fit_resumes_at_the_last_epoch_end(tmp_path):
    """The callback alone, in a user's own `fit`: restored at `fit`'s start
    from the newest epoch-end checkpoint, then deleted at its end."""
    x = np.random.default_rng(0).integers(1, 20, size=(32, 6))
    inputs = {
        "token_ids": x,
        "segment_ids": np.zeros_like(x),
        "padding_mask": np.ones_like(x, dtype=bool),
    }
    y = (x[:, 0] > 10).astype("int32")
    directory = str(tmp_path / "ckpt")

    def fit(epochs, crash_at=None):
        model = build_model()
        callbacks = [CrashAt(crash_at)] if crash_at else []
        callbacks.append(PromptTrainingCheckpoint(directory, save_freq=2))
        model.fit(
            inputs,
            y,
            batch_size=8,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        return model.backbone.prompt_values(), model

    expected, _ = fit(3)
    assert not os.path.exists(directory)
    with pytest.raises(Crash):
        fit(3, crash_at=11)  # In the third epoch (4 steps each).
    names = sorted(os.listdir(directory))
    assert names == ["step-000000008", "step-000000010"]
    reader = PromptTrainingCheckpoint(directory)
    states = [reader.read_state(os.path.join(directory, n))[1] for n in names]
    assert [s["epoch_end"] for s in states] == [True, False]
    got, model = fit(3)
    np.testing.assert_array_equal(got, expected)
    assert int(model.optimizer.iterations.numpy()) == 12
    assert not os.path.exists(directory)


def build_model():
    keras_prompt.set_random_seed(1)
    backbone = keras_prompt.FrozenBackbone(
        tiny_backbone("bert", dropout=0.3), prompt_length=2
    )
    model = keras_prompt.PromptClassifier(backbone, num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    return model


def test_corrupted_or_foreign_checkpoints_are_refused(tmp_path):
    model = build_model()
    model.fit(
        {
            "token_ids": np.ones((4, 5), "int32"),
            "segment_ids": np.zeros((4, 5), "int32"),
            "padding_mask": np.ones((4, 5), bool),
        },
        np.array([0, 1, 0, 1]),
        verbose=0,
    )
    saver = PromptTrainingCheckpoint(tmp_path, save_freq=1)
    saver.set_model(model)
    folder = saver.save()
    assert os.path.getsize(os.path.join(folder, "prompt.safetensors")) < 4096
    # Another optimizer: refused before anything is assigned.
    other = build_model()
    other.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    before = other.backbone.prompt_values()
    with pytest.raises(ValueError, match="optimizer variables"):
        PromptTrainingCheckpoint(tmp_path).restore(other)
    np.testing.assert_array_equal(other.backbone.prompt_values(), before)
    # A flipped byte in the state file.
    path = os.path.join(folder, STATE_FILE)
    data = bytearray(open(path, "rb").read())
    data[10] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="training checkpoint"):
        PromptTrainingCheckpoint(tmp_path).restore(build_model())
    with pytest.raises(TypeError, match="save_freq"):
        PromptTrainingCheckpoint(tmp_path, save_freq=1.5)
    with pytest.raises(TypeError, match="config"):
        PromptTrainingCheckpoint(tmp_path, config={"f": object()})


def test_frozen_dropout_sets_the_frozen_models_rate(preset):
    """`frozen_dropout=0.0` turns the frozen model's dropout off (training
    calls become deterministic), the head's own dropout stays; `None`
    keeps the checkpoint's."""

    def dropouts(layer):
        return [
            d.rate
            for d in layer._flatten_layers(include_self=True, recursive=True)
            if isinstance(d, keras.layers.Dropout)
        ]

    from keras_prompt.convert.presets import load_backbone

    def build(**changes):
        backbone = load_backbone(preset, dropout=0.1)
        changed = recipe().replace(pooling="mean", **changes)
        return changed.build_model(preset, backbone=backbone)

    keep, off = build(), build(frozen_dropout=0.0)
    assert max(dropouts(keep.backbone.backbone)) > 0
    assert set(dropouts(off.backbone.backbone)) == {0.0}
    assert off.output_dropout.rate == keep.output_dropout.rate > 0
    x = off.preprocessor(["a good film", "bad"])
    for model, deterministic in ((off, True), (keep, False)):
        outputs = [
            keras.ops.convert_to_numpy(
                model.backbone(x, training=True)["sequence_output"]
            )
            for _ in range(2)
        ]
        assert np.array_equal(outputs[0], outputs[1]) == deterministic
