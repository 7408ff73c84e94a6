"""Labels are checked before training: a float label is not truncated, an
out-of-range one names itself instead of failing deep in a graph, and a
data file with a bad label names the example."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt.data.classification import ClassificationData
from keras_prompt.data.classification import load_classification
from keras_prompt.training.splits import ClassificationExamples
from tests.test_case import encoder_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

X = encoder_inputs("bert")  # two examples


@pytest.fixture(scope="module")
def model():
    keras_prompt.set_random_seed(0)
    classifier = PromptClassifier(
        FrozenBackbone(tiny_backbone("bert"), prompt_length=2),
        num_classes=2,
        dropout=0.0,
    )
    classifier.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    return classifier


def weights(model):
    return [to_numpy(w).copy() for w in model.trainable_weights]


def assert_unchanged(model, before, steps=0):
    for value, variable in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(to_numpy(variable), value)
    if steps is not None:
        assert int(model.optimizer.iterations.numpy()) == steps


@pytest.mark.parametrize(
    "y, error, pattern",
    [
        (
            [1.7, 0.2],
            ValueError,
            r"`y` must be in \[0, 2\).*num_classes=2 and hold whole numbers"
            r".*Received: y=\[1\.7, 0\.2\]",
        ),
        (
            np.array([1, 5]),
            ValueError,
            r"`y` must be in \[0, 2\).*num_classes=2.*bad: \[5\]",
        ),
        ([0, -1], ValueError, r"num_classes=2.*bad: \[-1\]"),
        (["neg", "pos"], TypeError, r"`y` must hold integers.*dtype"),
    ],
)
def test_fit_and_evaluate_check_labels_before_any_compute(
    model, y, error, pattern
):
    before = weights(model)
    with pytest.raises(error, match=pattern):
        model.fit(X, y, verbose=0)
    with pytest.raises(error, match=pattern):
        model.evaluate(X, y, verbose=0)
    with pytest.raises(error, match=pattern):
        model.fit(
            X, np.array([0, 1]), validation_data=(X, y), epochs=1, verbose=0
        )
    assert_unchanged(model, before)


def labelled(y):
    return tf.data.Dataset.from_tensor_slices((X, y)).batch(2)


@pytest.mark.parametrize(
    "y, shown",
    [
        (np.array([1, 5]), "[5]"),
        (np.array([1.7, 0.0], "float32"), "[1.7]"),
    ],
)
def test_tf_data_labels_fail_with_the_same_message(model, y, shown):
    before = weights(model)
    for run in (model.fit, model.evaluate):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            run(labelled(y), verbose=0)
        message = str(info.value)
        assert "`y` must be in [0, 2)" in message
        assert "num_classes=2" in message
        assert f"containing] {shown}" in message
    # The pipeline fails its first batch: no weight moves.
    assert_unchanged(model, before, steps=None)


def test_integer_and_whole_float_labels_train(model):
    trained = PromptClassifier(
        model.backbone, num_classes=2, dropout=0.0, compile=False
    )
    trained.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    for y in ([1, 0], np.array([1.0, 0.0]), labelled(np.array([0, 1]))):
        if isinstance(y, tf.data.Dataset):
            history = trained.fit(y, verbose=0)
        else:
            history = trained.fit(X, y, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    assert int(trained.optimizer.iterations.numpy()) == 3


def test_classification_data_names_the_bad_example():
    good = dict(
        texts=["a", "b", "c"],
        labels=np.array([0, 1, 1], "int32"),
        label_strings=("negative", "positive"),
        task_name="glue/sst2",
        split="train",
    )
    data = ClassificationData(**good)
    assert ClassificationExamples("glue/sst2", data).data is data
    with pytest.raises(
        ValueError,
        match=r"'glue/sst2', split 'train': example 2 has label 2, out of "
        r"range; expected a class index in \[0, 2\)",
    ):
        ClassificationData(**dict(good, labels=np.array([0, 1, 2])))
    with pytest.raises(TypeError, match=r"split 'train'.*dtype float"):
        ClassificationData(**dict(good, labels=np.array([0.0, 1.5, 1.0])))


def test_data_file_with_out_of_range_label_names_the_record(tmp_path):
    from tests.data.test_superglue_mock import RECORDS
    from tests.data.test_superglue_mock import handcrafted

    records = copy.deepcopy(RECORDS)
    records["super_glue/cb"][2]["label"] = 7  # CB has 3 classes.
    with tfds.testing.mock_data(as_dataset_fn=handcrafted(records)):
        with pytest.raises(ValueError) as info:
            load_classification(
                "super_glue/cb", "validation", data_dir=str(tmp_path)
            )
    message = str(info.value)
    assert "'super_glue/cb'" in message and "has value 7" in message
    assert "[0, 3)" in message
    assert "(record 2 of split 'validation')" in message
