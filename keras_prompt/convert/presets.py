"""Loading pretrained backbones and preprocessors from any preset.

A preset that a registered converter claims
(`keras_prompt.convert.registry.find_converter`; e.g. a Hugging Face T5
checkpoint, which keras-hub cannot convert) loads through that converter;
every other preset (built-in names, `kaggle://`, `hf://` keras presets
and Hugging Face models keras-hub converts, local folders) goes to
keras-hub's own `from_preset`.
"""

import keras_hub

from keras_prompt.convert.registry import find_converter
from keras_prompt.convert.registry import keyword_names


def load_backbone(preset, load_weights=True, **kwargs):
    """The pretrained keras-hub backbone of `preset`.

    `dtype="auto"` (what prompt tuning should use) resolves to bfloat16
    frozen weights where this machine multiplies bfloat16 natively and to
    float32 elsewhere (`keras_prompt.convert.precision.resolve_dtype`);
    any other `dtype` goes to keras-hub as given.
    """
    if kwargs.get("dtype") == "auto":
        from keras_prompt.convert.precision import resolve_dtype

        kwargs["dtype"], _ = resolve_dtype("auto")
    converter = find_converter(preset)
    if converter is not None:
        return converter.load_backbone(preset, **kwargs)
    return keras_hub.models.Backbone.from_preset(
        preset, load_weights=load_weights, **kwargs
    )


def backbone_keywords(preset):
    """The keywords `load_backbone(preset, **kwargs)` really passes on.

    keras-hub merges the keywords of `Backbone.from_preset` into the saved
    config and calls the backbone class with it, so it accepts `dtype` and
    the constructor arguments of the preset's backbone class (anything
    else would be dropped or reach `keras.Model` by accident). The class is
    read from the preset's config; no weights are loaded. A preset that a
    converter claims takes the arguments of the converter's
    `load_backbone` (`load_hf_t5_backbone` for a Hugging Face T5
    checkpoint).
    """
    converter = find_converter(preset)
    if converter is not None:
        names = converter.backbone_keywords()
    else:
        from keras_hub.src.utils.preset_utils import get_preset_loader

        backbone_class = get_preset_loader(preset).check_backbone_class()
        names = keyword_names(backbone_class.__init__)
    return sorted(names | {"dtype"})


def check_preset_kwargs(owner, preset, kwargs, allowed=(), known=()):
    """Raises a `TypeError` (with the closest valid name) for a keyword of
    `kwargs` that neither `allowed` (the caller's own) nor the preset's
    backbone (`backbone_keywords`) takes, before anything is loaded.

    The preset's config is read only when a keyword is not in `allowed`.
    A `dtype` that is neither `"auto"` nor a Keras dtype policy is a
    `ValueError` naming it, before anything is loaded.
    """
    from keras_prompt.validation import check_kwargs

    if kwargs.get("dtype") not in (None, "auto"):
        import keras

        try:
            keras.dtype_policies.get(kwargs["dtype"])
        except (TypeError, ValueError):
            raise ValueError(
                f'{owner}: `dtype` must be "auto" (recommended for prompt '
                'tuning), a float dtype such as "float32" or '
                '"bfloat16", or a Keras dtype policy. Received: '
                f"dtype={kwargs['dtype']!r} for preset {preset!r}"
            ) from None
    if set(kwargs) <= set(allowed):
        return
    allowed = tuple(allowed) + tuple(backbone_keywords(preset))
    check_kwargs(owner, kwargs, allowed, known)


def load_preprocessor(preset, preprocessor_cls, **kwargs):
    """The preprocessor of class `preprocessor_cls` for `preset` (the
    claiming converter's, which may be of the checkpoint's own class)."""
    converter = find_converter(preset)
    if converter is not None:
        return converter.load_preprocessor(preset, preprocessor_cls, **kwargs)
    return preprocessor_cls.from_preset(preset, **kwargs)
