"""Loading pretrained backbones and preprocessors from any preset.

keras-hub presets (built-in names, `kaggle://`, `hf://` keras presets,
local folders) go through keras-hub; Hugging Face T5 checkpoints, which
keras-hub cannot convert, go through `keras_prompt.convert`.
"""

import keras_hub


def _hf_t5(preset):
    from keras_prompt.convert import hf_t5

    return hf_t5 if hf_t5.is_hf_t5_checkpoint(preset) else None


def load_backbone(preset, load_weights=True, **kwargs):
    """The pretrained keras-hub backbone of `preset`."""
    converter = _hf_t5(preset)
    if converter is not None:
        return converter.load_hf_t5_backbone(preset, **kwargs)
    return keras_hub.models.Backbone.from_preset(
        preset, load_weights=load_weights, **kwargs
    )


def load_preprocessor(preset, preprocessor_cls, **kwargs):
    """The preprocessor of class `preprocessor_cls` for `preset`."""
    converter = _hf_t5(preset)
    if converter is not None:
        return converter.load_hf_t5_preprocessor(preset, **kwargs)
    return preprocessor_cls.from_preset(preset, **kwargs)
