"""`BestPromptCheckpoint`: saves the prompt only on improvement, stops
early, restores the best prompt."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_prompt import FrozenBackbone
from keras_prompt import PromptSeq2SeqLM
from keras_prompt import toy
from keras_prompt.prompt_files import read_prompt_file
from keras_prompt.training.best_prompt_checkpoint import BestPromptCheckpoint

STEPS = 2  # steps per epoch


@pytest.fixture(scope="module")
def model():
    """One tiny prompted T5 shared by the tests (tracing `fit` is slow)."""
    preprocessor = toy.toy_t5_preprocessor()
    backbone = toy.toy_t5(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=16
    )
    task = PromptSeq2SeqLM(
        FrozenBackbone(backbone, prompt_length=3), preprocessor
    )
    task.compile(jit_compile=False)
    return task


@pytest.fixture(scope="module")
def dataset():
    inputs, targets = toy.task_pairs(np.random.default_rng(0), 64)
    pairs = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return pairs.repeat().batch(8)


@pytest.fixture
def path(tmp_path):
    return os.path.join(str(tmp_path), "best.prompt.safetensors")


class Script:
    """An `evaluate_fn` returning given values; it records the prompt it
    saw at each call."""

    def __init__(self, values, as_dict=False):
        self.values = list(values)
        self.as_dict = as_dict
        self.prompts = []

    def __call__(self, model):
        self.prompts.append(model.backbone.prompt_values().copy())
        value = self.values[len(self.prompts) - 1]
        if self.as_dict:
            return {"val_accuracy": value, "val_other": 1.0}
        return value


def run(model, dataset, callback, epochs):
    model.backbone.assign_prompts(np.full((3, 16), 0.1, "float32"))
    return model.fit(
        dataset,
        steps_per_epoch=STEPS,
        epochs=epochs,
        callbacks=[callback],
        verbose=0,
    )


def spy_saves(monkeypatch, model):
    """Counts `save_prompts` calls (and still writes the file)."""
    calls = []
    original = model.save_prompts

    def save(path, *args, **kwargs):
        calls.append(model.backbone.prompt_values().copy())
        return original(path, *args, **kwargs)

    monkeypatch.setattr(model, "save_prompts", save)
    return calls


def file_prompt(path):
    tensors, _ = read_prompt_file(path)
    return tensors["prompt"]


def test_writes_only_on_improvement(model, dataset, path, monkeypatch):
    saves = spy_saves(monkeypatch, model)
    script = Script([0.5, 0.4, 0.7, 0.7, 0.6])
    start = int(model.optimizer.iterations.numpy())
    checkpoint = BestPromptCheckpoint(
        path, monitor="val_accuracy", evaluate_fn=script
    )
    assert checkpoint.mode == "max"
    run(model, dataset, checkpoint, epochs=5)

    improved = [e["improved"] for e in checkpoint.evaluations]
    assert improved == [True, False, True, False, False]
    assert len(saves) == 2 and checkpoint.saves == 2
    # The file holds the prompt of the third evaluation, the best one.
    np.testing.assert_array_equal(file_prompt(path), script.prompts[2])
    np.testing.assert_array_equal(saves[1], script.prompts[2])
    assert not np.array_equal(script.prompts[2], script.prompts[4])
    assert checkpoint.best_value == 0.7
    assert checkpoint.best_step == start + 3 * STEPS
    assert checkpoint.best_epoch == 2
    assert not checkpoint.stopped_early
    # restore_best=False: the model keeps its last prompt.
    last = model.backbone.prompt_values()
    assert not np.array_equal(last, script.prompts[2])


def test_file_is_small_holds_only_the_prompt_and_loads_back(
    model, dataset, path
):
    script = Script([1.0])
    run(model, dataset, BestPromptCheckpoint(path, "acc", "max", script), 1)
    tensors, metadata = read_prompt_file(path)
    assert sorted(tensors) == ["prompt"]
    assert tensors["prompt"].shape == (3, 16)
    assert metadata["task_class"] == "PromptSeq2SeqLM"
    # 48 floats plus a header: far below the backbone's size.
    assert os.path.getsize(path) < 4096
    assert not any(
        name.endswith(".keras") for name in os.listdir(os.path.dirname(path))
    )
    model.backbone.assign_prompts(np.zeros((3, 16), "float32"))
    model.load_prompts(path)
    np.testing.assert_array_equal(
        model.backbone.prompt_values(), script.prompts[0]
    )


def test_early_stopping(model, dataset, path):
    script = Script([0.9, 0.8, 0.95, 0.7, 0.6, 0.5, 0.4, 0.3])
    start = int(model.optimizer.iterations.numpy())
    checkpoint = BestPromptCheckpoint(
        path, "val_accuracy", "max", evaluate_fn=script, patience=2
    )
    history = run(model, dataset, checkpoint, epochs=8)
    # Best at the 3rd evaluation, then two without improvement: stop at 5.
    assert len(checkpoint.evaluations) == 5
    assert checkpoint.stopped_early
    assert checkpoint.wait == 2
    assert len(history.history["loss"]) == 5
    assert int(model.optimizer.iterations.numpy()) == start + 5 * STEPS
    np.testing.assert_array_equal(file_prompt(path), script.prompts[2])


def test_restore_best(model, dataset, path):
    script = Script([0.2, 0.9, 0.1, 0.1], as_dict=True)
    checkpoint = BestPromptCheckpoint(
        path, "val_accuracy", evaluate_fn=script, restore_best=True
    )
    history = run(model, dataset, checkpoint, epochs=4)
    np.testing.assert_array_equal(
        model.backbone.prompt_values(), script.prompts[1]
    )
    assert not np.array_equal(script.prompts[1], script.prompts[3])
    # The metrics of `evaluate_fn` reach the epoch logs and the History.
    assert history.history["val_accuracy"] == [0.2, 0.9, 0.1, 0.1]
    assert history.history["val_other"] == [1.0] * 4
    assert checkpoint.best_metrics == {"val_accuracy": 0.9, "val_other": 1.0}


def test_min_mode_on_logged_val_loss(model, dataset, path, monkeypatch):
    saves = spy_saves(monkeypatch, model)
    inputs, targets = toy.task_pairs(np.random.default_rng(1), 16)
    checkpoint = BestPromptCheckpoint(path, monitor="val_loss")
    assert checkpoint.mode == "min"
    model.backbone.assign_prompts(np.full((3, 16), 0.1, "float32"))
    history = model.fit(
        dataset,
        steps_per_epoch=STEPS,
        epochs=3,
        validation_data=(inputs, targets),
        callbacks=[checkpoint],
        verbose=0,
    )
    losses = history.history["val_loss"]
    assert checkpoint.best_value == pytest.approx(min(losses))
    expected = [losses[0]] + [
        loss for i, loss in enumerate(losses[1:], 1) if loss < min(losses[:i])
    ]
    assert len(saves) == len(expected)


def again(model, dataset, callback, epochs):
    """Another `fit` with the same callback, from the current prompt."""
    return model.fit(
        dataset,
        steps_per_epoch=STEPS,
        epochs=epochs,
        callbacks=[callback],
        verbose=0,
    )


def test_best_survives_a_later_worse_fit(model, dataset, path, monkeypatch):
    saves = spy_saves(monkeypatch, model)
    script = Script([0.69, 0.5, 69.8, 70.0, 71.0])
    checkpoint = BestPromptCheckpoint(
        path, "val_loss", evaluate_fn=script, patience=3, restore_best=True
    )
    run(model, dataset, checkpoint, epochs=2)
    best_step = checkpoint.best_step
    again(model, dataset, checkpoint, epochs=2)
    # The second fit was worse: the file and the best are the first's.
    assert len(saves) == 2 and checkpoint.saves == 2
    assert checkpoint.best_value == 0.5 and checkpoint.best_step == best_step
    np.testing.assert_array_equal(file_prompt(path), script.prompts[1])
    assert not np.array_equal(script.prompts[1], script.prompts[3])
    # `restore_best` loads the first fit's best back.
    np.testing.assert_array_equal(
        model.backbone.prompt_values(), script.prompts[1]
    )
    # Records and the patience count go on across fits.
    assert [e["value"] for e in checkpoint.evaluations] == [
        0.69,
        0.5,
        69.8,
        70.0,
    ]
    assert checkpoint.wait == 2 and not checkpoint.stopped_early
    again(model, dataset, checkpoint, epochs=3)
    assert checkpoint.stopped_early and len(checkpoint.evaluations) == 5

    # `reset()` forgets the best: the next evaluation saves.
    checkpoint.reset()
    assert checkpoint.best_value is None and checkpoint.evaluations == []
    script.values.append(90.0)
    again(model, dataset, checkpoint, epochs=1)
    assert checkpoint.best_value == 90.0 and len(saves) == 3
    np.testing.assert_array_equal(file_prompt(path), script.prompts[5])


def test_reset_on_train_begin(model, dataset, path, monkeypatch):
    saves = spy_saves(monkeypatch, model)
    script = Script([0.69, 69.8])
    checkpoint = BestPromptCheckpoint(
        path, "val_loss", evaluate_fn=script, reset_on_train_begin=True
    )
    run(model, dataset, checkpoint, epochs=1)
    again(model, dataset, checkpoint, epochs=1)
    assert len(saves) == 2 and checkpoint.best_value == 69.8
    assert len(checkpoint.evaluations) == 1
    np.testing.assert_array_equal(file_prompt(path), script.prompts[1])


def test_every_n_steps(model, dataset, path):
    script = Script([0.1, 0.2, 0.3])
    start = int(model.optimizer.iterations.numpy())
    checkpoint = BestPromptCheckpoint(
        path, "val_accuracy", evaluate_fn=script, every_n_steps=3
    )
    model.fit(
        dataset,
        steps_per_epoch=4,
        epochs=2,
        callbacks=[checkpoint],
        verbose=0,
    )
    steps = [e["step"] - start for e in checkpoint.evaluations]
    assert steps == [3, 6]
    assert checkpoint.best_step - start == 6


def test_min_delta_and_nan(model, dataset, path):
    script = Script([0.5, 0.505, float("nan"), 0.6])
    checkpoint = BestPromptCheckpoint(
        path, "val_accuracy", evaluate_fn=script, min_delta=0.01
    )
    run(model, dataset, checkpoint, epochs=4)
    improved = [e["improved"] for e in checkpoint.evaluations]
    assert improved == [True, False, False, True]
    assert checkpoint.best_value == 0.6


def test_missing_monitor_raises(model, dataset, path):
    with pytest.raises(ValueError, match="val_accuracy"):
        run(model, dataset, BestPromptCheckpoint(path, "val_accuracy"), 1)
    script = Script([{"val_f1": 0.5}])
    with pytest.raises(ValueError, match="val_accuracy"):
        run(
            model,
            dataset,
            BestPromptCheckpoint(path, "val_accuracy", evaluate_fn=script),
            1,
        )


def test_missing_folder_raises(model, dataset, tmp_path):
    missing = os.path.join(str(tmp_path), "nope", "p.prompt.safetensors")
    checkpoint = BestPromptCheckpoint(missing, "acc", evaluate_fn=Script([1]))
    with pytest.raises(ValueError, match="path="):
        run(model, dataset, checkpoint, 1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mode": "up"}, ValueError, "mode='up'"),
        ({"monitor": "val_thing"}, ValueError, "val_thing"),
        ({"patience": 0}, ValueError, "patience=0"),
        ({"patience": 1.5}, ValueError, "patience=1.5"),
        ({"every_n_steps": 0}, ValueError, "every_n_steps=0"),
        ({"min_delta": -1}, ValueError, "min_delta=-1"),
        ({"evaluate_fn": 3}, TypeError, "evaluate_fn=3"),
        ({"restore_best": "yes"}, TypeError, "restore_best='yes'"),
        (
            {"reset_on_train_begin": 1},
            TypeError,
            "reset_on_train_begin=1",
        ),
        ({"path": 5}, TypeError, "path=5"),
        ({"monitor": ""}, TypeError, "monitor=''"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"path": "p.prompt.safetensors", "monitor": "val_loss"}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        BestPromptCheckpoint(**arguments)


def test_needs_a_prompt_model(path):
    import keras

    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile(optimizer="sgd", loss="mse")
    checkpoint = BestPromptCheckpoint(path, "loss")
    with pytest.raises(TypeError, match="save_prompts"):
        plain.fit(
            np.zeros((4, 2)),
            np.zeros((4, 1)),
            callbacks=[checkpoint],
            verbose=0,
        )
