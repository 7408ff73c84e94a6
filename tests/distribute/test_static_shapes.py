"""Static shapes: one shape, one trace of the XLA-compiled step.

A TPU compiles one program per input shape. On this CPU the same
configuration is simulated with a one-device strategy and
`jit_compile=True`: the keras-hub preprocessor pads to its sequence
lengths, `make_static` drops the last partial batch, and `TraceCounter`
shows the train step is traced once across epochs; keeping the partial
batch costs a second trace.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptSeq2SeqLM
from keras_prompt import toy
from keras_prompt.distribute import TraceCounter
from keras_prompt.distribute import check_static
from keras_prompt.distribute import compile_options
from keras_prompt.distribute import make_static
from keras_prompt.distribute import prepare_model


class TPUStrategyStandIn:
    """Only the class name and the replica count are read."""

    num_replicas_in_sync = 2


@pytest.fixture(scope="module")
def task_parts():
    keras_prompt.set_random_seed(0)  # Before the SentencePiece tokenizer.
    preprocessor = toy.toy_t5_preprocessor(
        encoder_sequence_length=8, decoder_sequence_length=3
    )
    backbone = toy.toy_t5(preprocessor.tokenizer.vocabulary_size(), 16)
    return backbone, preprocessor


def pairs(count):
    rng = np.random.default_rng(0)
    inputs, targets = toy.task_pairs(rng, count)
    return tf.data.Dataset.from_tensor_slices((inputs, targets))


def train(task_parts, dataset, epochs=2, jit_compile=None):
    """The TPU recipe on one CPU device: build under a strategy's scope
    (Keras then creates the optimizer and metric state before tracing, as
    under TPUStrategy), XLA-compile, count traces."""
    backbone, preprocessor = task_parts
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = PromptSeq2SeqLM(
            FrozenBackbone(backbone, prompt_length=2), preprocessor
        )
        options = compile_options(strategy)
        assert options == {"jit_compile": True}
        if jit_compile is not None:
            options["jit_compile"] = jit_compile
        model.compile(**options)
    prepare_model(model)
    counter = TraceCounter(model)
    history = model.fit(dataset, epochs=epochs, verbose=0)
    model.evaluate(dataset, verbose=0)
    return counter, history


def test_preprocessor_pads_to_fixed_lengths(task_parts):
    _, preprocessor = task_parts
    x, y, sample_weight = preprocessor(
        {"encoder_text": ["red", "red cat sun moon"], "decoder_text": ["a", ""]}
    )
    assert tuple(x["encoder_token_ids"].shape) == (2, 8)
    assert tuple(x["decoder_token_ids"].shape) == (2, 3)
    assert tuple(y.shape) == tuple(sample_weight.shape) == (2, 3)


def test_static_batches_trace_once(task_parts):
    train_data = make_static(pairs(10), batch_size=4, drop_remainder=True)
    counter, history = train(task_parts, train_data, epochs=3)
    assert counter.model.jit_compile is True
    assert counter.train == 1
    assert counter.test == 1
    x, y, sample_weight = counter.shapes["train"][0]
    assert x["encoder_token_ids"] == (4, 8)
    assert x["decoder_token_ids"] == y == sample_weight == (4, 3)
    assert len(history.history["loss"]) == 3
    assert np.all(np.isfinite(history.history["loss"]))


def test_remainder_leaves_the_batch_unknown(task_parts):
    # 10 examples in 4 + 4 + 2: one trace, but over an unknown batch size,
    # which a TPU cannot compile as is (and XLA recompiles per size).
    train_data = make_static(pairs(10), batch_size=4, drop_remainder=False)
    with pytest.raises(ValueError, match="static shape"):
        check_static(train_data)
    # (Without XLA here: the traced signature is the point, and XLA would
    # compile twice, for 4 and for 2 examples.)
    counter, _ = train(task_parts, train_data, epochs=1, jit_compile=False)
    assert counter.train == 1
    x, _, _ = counter.shapes["train"][0]
    assert x["encoder_token_ids"] == (None, 8)


def test_drop_remainder_defaults_to_the_strategy():
    data = tf.data.Dataset.range(10)
    shapes = make_static(data, 4).element_spec.shape.as_list()
    assert shapes == [None]  # Default strategy: the remainder is kept.
    tpu = make_static(data, 4, strategy=TPUStrategyStandIn())
    assert tpu.element_spec.shape.as_list() == [4]
    assert sum(1 for _ in tpu) == 2


def test_padded_shapes_and_preprocess():
    ragged = tf.data.Dataset.from_generator(
        lambda: ([1] * n for n in (1, 3, 2, 4)),
        output_signature=tf.TensorSpec([None], tf.int32),
    )
    with pytest.raises(ValueError, match="padded_shapes=None"):
        make_static(ragged, 2)
    static = make_static(
        ragged,
        2,
        drop_remainder=True,
        padded_shapes=[6],
        preprocess=lambda x: x * 2,
    )
    batches = [b.numpy() for b in static]
    assert static.element_spec.shape.as_list() == [2, 6]
    np.testing.assert_array_equal(batches[0][1], [2, 2, 2, 0, 0, 0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dataset": [1, 2]}, "dataset=list"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 2.0}, "batch_size=2.0"),
        ({"drop_remainder": "yes"}, "drop_remainder='yes'"),
        (
            {"batch_size": 3, "strategy": TPUStrategyStandIn()},
            "batch_size=3",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"dataset": tf.data.Dataset.range(4), "batch_size": 2}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_static(**arguments)


def test_check_static_names_the_feature():
    data = tf.data.Dataset.from_tensor_slices(
        {"token_ids": np.ones((4, 3), "int32")}
    ).batch(2)
    with pytest.raises(ValueError, match="token_ids"):
        check_static(data)
    assert check_static(data.rebatch(2, drop_remainder=True)) is not None
