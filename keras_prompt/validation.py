"""Argument checks shared by the public constructors and functions."""

import numpy as np


def check_int(name, value, minimum):
    """Returns `value` as an int, or raises naming `name` and the value.

    A `TypeError` for anything but an int (a bool included), a `ValueError`
    for an int below `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(
            f"`{name}` must be at least {minimum}. Received: {name}={value}"
        )
    return int(value)
