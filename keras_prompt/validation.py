"""Argument checks shared by the public constructors and functions, and
the check of the Keras backend.

The layers, adapters, tasks, prompt files, banks, ensembles and `Recipe`
use `keras.ops` and run on every Keras backend; the test suite runs them on
TensorFlow and on JAX. Text goes through keras-hub's preprocessors, which
use TensorFlow (and tensorflow-text) on every backend, as keras-hub does.
What only TensorFlow has is refused on another backend with one
`UnsupportedBackendError` naming the feature and `KERAS_BACKEND`:
SavedModel export (`export_saved_model`, `keras-prompt export`) and
`tf.distribute` strategies (`keras_prompt.distribute.resolve_strategy`). On
JAX, `keras.distribution` (`DataParallel`, `ModelParallel`) is the road to
many devices (docs/scale.md).
"""

import math
import numbers
import os

import keras
import numpy as np


def check_int(name, value, minimum=1, allow_none=False):
    """Returns `value` as an int, or raises naming `name` and the value.

    A `TypeError` for anything but an int (a bool included), a `ValueError`
    for an int below `minimum`. With `allow_none`, `None` passes (and is
    returned).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        extra = "None or " if allow_none else ""
        raise TypeError(
            f"`{name}` must be {extra}an int. Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be at least {minimum}. Received: {name}={value}"
        )
    return int(value)


def check_count(name, value, minimum=1, allow_none=False):
    """Returns `value` as an int, or raises a `ValueError` naming `name`.

    The check of settings (a recipe's, the planner's): anything but an int
    of at least `minimum` (a bool, a float, a NumPy integer included) is
    one `ValueError` saying what is wanted. With `allow_none`, `None`
    passes.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = "None or " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {extra}an int >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_positive_int(name, value):
    """Raises a `ValueError` naming `name` unless `value` is an int >= 1.

    A bool is not an int here; NumPy integers are not accepted either.
    """
    check_count(name, value, minimum=1)


def check_float(name, value, minimum=0.0, allow_none=False, inclusive=True):
    """Returns `value` as a float, or raises a `ValueError` naming `name`
    unless it is a finite real number of at least `minimum` (above it
    with `inclusive=False`; a bool is not a number). With `allow_none`,
    `None` passes."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (value < minimum if inclusive else value <= minimum)
    ):
        extra = "None or " if allow_none else ""
        relation = ">=" if inclusive else ">"
        raise ValueError(
            f"`{name}` must be {extra}a finite number {relation} {minimum}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_bool(name, value):
    """Raises a `TypeError` naming `name` unless `value` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def known_last_dim(input_shape, layer_name):
    """The last dimension of `input_shape` as an int, for `build`.

    Raises a `ValueError` naming `layer_name` when it is unknown.
    """
    dim = input_shape[-1]
    if dim is None:
        raise ValueError(
            f"The last dimension of the inputs to `{layer_name}` must be "
            f"known. Received: input_shape={input_shape}"
        )
    return int(dim)


def check_kwargs(owner, kwargs, allowed, known=()):
    """Raises a `TypeError` naming any keyword of `kwargs` not in `allowed`.

    A Keras model's `**kwargs` silently drop unknown keywords, so a
    misspelt argument would build another model than the one asked for.
    The message suggests the closest of `allowed` and `known` (the
    caller's own parameters).
    """
    import difflib

    unknown = sorted(set(kwargs) - set(allowed))
    if not unknown:
        return
    choices = sorted(set(allowed) | set(known))
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, choices, n=1)
        hints.append(
            f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    raise TypeError(
        f"{owner} got unexpected keyword argument(s): {', '.join(hints)}. "
        f"Valid arguments: {', '.join(choices)}"
    )


def check_label_strings(name, value, unique=True):
    """Returns `value` as a tuple of strings, or raises naming `name`.

    A `TypeError` for a single string or anything but a sequence of
    strings; a `ValueError` for an empty sequence and, with `unique`, for
    one that repeats a string.
    """
    if isinstance(value, (str, bytes)) or not isinstance(
        value, (list, tuple, np.ndarray)
    ):
        raise TypeError(
            f"`{name}` must be a list of strings. Received: {name}={value!r}"
        )
    value = tuple(value)
    if not all(isinstance(item, str) for item in value):
        raise TypeError(
            f"`{name}` must be a list of strings. Received: {name}={value!r}"
        )
    if not value:
        raise ValueError(f"`{name}` must not be empty. Received: {name}=()")
    if unique and len(set(value)) != len(value):
        repeated = sorted({item for item in value if value.count(item) > 1})
        raise ValueError(
            f"`{name}` must not repeat a string (repeated: {repeated}). "
            f"Received: {name}={value!r}"
        )
    return value


TESTED_BACKENDS = ("tensorflow", "jax")


class UnsupportedBackendError(ValueError):
    """A TensorFlow-only feature used on another Keras backend.

    A `ValueError`: the setting at fault is `KERAS_BACKEND` (or Keras'
    config file), fixed before Keras is imported.
    """


def require_tensorflow(feature, instead=""):
    """Raises `UnsupportedBackendError` unless Keras runs on TensorFlow.

    Args:
        feature: str, what was asked for, e.g. `"SavedModel export"`.
        instead: str, an optional sentence on what to use on other
            backends.

    Example:

    ```python
    from keras_prompt.validation import require_tensorflow

    require_tensorflow("SavedModel export")  # passes on TensorFlow
    ```
    """
    backend = keras.config.backend()
    if backend == "tensorflow":
        return
    raise UnsupportedBackendError(
        f"{feature} needs Keras' TensorFlow backend; Keras runs on "
        f"{backend!r}. Set KERAS_BACKEND=tensorflow before Keras is "
        f"imported. Received: KERAS_BACKEND="
        f"{os.environ.get('KERAS_BACKEND')!r}."
        + (f" {instead}" if instead else "")
    )
