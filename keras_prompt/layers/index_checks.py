"""Checks on index inputs (`prompt_ids`, class labels) that hold inside
traced functions too.

An index out of range does not fail the same way everywhere: eager
TensorFlow on CPU raises a bare `InvalidArgumentError`, a GPU gather
returns zeros, XLA clamps the index (`-1` picks the first row), and a cast
to int32 turns `1.9` into `1`. `checked_indices` gives every caller one
behaviour: a `TypeError` at trace time for a wrong dtype, and a range check
that runs before the gather, a `ValueError` for concrete (eager, NumPy)
values and an assertion op that the returned indices depend on inside a
traced TensorFlow function or a `tf.data` pipeline.

This module is the only backend-specific part of the layers; everything
else in `keras_prompt.layers` uses `keras.ops`.
"""

import keras
import numpy as np

#: Bad values shown in a graph assertion's message.
SUMMARIZE = 8


def dtype_name(values):
    """The standardized dtype name of an array, tensor or list."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        values = np.asarray(values)
        if values.size == 0:
            return "int32"
        dtype = values.dtype
    try:
        return keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError):
        return str(getattr(dtype, "name", dtype))


def is_integer_dtype(dtype):
    return dtype.startswith("int") or dtype.startswith("uint")


def is_float_dtype(dtype):
    return dtype.startswith("float") or dtype == "bfloat16"


def check_dtype(name, values, allow_whole_floats=False):
    """Raises a `TypeError` naming `name` unless `values` has an integer
    dtype (or, with `allow_whole_floats`, a float one). Returns the dtype
    name. Runs at trace time: it only reads the static dtype."""
    dtype = dtype_name(values)
    if is_integer_dtype(dtype):
        return dtype
    if allow_whole_floats and is_float_dtype(dtype):
        return dtype
    wanted = "integers (or whole floats)" if allow_whole_floats else "integers"
    raise TypeError(
        f"`{name}` must hold {wanted} (a cast to int32 would truncate "
        f"them silently). Received: {name} of dtype {dtype}"
    )


def concrete_value(values):
    """`values` as a NumPy array, or `None` inside a traced function (a
    TensorFlow graph, a `tf.data` map, a JAX trace) or while a functional
    model is built."""
    if isinstance(values, keras.KerasTensor):
        return None
    if isinstance(values, (list, tuple, int, float, np.ndarray, np.generic)):
        return np.asarray(values)
    try:
        return np.asarray(keras.ops.convert_to_numpy(values))
    except Exception:
        return None


def in_xla_context():
    """Whether TensorFlow is tracing a function for XLA (`jit_compile`)."""
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without them
        return False
    graph = tf_ops.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def _bad_mask(values, upper, whole):
    invalid = (values < 0) | (values >= upper)
    if whole:
        invalid = invalid | (values != np.floor(values))
    return invalid


def _describe(values):
    values = values.reshape(-1)
    if np.issubdtype(values.dtype, np.floating) and np.all(
        values == np.floor(values)
    ):
        values = values.astype("int64")
    return values.tolist()


def checked_indices(
    values, upper, name, where="", known=None, allow_whole_floats=False
):
    """`values` checked to lie in `[0, upper)`.

    Args:
        values: an int array, list or tensor (any shape).
        upper: int, the exclusive upper bound.
        name: the argument's name for messages, e.g. `"prompt_ids"`.
        where: text after the range in messages, e.g.
            `" for the bank 'prompt_embedding'"`.
        known: optional list of names the ids stand for (a bank's tasks),
            listed in messages.
        allow_whole_floats: accept a float dtype whose values are all
            whole numbers (labels); otherwise a float dtype is a
            `TypeError`.

    Returns:
        The values, unchanged: concrete values as given, a traced tensor
        through an identity that depends on the assertion, so that a
        gather reading the result never runs on a bad index.

    Raises:
        TypeError: at once (trace time) for a non-integer dtype.
        ValueError: at once for concrete values out of range. A traced
            tensor out of range fails when it runs, with the same text
            (TensorFlow: `InvalidArgumentError`).
    """
    dtype = check_dtype(name, values, allow_whole_floats)
    whole = is_float_dtype(dtype)
    message = f"`{name}` must be in [0, {upper}){where}"
    if whole:
        message += " and hold whole numbers"
    message += "."
    if known:
        message += f" Known tasks: {', '.join(map(str, known))}."
    if isinstance(values, keras.KerasTensor):
        # A functional model being built (ops applied to its inputs outside
        # any layer): record the check as a node of the model.
        return CheckIndices(upper, name, where, known, allow_whole_floats)(
            values
        )
    concrete = concrete_value(values)
    if concrete is not None:
        bad = _bad_mask(concrete, upper, whole)
        if concrete.size and bad.any():
            raise ValueError(
                f"{message} Received: {name}={_describe(concrete)} "
                f"(bad: {_describe(concrete[bad])})"
            )
        return values
    if keras.backend.backend() != "tensorflow":
        # JAX (and torch) offer no assertion inside a compiled function;
        # concrete values were checked above and the data pipelines check
        # theirs before the step.
        return values
    if in_xla_context():
        # XLA compiles `Assert` into a no-op (and clamps the gather), so
        # no in-graph check can fail here; the task models check their
        # inputs before the compiled step instead (`preprocess_samples` in
        # the input pipeline, and eagerly before generation).
        return values
    import tensorflow as tf

    tensor = tf.convert_to_tensor(values)
    flat = tf.reshape(tensor, [-1])
    invalid = tf.logical_or(flat < 0, flat >= tf.cast(upper, flat.dtype))
    if whole:
        invalid = tf.logical_or(invalid, tf.not_equal(flat, tf.floor(flat)))
    bad_values = tf.boolean_mask(flat, invalid)
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(invalid)),
        [f"{message} Received: {name} containing", bad_values],
        summarize=SUMMARIZE,
        name=f"check_{name}",
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


class CheckIndices(keras.Operation):
    """`checked_indices` as a node of a functional model, for ops applied
    to a model's symbolic inputs outside any layer (a bank's padding mask
    rows, `PromptEmbedding.extend_mask`)."""

    def __init__(self, upper, name, where="", known=None, whole=False):
        super().__init__(name=f"check_{name}")
        self.upper = upper
        self.argument = name
        self.where = where
        self.known = known
        self.whole = whole

    def call(self, values):
        return checked_indices(
            values,
            self.upper,
            self.argument,
            self.where,
            self.known,
            self.whole,
        )

    def compute_output_spec(self, values):
        return keras.KerasTensor(values.shape, dtype=values.dtype)
