"""Shapes of the models and devices the memory planner knows.

Everything here is a table written down from the published model configs and
accelerator specs: nothing is downloaded. `ModelSpec` holds the few numbers
the planner needs; `model_spec()` finds one by preset name, from a keras-hub
backbone config dict, or from a `ModelSpec`.
"""

import dataclasses
import functools

from keras_prompt.validation import check_positive_int

GIB = 1024**3
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
# Whether each `ModelSpec.family` runs a decoder stack next to an encoder
# (and so reads target sequences) or is decoder-only.
ENCODER_DECODER = {"t5": True, "decoder": False}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The shape of a transformer, as far as memory is concerned.

    Args:
        name: str, a label.
        family: `"t5"` (encoder-decoder) or `"decoder"` (decoder-only);
            sets the `encoder_decoder` property the planner reads.
        vocabulary_size: int.
        hidden_dim: int, the model width `h`.
        num_layers: int, transformer blocks (the encoder's for T5).
        num_heads: int, query heads `a`.
        head_dim: int, width of one head `d_k` (`a * d_k` is the attention
            width, which T5 XL/XXL make different from `h`).
        intermediate_dim: int, the feed-forward width `f` of one branch
            (for a gated MLP each of the two input projections has `f`).
        gated: bool, gated feed-forward (GEGLU / SwiGLU: three matrices).
        num_decoder_layers: int, T5 decoder blocks (defaults to
            `num_layers`; unused for decoder-only models).
        num_kv_heads: int, key/value heads (grouped-query attention);
            defaults to `num_heads`.
        tied_embeddings: bool, whether the output projection reuses the
            token embedding.
        max_positions: int, learned absolute positions (GPT-2) or 0.
        activation: the feed-forward activation as implemented:
            `"relu"`, `"gelu"` (exact, erf), `"gelu_tanh"` (tanh
            approximation) or `"silu"`; sets how many feed-forward tensors
            the backward pass keeps (see `planner`).
        score_tensors: int, tensors of the attention scores' size kept per
            layer (`1` for keras-hub T5 and GPT-2 attention; `2` for the
            Gemma / Llama-style attention, measured by
            `benchmarks/planner_accuracy.py`).
    """

    name: str
    family: str
    vocabulary_size: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    head_dim: int
    intermediate_dim: int
    gated: bool = True
    num_decoder_layers: int = None
    num_kv_heads: int = None
    tied_embeddings: bool = False
    max_positions: int = 0
    activation: str = "gelu"
    score_tensors: int = 1

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}. "
                f"Received: activation={self.activation!r}"
            )
        if self.family not in ENCODER_DECODER:
            raise ValueError(
                "`family` must be 't5' or 'decoder'. "
                f"Received: family={self.family!r}"
            )
        for field in (
            "vocabulary_size",
            "hidden_dim",
            "num_layers",
            "num_heads",
            "head_dim",
            "intermediate_dim",
            "score_tensors",
        ):
            check_positive_int(field, getattr(self, field))
        if self.num_decoder_layers is None:
            object.__setattr__(self, "num_decoder_layers", self.num_layers)
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)

    @property
    def encoder_decoder(self):
        """Whether the model is encoder-decoder (T5): a decoder stack with
        cross-attention reads target sequences next to the encoder."""
        return ENCODER_DECODER[self.family]

    @property
    def attention_dim(self):
        """`a * d_k`, the width of queries, keys and values."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self):
        return self.num_kv_heads * self.head_dim

    def _mlp_params(self):
        matrices = 3 if self.gated else 2
        return matrices * self.hidden_dim * self.intermediate_dim

    def num_parameters(self):
        """Weights of the model (biases other than GPT-2's are ignored)."""
        h, v = self.hidden_dim, self.vocabulary_size
        embeddings = v * h * (1 if self.tied_embeddings else 2)
        if self.encoder_decoder:
            attention = 4 * h * self.attention_dim
            encoder = self.num_layers * (attention + self._mlp_params() + 2 * h)
            decoder = self.num_decoder_layers * (
                2 * attention + self._mlp_params() + 3 * h
            )
            # Relative position buckets (32) of the first layer of each
            # stack, and the two final norms.
            extra = 2 * 32 * self.num_heads + 2 * h
            return embeddings + encoder + decoder + extra
        attention = 2 * h * self.attention_dim + 2 * h * self.kv_dim
        layer = attention + self._mlp_params() + 2 * h
        if self.max_positions:  # GPT-2: biases and learned positions.
            layer += 4 * h + 3 * self.attention_dim + self.intermediate_dim
            embeddings += self.max_positions * h + h
        return embeddings + self.num_layers * layer + h

    def to_dict(self):
        return dataclasses.asdict(self)


def _spec(name, family, v, h, layers, heads, head_dim, f, **fields):
    """A `ModelSpec` from the sizes every model has, plus other `fields`."""
    return ModelSpec(
        name=name,
        family=family,
        vocabulary_size=v,
        hidden_dim=h,
        num_layers=layers,
        num_heads=heads,
        head_dim=head_dim,
        intermediate_dim=f,
        **fields,
    )


def _t5(name, v, h, layers, heads, d_kv, f, gated, tied):
    sizes = (name, "t5", v, h, layers, heads, d_kv, f)
    activation = "gelu" if gated else "relu"
    return _spec(
        *sizes, gated=gated, tied_embeddings=tied, activation=activation
    )


# How keras-hub implements each decoder family's block.
_DECODER_STYLES = {
    "gemma": dict(gated=True, activation="gelu_tanh", score_tensors=2),
    "llama": dict(gated=True, activation="silu", score_tensors=2),
    "gpt2": dict(gated=False, activation="gelu_tanh", score_tensors=1),
}


def _decoder(name, style, v, h, layers, heads, kv, d_k, f, tied, pos=0):
    sizes = (name, "decoder", v, h, layers, heads, d_k, f)
    return _spec(
        *sizes,
        num_kv_heads=kv,
        tied_embeddings=tied,
        max_positions=pos,
        **_DECODER_STYLES[style],
    )


# Original T5 (ReLU, tied embeddings) and T5 1.1 (GEGLU, untied); the
# LM-adapted T5 1.1 checkpoints of the paper and FLAN-T5 share T5 1.1's
# shapes.
_T5_V = 32128
_T5_SHAPES = {
    # name: (hidden, layers, heads, head dim, feed-forward, gated, tied)
    "t5_small": (512, 6, 8, 64, 2048, False, True),
    "t5_base": (768, 12, 12, 64, 3072, False, True),
    "t5_large": (1024, 24, 16, 64, 4096, False, True),
    "t5_3b": (1024, 24, 32, 128, 16384, False, True),
    "t5_11b": (1024, 24, 128, 128, 65536, False, True),
    "t5_1.1_small": (512, 8, 6, 64, 1024, True, 0),
    "t5_1.1_base": (768, 12, 12, 64, 2048, True, 0),
    "t5_1.1_large": (1024, 24, 16, 64, 2816, True, False),
    "t5_1.1_xl": (2048, 24, 32, 64, 5120, True, False),
    "t5_1.1_xxl": (4096, 24, 64, 64, 10240, True, False),
}
# name: (style, vocabulary, hidden, layers, heads, key/value heads, head
# dim, feed-forward, tied[, learned positions])
_DECODER_SHAPES = {
    "gemma_2b": ("gemma", 256000, 2048, 18, 8, 1, 256, 16384, True),
    "gemma_7b": ("gemma", 256000, 3072, 28, 16, 16, 256, 24576, True),
    "llama2_7b": ("llama", 32000, 4096, 32, 32, 32, 128, 11008, False),
    "llama3_8b": ("llama", 128256, 4096, 32, 32, 8, 128, 14336, False),
    "llama2_70b": ("llama", 32000, 8192, 80, 64, 8, 128, 28672, False),
    "llama3_70b": ("llama", 128256, 8192, 80, 64, 8, 128, 28672, False),
    "gpt2_base": ("gpt2", 50257, 768, 12, 12, 12, 64, 3072, True, 1024),
}
MODELS = {
    **{name: _t5(name, _T5_V, *shape) for name, shape in _T5_SHAPES.items()},
    **{name: _decoder(name, *shape) for name, shape in _DECODER_SHAPES.items()},
}

# Other names for the same shapes: keras-hub presets, the paper's names and
# size words.
ALIASES = {
    "t5_small_multi": "t5_small",
    "t5_base_multi": "t5_base",
    "t5_large_multi": "t5_large",
    "t5_xl": "t5_3b",
    "t5_xxl": "t5_11b",
    "flan_small_multi": "t5_1.1_small",
    "flan_base_multi": "t5_1.1_base",
    "flan_large_multi": "t5_1.1_large",
    "t5_1.1_3b": "t5_1.1_xl",
    "t5_1.1_11b": "t5_1.1_xxl",
    "gemma_2b_en": "gemma_2b",
    "gemma_instruct_2b_en": "gemma_2b",
    "gemma_7b_en": "gemma_7b",
    "gemma_instruct_7b_en": "gemma_7b",
    "llama2_7b_en": "llama2_7b",
    "llama_7b": "llama2_7b",
    "llama3_8b_en": "llama3_8b",
    "llama3.1_8b": "llama3_8b",
    "llama_70b": "llama2_70b",
    "gpt2_base_en": "gpt2_base",
}
for _size in ("small", "base", "large", "xl", "xxl"):
    ALIASES[f"t5_1.1_lm_adapted_{_size}"] = f"t5_1.1_{_size}"
    ALIASES[f"t5_lm_adapted_{_size}"] = f"t5_1.1_{_size}"


def preset_names():
    """Every model name `model_spec` accepts."""
    return sorted(set(MODELS) | set(ALIASES))


def _t5_from_config(get, name):
    activation = str(get("activation", "relu"))
    if "relu" in activation:
        activation = "relu"
    elif "approx" in activation or "tanh" in activation:
        activation = "gelu_tanh"
    else:
        activation = "gelu"
    h = get("hidden_dim")
    heads = get("num_heads") or get("num_query_heads")
    return _spec(
        name,
        "t5",
        get("vocabulary_size"),
        h,
        get("num_layers"),
        heads,
        get("key_value_dim") or h // heads,
        get("intermediate_dim"),
        activation=activation,
        gated=bool(get("use_gated_activation", True)),
        tied_embeddings=bool(get("tie_embedding_weights", True)),
    )


def _decoder_from_config(
    get, name, style, branches=1, tied=False, positions=False
):
    """Reads a decoder-only config.

    Args:
        get: the config's `get`.
        name: str, the spec's name.
        style: a key of `_DECODER_STYLES`.
        branches: int, gated branches `intermediate_dim` holds together.
        tied: bool, whether embeddings are tied when the config does not
            say.
        positions: bool, learned absolute positions (`max_sequence_length`
            of them); such a model (GPT-2) always ties its embeddings.
    """
    h = get("hidden_dim")
    heads = get("num_heads") or get("num_query_heads")
    intermediate = get("intermediate_dim")
    if branches > 1:
        intermediate //= branches
    return _spec(
        name,
        "decoder",
        get("vocabulary_size"),
        h,
        get("num_layers"),
        heads,
        get("head_dim") or h // heads,
        intermediate,
        num_kv_heads=get("num_key_value_heads"),
        tied_embeddings=bool(get("tie_word_embeddings", tied) or positions),
        max_positions=get("max_sequence_length", 0) if positions else 0,
        **_DECODER_STYLES[style],
    )


def _reader(style, **options):
    return functools.partial(_decoder_from_config, style=style, **options)


# How the planner reads the config of each keras-hub backbone class it
# knows. keras-hub's Gemma stores both gated branches in `intermediate_dim`
# and ties embeddings by default.
_CONFIG_READERS = {
    "T5Backbone": _t5_from_config,
    "GemmaBackbone": _reader("gemma", branches=2, tied=True),
    "LlamaBackbone": _reader("llama"),
    "Llama3Backbone": _reader("llama"),
    "MistralBackbone": _reader("llama"),
    "QwenBackbone": _reader("llama"),
    "GPT2Backbone": _reader("gpt2", positions=True),
}
_DECODER_CLASSES = tuple(_CONFIG_READERS)[1:]


def _spec_from_backbone_config(class_name, config, name):
    """A `ModelSpec` from a keras-hub backbone's class name and config."""
    if class_name not in _CONFIG_READERS:
        raise ValueError(
            "The planner reads configs of T5Backbone and "
            f"{', '.join(_DECODER_CLASSES)}; pass ModelSpec fields for "
            f"other models. Received: class_name={class_name!r}"
        )
    try:
        return _CONFIG_READERS[class_name](config.get, name)
    except TypeError as error:
        raise ValueError(
            f"The {class_name} config misses a size the planner needs "
            f"({error}). Received: config keys={sorted(config)}"
        ) from None


def model_spec(model):
    """The `ModelSpec` of a preset name, a config dict or a `ModelSpec`.

    Args:
        model: a name from `preset_names()` (keras-hub preset names such as
            `"t5_1.1_xxl"` or `"gemma_7b_en"` work), a `ModelSpec`, a dict
            of `ModelSpec` fields (with `"family"`), a serialized keras-hub
            backbone (`{"class_name": "T5Backbone", "config": {...}}`, as in
            a preset's `config.json`), or a keras-hub backbone (or
            `FrozenBackbone`) instance of T5, Gemma, Llama, Mistral, Qwen
            or GPT-2.

    Example:

    ```python
    spec = model_spec("t5_1.1_xxl")
    spec.num_parameters() / 1e9  # 11.1
    ```
    """
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, dict):
        fields = {f.name for f in dataclasses.fields(ModelSpec)}
        if "family" in model and set(model) <= fields:
            config = dict(model)
            config.setdefault("name", "custom")
            return ModelSpec(**config)
        if "class_name" in model and isinstance(model.get("config"), dict):
            config = model["config"]
            return _spec_from_backbone_config(
                model["class_name"], config, config.get("name", "custom")
            )
    if hasattr(model, "get_config") and hasattr(model, "token_embedding"):
        backbone = getattr(model, "backbone", model)  # FrozenBackbone
        return _spec_from_backbone_config(
            type(backbone).__name__, backbone.get_config(), backbone.name
        )
    if isinstance(model, str):
        key = model.strip().lower().replace("-", "_")
        key = ALIASES.get(key, key)
        if key in MODELS:
            return MODELS[key]
    raise ValueError(
        "`model` must be a known preset name, a config dict or a ModelSpec. "
        f"Known names: {', '.join(preset_names())}. Received: model={model!r}"
    )


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """Memory of one data-parallel replica's device.

    Args:
        name: str.
        memory_bytes: int, HBM (or RAM) of one replica.
        per: what one replica is (`"core"`, `"chip"`, `"GPU"`, `"host"`).
        chip_memory_bytes: int, HBM of the whole chip (TPU v3 has two
            cores of 16 GiB).
    """

    name: str
    memory_bytes: int
    per: str
    chip_memory_bytes: int


# TPU v2/v3 chips have two TensorCores with their own HBM and TPUStrategy
# runs one replica per core; v4 and v5p chips run as one "megacore" replica
# per chip; v5e has one core per chip. GPU memory is the card's.
DEVICES = {
    "tpu_v2": DeviceSpec("tpu_v2", 8 * GIB, "core", 16 * GIB),
    "tpu_v3": DeviceSpec("tpu_v3", 16 * GIB, "core", 32 * GIB),
    "tpu_v4": DeviceSpec("tpu_v4", 32 * GIB, "chip", 32 * GIB),
    "tpu_v5e": DeviceSpec("tpu_v5e", 16 * GIB, "chip", 16 * GIB),
    "tpu_v5p": DeviceSpec("tpu_v5p", 95 * GIB, "chip", 95 * GIB),
    "a100_40": DeviceSpec("a100_40", 40 * GIB, "GPU", 40 * GIB),
    "a100_80": DeviceSpec("a100_80", 80 * GIB, "GPU", 80 * GIB),
    "h100_80": DeviceSpec("h100_80", 80 * GIB, "GPU", 80 * GIB),
}
DEVICE_ALIASES = {
    "v2": "tpu_v2",
    "v3": "tpu_v3",
    "v4": "tpu_v4",
    "v5e": "tpu_v5e",
    "v5litepod": "tpu_v5e",
    "v5p": "tpu_v5p",
    "a100": "a100_40",
    "a100_40gb": "a100_40",
    "a100_80gb": "a100_80",
    "h100": "h100_80",
    "h100_80gb": "h100_80",
}


def device_names():
    return sorted(set(DEVICES) | set(DEVICE_ALIASES) | {"cpu"})


def device_spec(device, ram_gb=None):
    """The `DeviceSpec` of a device name; `"cpu"` needs `ram_gb`.

    Args:
        device: a name from `device_names()` (`"tpu_v4"`, `"v5e"`,
            `"a100_80"`, `"h100"`, `"cpu"`, ...) or a `DeviceSpec`.
        ram_gb: float, the host's memory in GiB for `device="cpu"`.
    """
    if isinstance(device, DeviceSpec):
        return device
    if not isinstance(device, str):
        raise ValueError(
            f"`device` must be one of {device_names()}. "
            f"Received: device={device!r}"
        )
    key = device.strip().lower().replace("-", "_")
    if key == "cpu":
        if ram_gb is None or isinstance(ram_gb, bool) or not ram_gb > 0:
            raise ValueError(
                "`device='cpu'` needs the host memory as `ram_gb` (GiB). "
                f"Received: ram_gb={ram_gb!r}"
            )
        memory = int(float(ram_gb) * GIB)
        return DeviceSpec(f"cpu_{ram_gb:g}gb", memory, "host", memory)
    key = DEVICE_ALIASES.get(key, key)
    if key not in DEVICES:
        raise ValueError(
            f"`device` must be one of {device_names()}. "
            f"Received: device={device!r}"
        )
    return DEVICES[key]
