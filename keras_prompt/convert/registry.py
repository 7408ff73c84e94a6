"""Converters of checkpoints keras-hub cannot load, and which one to ask.

keras-hub loads its own presets and many Hugging Face folders; a
`Converter` loads the others (`keras_prompt.convert.hf_t5` registers the
Hugging Face T5 one when `keras_prompt.convert` is imported).
`find_converter(preset)` reads the preset's `config.json` once, cheaply
(`keras_prompt.convert.checkpoint_files.preset_config`), and returns the
first registered converter that claims the preset, or `None`: then
keras-hub loads it (`keras_prompt.convert.presets`).
"""

import inspect

from keras_prompt.convert.checkpoint_files import preset_config

# name -> Converter, in registration order.
_CONVERTERS = {}


def keyword_names(function):
    """The names a keyword can set in `function`, after its first argument
    (`self`, or the preset of a loading function)."""
    spec = inspect.getfullargspec(function)
    return set(spec.args[1:]) | set(spec.kwonlyargs)


class Converter:
    """How to recognise and load one kind of checkpoint.

    Args:
        name: str, the converter's name in the registry.
        claims: callable `(preset, config) -> bool`: whether this converter
            loads `preset`. `config` is the preset's `config.json` as a
            dict, or `None` where there is none to read cheaply (see
            `keras_prompt.convert.checkpoint_files.preset_config`). It
            must not load weights or raise.
        load_backbone: callable `(preset, **kwargs)` returning the
            keras-hub backbone; its keyword arguments are those
            `PromptClassifier.from_preset` and friends accept for the
            backbone (`backbone_keywords`).
        load_preprocessor: callable `(preset, preprocessor_cls, **kwargs)`
            returning the preprocessor (of `preprocessor_cls` or the
            checkpoint's own kind).

    Example:

    ```python
    from keras_prompt.convert.registry import Converter
    from keras_prompt.convert.registry import register_converter

    register_converter(
        Converter(
            "my_format",
            claims=lambda preset, config: (config or {}).get("model_type")
            == "my_model",
            load_backbone=load_my_backbone,
            load_preprocessor=load_my_preprocessor,
        )
    )
    ```
    """

    def __init__(self, name, claims, load_backbone, load_preprocessor):
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"`name` must be a non-empty string. Received: name={name!r}"
            )
        for argument, value in (
            ("claims", claims),
            ("load_backbone", load_backbone),
            ("load_preprocessor", load_preprocessor),
        ):
            if not callable(value):
                raise TypeError(
                    f"`{argument}` of converter {name!r} must be callable. "
                    f"Received: {argument}={value!r}"
                )
        self.name = name
        self.claims = claims
        self.load_backbone = load_backbone
        self.load_preprocessor = load_preprocessor

    def backbone_keywords(self):
        """The keyword names `load_backbone` takes after the preset."""
        return keyword_names(self.load_backbone)

    def __repr__(self):
        return f"Converter({self.name!r})"


def register_converter(converter):
    """Adds `converter` to the registry (replacing one of the same name).

    Returns:
        `converter`.
    """
    if not isinstance(converter, Converter):
        raise TypeError(
            "`converter` must be a keras_prompt.convert.registry.Converter. "
            f"Received: converter={converter!r}"
        )
    _CONVERTERS[converter.name] = converter
    return converter


def unregister_converter(name):
    """Removes the converter called `name` from the registry.

    Raises:
        ValueError: no converter of that name is registered.
    """
    if name not in _CONVERTERS:
        raise ValueError(
            f"No converter named {name!r} is registered. Registered: "
            f"{sorted(_CONVERTERS)}"
        )
    del _CONVERTERS[name]


def registered_converters():
    """The registered converters, in registration order."""
    return list(_CONVERTERS.values())


def find_converter(preset):
    """The first registered `Converter` claiming `preset`, or `None` (then
    keras-hub loads it).

    The preset's `config.json` is read once (an `hf://` handle's is
    fetched alone) and given to each converter's `claims`.
    """
    if not _CONVERTERS:
        return None
    config = preset_config(preset)
    for converter in _CONVERTERS.values():
        if converter.claims(preset, config):
            return converter
    return None
