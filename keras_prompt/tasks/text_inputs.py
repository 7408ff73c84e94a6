"""Raw texts checked before any compute.

keras-hub's preprocessors take texts as string tensors, and what is not a
plain text went wrong deep inside: an empty list (no string dtype) or
numbers ended in a 40-line "must have string dtype" error, and a NUL
character cut a text short, silently, inside `tf.function`, `tf.data` and
exported graphs (everything after it was dropped), though not in eager
calls, so the same text was scored two ways.

The task models check the texts they are given in memory (lists, tuples,
NumPy arrays, eager tensors, and those of an input dict's text keys) where
they enter (`predict`, `evaluate`, `fit` and its `validation_data`,
`generate`, `infer`): a value that is not a text is one `TypeError`
naming the argument, a text holding a NUL character one `ValueError`
(NUL bytes are refused, not replaced: remove them from the data), and
`predict` of no texts returns an empty result. Texts in a `tf.data`
dataset or a generator are not read ahead, so they are not checked.
"""

import keras
import numpy as np

_SHOWN = 60


def flat_values(texts):
    """`texts` as a flat list of values, or `None` when they are not
    in-memory texts (a dataset, a generator, a symbolic tensor)."""
    if isinstance(texts, (str, bytes)):
        return [texts]
    if isinstance(texts, (list, tuple)):
        values = []
        for item in texts:
            inner = (
                flat_values(item) if isinstance(item, (list, tuple)) else [item]
            )
            values.extend(inner)
        return values
    if isinstance(texts, np.ndarray):
        return texts.reshape(-1).tolist()
    if hasattr(texts, "dtype") and hasattr(texts, "numpy"):
        try:
            return np.asarray(texts.numpy()).reshape(-1).tolist()
        except Exception:  # A symbolic tensor: checked nowhere.
            return None
    return None


def check_texts(texts, name):
    """Raises unless `texts` are texts without NUL characters; returns how
    many there are (`None`: not in-memory texts, unchecked).

    Raises:
        TypeError: an item is not a `str` or `bytes`.
        ValueError: a text holds a NUL character.
    """
    values = flat_values(texts)
    if values is None:
        return None
    for index, value in enumerate(values):
        if isinstance(value, str):
            nul = value.find("\x00")
        elif isinstance(value, bytes):
            nul = value.find(b"\x00")
        else:
            raise TypeError(
                f"`{name}` must hold texts (str or bytes); item {index} is "
                f"a {type(value).__name__}: {repr(value)[:_SHOWN]}"
            )
        if nul >= 0:
            raise ValueError(
                f"`{name}` item {index} holds a NUL character (\\x00) at "
                f"position {nul}: {repr(value)[:_SHOWN]}. Tokenizers would "
                "drop everything after it inside compiled and exported "
                "graphs; remove or replace it."
            )
    return len(values)


def text_inputs(x, keys):
    """`[(name, texts)]`: the texts of the model input `x`, the input
    itself or, for an input dict, its entries under `keys` (the task's
    text and target keys)."""
    if isinstance(x, dict):
        return [(f"x[{key!r}]", x[key]) for key in keys if key in x]
    return [("x", x)]


def one_example(x, keys):
    """An input of one empty text shaped as `x` (`prompt_ids`: `[0]`),
    for the shape of the task's outputs."""
    if not isinstance(x, dict):
        return [""]
    return {
        key: [""] if key in keys else np.zeros((1,), dtype="int32") for key in x
    }


class CheckedTextsMixin:
    """The entry points of a task model that take raw texts, checked
    first (see the module docstring). Mixed into every keras_prompt task
    (`PromptTaskMixin`), before its keras-hub class."""

    def checked_texts(self, x):
        """Checks the raw texts of the input `x` (`text_inputs`: one
        `TypeError` for a non-text, one `ValueError` for a NUL character);
        returns how many there are (`None`: none in memory to check)."""
        if self.preprocessor is None:
            return None
        keys = (self.text_key, self.target_key)
        counts = [
            check_texts(texts, name) for name, texts in text_inputs(x, keys)
        ]
        return next((n for n in counts if n is not None), None)

    def predict(self, x, *args, **kwargs):
        """Keras' `predict`, its texts checked first; no texts give an
        empty result (the outputs of one text, cut to none)."""
        if self.checked_texts(x) != 0:
            return super().predict(x, *args, **kwargs)
        one = one_example(x, (self.text_key, self.target_key))
        outputs = super().predict(one, verbose=0)
        return keras.tree.map_structure(lambda value: value[:0], outputs)

    def evaluate(self, x=None, *args, **kwargs):
        self.checked_texts(x)
        return super().evaluate(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self.checked_texts(x)
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and validation:
            self.checked_texts(validation[0])
        return super().fit(x, *args, **kwargs)
