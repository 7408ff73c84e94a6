"""Hugging Face T5 `config.json` <-> keras-hub `T5Backbone` arguments.

`backbone_kwargs_from_config` translates a T5 config (T5 1.0, T5 1.1 /
LM-adapted / Flan-T5, gated variants) into the keyword arguments of
`keras_hub.models.T5Backbone`, refusing what keras-hub's T5 cannot
represent; `feed_forward_proj_from_backbone` goes back for saving.
Hugging Face activation names (`ACT2FN`) map onto keras activations:
`"gated-gelu"` is the tanh approximation of gelu in Hugging Face, so it
becomes keras-hub's registered `gelu_approximate` (keras' `"gelu"` is the
exact erf form).
"""

import keras

# keras-hub's `T5MultiHeadAttention` hardcodes these two values.
SUPPORTED_NUM_BUCKETS = 32
SUPPORTED_MAX_DISTANCE = 128

T5_ARCHITECTURES = ("T5ForConditionalGeneration", "T5Model", "T5EncoderModel")

# Hugging Face activation names (`ACT2FN`) -> keras activations.
_EXACT_GELU = ("gelu", "gelu_python")
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_SILU = ("silu", "swish")


def is_t5_config(config):
    """Whether a Hugging Face `config.json` (a dict) describes a T5 model:
    `model_type: "t5"` or one of `T5_ARCHITECTURES`."""
    if config.get("model_type") == "t5":
        return True
    architectures = config.get("architectures") or []
    return any(a in T5_ARCHITECTURES for a in architectures)


def _gelu_approximate():
    # keras-hub's registered tanh-approximate gelu; it serializes as
    # "keras_hub>gelu_approximate" so `T5Backbone.from_config` round trips.
    from keras_hub.src.utils.keras_utils import gelu_approximate

    return gelu_approximate


def activation_from_feed_forward_proj(feed_forward_proj):
    """Hugging Face `feed_forward_proj` -> (keras activation, gated)."""
    parts = str(feed_forward_proj).split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ValueError(
            "`feed_forward_proj` must be `{ACT}` or `gated-{ACT}`. "
            f"Received: {feed_forward_proj!r}"
        )
    gated = parts[0] == "gated"
    name = parts[-1]
    if feed_forward_proj == "gated-gelu":
        # Hugging Face maps "gated-gelu" to its tanh approximation.
        name = "gelu_new"
    if name == "relu":
        return "relu", gated
    if name in _EXACT_GELU:
        # keras' gelu defaults to the exact (erf) form.
        return "gelu", gated
    if name in _TANH_GELU:
        return _gelu_approximate(), gated
    if name in _SILU:
        return "silu", gated
    raise ValueError(
        f"Unsupported T5 activation {name!r} (from feed_forward_proj="
        f"{feed_forward_proj!r}). Supported: relu, gelu, gelu_python, "
        "gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish."
    )


def feed_forward_proj_from_backbone(backbone):
    """keras activation + gating -> Hugging Face `feed_forward_proj`."""
    activation = backbone.activation
    serialized = keras.activations.serialize(activation)
    if isinstance(serialized, dict):
        serialized = serialized.get("config")
    name = str(serialized).split(">")[-1]
    gated = bool(backbone.use_gated_activation)
    if name == "relu":
        hf_name = "relu"
    elif name == "gelu":
        # Exact gelu. "gated-gelu" would mean the tanh form in Hugging Face,
        # so use the explicit exact implementation name when gated.
        hf_name = "gelu_python" if gated else "gelu"
    elif name == "gelu_approximate":
        if gated:
            return "gated-gelu"
        hf_name = "gelu_new"
    elif name in ("silu", "swish"):
        hf_name = "silu"
    else:
        raise ValueError(
            f"Cannot express activation {serialized!r} as a Hugging Face T5 "
            "`feed_forward_proj`. Supported: relu, gelu, "
            "keras_hub>gelu_approximate, silu."
        )
    return f"gated-{hf_name}" if gated else hf_name


def backbone_kwargs_from_config(config):
    """Translate a Hugging Face T5 `config.json` into `T5Backbone` kwargs."""
    if not is_t5_config(config):
        raise ValueError(
            "Not a T5 config: expected `model_type: t5` or one of "
            f"{T5_ARCHITECTURES}. Received model_type="
            f"{config.get('model_type')!r}, "
            f"architectures={config.get('architectures')!r}"
        )
    required = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers")
    missing = [k for k in required + ("num_heads",) if k not in config]
    if missing:
        raise ValueError(f"T5 config.json lacks required keys: {missing}")
    num_layers = int(config["num_layers"])
    num_decoder_layers = config.get("num_decoder_layers")
    if num_decoder_layers is not None and int(num_decoder_layers) != num_layers:
        raise ValueError(
            "keras-hub's T5Backbone uses one `num_layers` for the encoder and "
            f"decoder, but this checkpoint has num_layers={num_layers} and "
            f"num_decoder_layers={num_decoder_layers}."
        )
    num_buckets = config.get("relative_attention_num_buckets", 32)
    max_distance = config.get("relative_attention_max_distance", 128)
    if (num_buckets, max_distance) != (
        SUPPORTED_NUM_BUCKETS,
        SUPPORTED_MAX_DISTANCE,
    ):
        raise ValueError(
            "keras-hub's T5 attention hardcodes "
            f"relative_attention_num_buckets={SUPPORTED_NUM_BUCKETS} and "
            f"relative_attention_max_distance={SUPPORTED_MAX_DISTANCE}. "
            f"Received: {num_buckets} and {max_distance}."
        )
    activation, gated = activation_from_feed_forward_proj(
        config.get("feed_forward_proj", "relu")
    )
    return {
        "vocabulary_size": int(config["vocab_size"]),
        "num_layers": num_layers,
        "num_heads": int(config["num_heads"]),
        "hidden_dim": int(config["d_model"]),
        "intermediate_dim": int(config["d_ff"]),
        "key_value_dim": int(config["d_kv"]),
        "dropout": float(config.get("dropout_rate", 0.1)),
        "activation": activation,
        "use_gated_activation": gated,
        "layer_norm_epsilon": float(config.get("layer_norm_epsilon", 1e-6)),
    }


def scales_decoder_outputs(config):
    """Whether the LM head input is scaled by `d_model**-0.5` (tied T5)."""
    # transformers >= 5 stores the flag separately and always sets
    # `tie_word_embeddings=True`; older configs use `tie_word_embeddings`.
    if "scale_decoder_outputs" in config:
        return bool(config["scale_decoder_outputs"])
    return bool(config.get("tie_word_embeddings", True))
