"""Optimizers for Prompt Tuning, and the defaults of each, by name.

The one place of each default: the paper's Adafactor settings (Lester et
al., 2021) are `Adafactor`'s defaults, and Adam's learning rate for a
prompt (and head) trained from scratch on a frozen encoder is
`ADAM_LEARNING_RATE`. The tasks' `compile()` defaults, the
training recipe and `keras-prompt tune` all read them from here.
"""

import inspect

from keras_prompt.optimizers.adafactor import Adafactor

#: Adam's learning rate for prompt tuning: a few thousand parameters trained
#: from scratch on a frozen model want a far larger step than fine-tuning
#: (keras-hub's `TextClassifier` default, Adam 5e-5, barely moves a prompt).
ADAM_LEARNING_RATE = 1e-2
#: The names `get` knows.
NAMES = ("adafactor", "adam")


def paper_adafactor_settings():
    """The paper's Adafactor settings: `Adafactor`'s defaults, as a dict."""
    parameters = inspect.signature(Adafactor).parameters
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def default_learning_rate(name):
    """The default learning rate of the optimiser `name` (see `get`)."""
    _check_name(name)
    if name == "adam":
        return ADAM_LEARNING_RATE
    return paper_adafactor_settings()["learning_rate"]


def get(name, learning_rate=None, **kwargs):
    """A new optimiser by name, with prompt-tuning defaults.

    Args:
        name: `"adafactor"` (the paper's settings) or `"adam"`.
        learning_rate: optional float; defaults to
            `default_learning_rate(name)`.
        **kwargs: further arguments of the optimiser's class.

    Returns:
        A `keras_prompt.optimizers.Adafactor` or `keras.optimizers.Adam`.
    """
    import keras

    if learning_rate is None:
        learning_rate = default_learning_rate(name)
    else:
        _check_name(name)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, **kwargs)
    return Adafactor(learning_rate=learning_rate, **kwargs)


def _check_name(name):
    if name not in NAMES:
        raise ValueError(
            f"Unknown optimizer {name!r}; known: {', '.join(NAMES)}. "
            f"Received: name={name!r}"
        )


__all__ = [
    "ADAM_LEARNING_RATE",
    "Adafactor",
    "default_learning_rate",
    "get",
    "paper_adafactor_settings",
]
