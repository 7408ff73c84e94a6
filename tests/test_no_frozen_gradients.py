"""Frozen weights never get a gradient computation: checked on the graph.

`trainable=False` only says the optimizer leaves a weight alone; it does not
stop TensorFlow from computing the weight's gradient. These tests trace the
real train step (`model.train_step` under `tf.function`, what `fit` runs)
and inspect the graph:

- no live gradient op produces a tensor of a frozen weight's shape (a
  weight gradient), while the same check on the same task with the
  backbone unfrozen finds one per weight matrix (so the check can fail);
- no weight-gradient `MatMul` of a frozen kernel is even built, dead or
  live: the tape does not watch frozen weights (see
  `keras_prompt.frozen_backbone.frozen_weights_unwatched`), which also keeps
  eager steps (`run_eagerly=True`, custom loops) from computing them;
- the backward pass has fewer matmul FLOPs than full fine-tuning's: with
  no weight gradients, about half (the input gradients only);
- the step has no host round trip (no Python function ops), and `fit` on
  padded text traces it once across batches and epochs.

"Live" is what TensorFlow runs: ops that the step's outputs or its
side-effecting ops (variable updates) depend on. Some TensorFlow gradient
functions (`BiasAdd`, `BatchMatMulV2`) build the gradients of all their
inputs and leave the unneeded ones dead; TensorFlow prunes dead ops before
running a traced function, so they cost nothing and are not counted.
Embedding lookups have sparse gradients (the looked-up rows), never a
table-shaped tensor, so tables are left out of the "every weight matrix"
count of the unfrozen reference.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt import PromptSeq2SeqLM
from keras_prompt.toy import toy_t5
from keras_prompt.toy import toy_t5_preprocessor
from tests.test_case import tiny_backbone

# Sizes chosen so that no activation (gradient) shape coincides with a
# weight shape: batch * positions is never a hidden or vocabulary size.
BATCH = 3
LENGTH = 7
TARGET = 3
PROMPT = 4
MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
HOST_OPS = ("PyFunc", "EagerPyFunc", "PyFuncStateless")


# -- graph inspection ---------------------------------------------------------
def trace_train_step(model, data):
    """The graph of one train step, traced like `fit` traces it."""
    model.optimizer.build(model.trainable_variables)
    data = tf.nest.map_structure(tf.convert_to_tensor, data)
    return tf.function(model.train_step).get_concrete_function(data).graph


def live_ops(graph):
    """Ops that the outputs or the side-effecting ops depend on."""
    stack = [t.op for t in graph.outputs] + list(graph.control_outputs)
    live = set()
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def gradient_ops(graph):
    return [
        op for op in live_ops(graph) if op.name.startswith("gradient_tape/")
    ]


def shape_of(tensor):
    if tensor.shape.rank is None:
        return None
    return tuple(tensor.shape.as_list())


def weight_gradient_ops(graph, weights, trained, ops=None):
    """Gradient ops (of `ops`, by default the live ones) producing a tensor
    shaped like one of `weights`.

    Shapes shared with a `trained` weight are left out (their gradient is
    expected).
    """
    expected = {tuple(v.shape) for v in trained}
    shapes = {tuple(v.shape) for v in weights} - expected
    ops = gradient_ops(graph) if ops is None else ops
    return [op for op in ops if any(shape_of(t) in shapes for t in op.outputs)]


def built_gradient_matmuls(graph):
    """Every gradient `MatMul` in the graph, live or dead."""
    return [
        op
        for op in graph.get_operations()
        if op.name.startswith("gradient_tape/") and op.type == "MatMul"
    ]


def backward_matmul_flops(graph):
    """FLOPs of the live gradient matmuls, from their static shapes."""
    total = 0
    for op in gradient_ops(graph):
        if op.type not in MATMUL_OPS:
            continue
        out = shape_of(op.outputs[0])
        a = shape_of(op.inputs[0])
        transpose_a = op.get_attr(
            "adj_x" if "Batch" in op.type else "transpose_a"
        )
        inner = a[-2] if transpose_a else a[-1]
        total += 2 * int(np.prod(out)) * inner
    return total


def kernels(model, tables=True):
    """The weight matrices of a model (kernels and, unless `tables=False`,
    embedding tables)."""
    return [
        v
        for v in model.weights
        if len(v.shape) >= 2 and (tables or not v.path.endswith("/embeddings"))
    ]


# -- models --------------------------------------------------------------------
def seq2seq_data():
    rng = np.random.default_rng(0)
    x = {
        "encoder_token_ids": rng.integers(3, 50, (BATCH, LENGTH), "int32"),
        "encoder_padding_mask": np.ones((BATCH, LENGTH), "bool"),
        "decoder_token_ids": rng.integers(3, 50, (BATCH, TARGET), "int32"),
        "decoder_padding_mask": np.ones((BATCH, TARGET), "bool"),
    }
    y = rng.integers(3, 50, (BATCH, TARGET), "int32")
    return x, y, np.ones((BATCH, TARGET), "float32")


def prompt_seq2seq(unfreeze=False):
    """`PromptSeq2SeqLM` on a toy T5 (optionally with the backbone made
    trainable again: the full fine-tuning reference)."""
    keras_prompt.set_random_seed(0)
    t5 = toy_t5(50)
    model = PromptSeq2SeqLM(FrozenBackbone(t5, prompt_length=PROMPT))
    if unfreeze:
        t5.trainable = True
    model.compile()
    return model, t5


def encoder_data():
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(5, 40, (BATCH, LENGTH), "int32"),
        "segment_ids": np.zeros((BATCH, LENGTH), "int32"),
        "padding_mask": np.ones((BATCH, LENGTH), "bool"),
    }
    return x, rng.integers(0, 2, (BATCH,), "int32")


def tiny_bert():
    keras_prompt.set_random_seed(0)
    return tiny_backbone("bert", max_sequence_length=24, dropout=0.1)


def prompt_classifier(unfreeze=False):
    bert = tiny_bert()
    model = PromptClassifier(
        FrozenBackbone(bert, prompt_length=PROMPT), num_classes=2
    )
    if unfreeze:
        bert.trainable = True
    model.compile()
    return model, bert


def custom_encoder_model(unfreeze=False):
    """A user's own Keras model around `FrozenBackbone(BERT)`."""
    bert = tiny_bert()
    backbone = FrozenBackbone(bert, prompt_length=PROMPT)
    inputs = backbone.input
    hidden = backbone(inputs)["sequence_output"][:, 0, :]
    outputs = keras.layers.Dense(2, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    if unfreeze:
        bert.trainable = True
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, bert


SEQ2SEQ = "PromptSeq2SeqLM(T5)"
CASES = {
    SEQ2SEQ: (prompt_seq2seq, seq2seq_data),
    "PromptClassifier(BERT)": (prompt_classifier, encoder_data),
    "Model(FrozenBackbone(BERT))": (custom_encoder_model, encoder_data),
}


@functools.lru_cache(maxsize=None)
def frozen_weight_gradients(case, unfreeze=False):
    """Live weight-gradient ops of the backbone, and the traced graph
    (traced once per case for the whole module)."""
    build, data = CASES[case]
    model, backbone = build(unfreeze=unfreeze)
    graph = trace_train_step(model, data())
    trained = [] if unfreeze else model.trainable_variables
    found = weight_gradient_ops(graph, kernels(backbone), trained)
    return found, graph, model, backbone, trained


# -- tests ---------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_frozen_weights_get_no_gradient(case):
    found, graph, model, backbone, trained = frozen_weight_gradients(case)
    names = sorted({f"{op.type} {op.name}" for op in found})
    assert not found, (
        f"{len(found)} live gradient ops compute a frozen weight's gradient "
        f"in the {case} train step, e.g. {names[:5]}"
    )
    built = weight_gradient_ops(
        graph, kernels(backbone), trained, built_gradient_matmuls(graph)
    )
    assert not built, (
        f"{len(built)} weight-gradient MatMuls of frozen kernels are built "
        f"in the {case} train step (the tape watches frozen weights), e.g. "
        f"{sorted(op.name for op in built)[:3]}"
    )
    # The prompt does get its gradient, and it is what the optimizer uses.
    assert [v.path for v in model.trainable_variables if "prompt" in v.path]
    prompt_shape = tuple(backbone_prompt(model).shape)
    assert any(
        shape_of(t) == prompt_shape
        for op in gradient_ops(graph)
        for t in op.outputs
    )


def backbone_prompt(model):
    for variable in model.trainable_variables:
        if "prompt_embedding" in variable.path:
            return variable
    raise AssertionError("no trainable prompt")


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_finds_weight_gradients_when_backbone_trains(case):
    """The same check on the unfrozen backbone (full fine-tuning) finds a
    weight gradient for every weight matrix: the check can fail."""
    found, _, _, backbone, _ = frozen_weight_gradients(case, unfreeze=True)
    produced = {shape_of(t) for op in found for t in op.outputs}
    missing = [
        v.path
        for v in kernels(backbone, tables=False)
        if tuple(v.shape) not in produced
    ]
    assert found and not missing, missing


def test_backward_matmuls_are_about_half_of_fine_tuning():
    prompt_graph = frozen_weight_gradients(SEQ2SEQ)[1]
    full_graph = frozen_weight_gradients(SEQ2SEQ, unfreeze=True)[1]
    prompt_flops = backward_matmul_flops(prompt_graph)
    full_flops = backward_matmul_flops(full_graph)
    # Input gradients only (weight gradients cost as much again); the
    # prompt makes every sequence (LENGTH + PROMPT) / LENGTH longer.
    assert prompt_flops < 0.5 * full_flops * (LENGTH + PROMPT) / LENGTH
    assert prompt_flops > 0.25 * full_flops


def test_train_step_has_no_host_round_trip():
    graph = frozen_weight_gradients(SEQ2SEQ)[1]
    host = [op.name for op in graph.get_operations() if op.type in HOST_OPS]
    assert not host


def test_fit_traces_the_train_step_once():
    """Padded text batches have one shape: one trace for all batches."""
    # Seed first: `set_random_seed` clears TensorFlow's caches, which drops
    # an already built SentencePiece tokenizer's resource.
    keras_prompt.set_random_seed(0)
    preprocessor = toy_t5_preprocessor()
    t5 = toy_t5(preprocessor.tokenizer.vocabulary_size())
    model = PromptSeq2SeqLM(
        FrozenBackbone(t5, prompt_length=PROMPT), preprocessor=preprocessor
    )
    model.compile()
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(1) or train_step(data)
    rng = np.random.default_rng(0)
    inputs, targets = keras_prompt.toy.task_pairs(rng, 24)
    model.fit(x=inputs, y=targets, batch_size=4, epochs=2, verbose=0)
    assert len(traces) == 1
