"""Loading pretrained backbones and preprocessors from any preset.

keras-hub presets (built-in names, `kaggle://`, `hf://` keras presets,
local folders) go through keras-hub; Hugging Face T5 checkpoints, which
keras-hub cannot convert, go through `keras_prompt.convert`.
"""

import inspect
import json

import keras_hub

HF_PREFIX = "hf://"


def _hf_handle_is_t5(handle):
    """Whether an `hf://owner/name[@revision]` repo holds a HF T5 model.

    Reads only the repo's `config.json`: keras-hub presets on the Hub have
    one too, but without `model_type: "t5"`. When the config can't be
    fetched the answer is no, and keras-hub reports the failure.
    """
    repo, _, revision = handle[len(HF_PREFIX) :].partition("@")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo, "config.json", revision=revision or None)
        with open(path) as f:
            config = json.load(f)
    except Exception:
        return False
    return isinstance(config, dict) and config.get("model_type") == "t5"


def _hf_t5(preset):
    from keras_prompt.convert import hf_t5

    if isinstance(preset, str) and preset.startswith(HF_PREFIX):
        return hf_t5 if _hf_handle_is_t5(preset) else None
    return hf_t5 if hf_t5.is_hf_t5_checkpoint(preset) else None


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
    converter = _hf_t5(preset)
    if converter is not None:
        return converter.load_hf_t5_backbone(preset, **kwargs)
    return keras_hub.models.Backbone.from_preset(
        preset, load_weights=load_weights, **kwargs
    )


def backbone_keywords(preset):
    """The keywords `load_backbone(preset, **kwargs)` really passes on.

    keras-hub merges the keywords of `Backbone.from_preset` into the saved
    config and calls the backbone class with it, so it accepts `dtype` and
    the constructor arguments of the preset's backbone class (anything
    else would be dropped or reach `keras.Model` by accident). The class is
    read from the preset's config; no weights are loaded. A Hugging Face T5
    checkpoint takes the arguments of `load_hf_t5_backbone`.
    """
    converter = _hf_t5(preset)
    if converter is not None:
        function = converter.load_hf_t5_backbone
    else:
        from keras_hub.src.utils.preset_utils import get_preset_loader

        function = get_preset_loader(preset).check_backbone_class().__init__
    # The names a keyword can set (after `self` / the preset argument).
    spec = inspect.getfullargspec(function)
    names = set(spec.args[1:]) | set(spec.kwonlyargs)
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
    """The preprocessor of class `preprocessor_cls` for `preset`."""
    converter = _hf_t5(preset)
    if converter is not None:
        return converter.load_hf_t5_preprocessor(preset, **kwargs)
    return preprocessor_cls.from_preset(preset, **kwargs)
