"""Private helpers that read and validate fields of raw TFDS records.

Records come either from `tfds.as_numpy` (text as `bytes`, numbers as NumPy
scalars, sequences as NumPy object arrays, nested `FeaturesDict`s as dicts) or
are written by hand (`str`, `int`, lists). Every helper accepts both and raises
a `ValueError` that names the task, the field and the offending value.
"""

import numbers

import numpy as np

UNLABELED = -1


def _describe(value):
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def as_item(value):
    """The Python scalar of a 0-d NumPy array; other values unchanged."""
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.item()
    return value


def _lookup(record, task_name, field):
    """Returns `record[field]`; `field` may be dotted (`idx.question`)."""
    value = record
    walked = []
    for part in field.split("."):
        walked.append(part)
        try:
            value = value[part]
        except (KeyError, TypeError, IndexError):
            raise ValueError(
                f"Task {task_name!r}: record is missing field "
                f"{'.'.join(walked)!r} (record keys: "
                f"{sorted(record) if hasattr(record, 'keys') else record!r})."
            ) from None
    return value


def as_text(value, errors="strict"):
    """`value` (`bytes`, `str` or a 0-d array of one) as a `str`.

    Returns `None` for any other type. `bytes` are decoded as UTF-8 with
    `errors` (a `UnicodeDecodeError` for invalid bytes by default).
    """
    value = as_item(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors=errors)
    if isinstance(value, str):
        return str(value)
    return None


def _as_str(value, task_name, field):
    value = as_item(value)
    try:
        text = as_text(value)
    except UnicodeDecodeError:
        raise ValueError(
            f"Task {task_name!r}: field {field!r} is not valid UTF-8: "
            f"{_describe(value)}."
        ) from None
    if text is None:
        raise ValueError(
            f"Task {task_name!r}: field {field!r} must be a string, got "
            f"{type(value).__name__} {_describe(value)}."
        )
    return text


def get_text(record, task_name, field):
    """Returns the text field `field` of `record` as a Python `str`."""
    return _as_str(_lookup(record, task_name, field), task_name, field)


def get_int(record, task_name, field):
    """Returns the integer field `field` of `record` as a Python `int`."""
    value = _lookup(record, task_name, field)
    value = as_item(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"Task {task_name!r}: field {field!r} must be an integer, got "
            f"{type(value).__name__} {_describe(value)}."
        )
    return int(value)


def get_ints(record, task_name, fields):
    """Returns the integer fields `fields` of `record` as a tuple of `int`."""
    return tuple(get_int(record, task_name, field) for field in fields)


def get_text_list(record, task_name, field):
    """Returns the sequence-of-text field `field` as a list of `str`."""
    value = _lookup(record, task_name, field)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"Task {task_name!r}: field {field!r} must be a sequence of "
            f"strings, got {type(value).__name__} {_describe(value)}."
        )
    return [_as_str(v, task_name, field) for v in value]


def get_label(record, task_name, label_strings, field="label"):
    """Returns the class index of `record[field]`, or `None` if unlabeled.

    The label may be an integer index into `label_strings` or one of the
    `label_strings` themselves. TFDS marks unlabeled (test) records with `-1`,
    which maps to `None`.
    """
    value = _lookup(record, task_name, field)
    value = as_item(value)
    if isinstance(value, (bytes, str)):
        text = _as_str(value, task_name, field)
        if text in label_strings:
            return label_strings.index(text)
        raise ValueError(
            f"Task {task_name!r}: field {field!r} has value {text!r}, which "
            f"is not one of the known labels {list(label_strings)}."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"Task {task_name!r}: field {field!r} must be an integer class "
            f"index, got {type(value).__name__} {_describe(value)}."
        )
    value = int(value)
    if value == UNLABELED:
        return None
    if not 0 <= value < len(label_strings):
        raise ValueError(
            f"Task {task_name!r}: field {field!r} has value {value}, which is "
            f"out of range; expected {UNLABELED} (unlabeled) or an index in "
            f"[0, {len(label_strings)}) for labels {list(label_strings)}."
        )
    return value
