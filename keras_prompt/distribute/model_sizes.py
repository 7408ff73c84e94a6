"""Shapes of the models and devices the memory planner knows.

Everything here is a table written down from the published model configs and
accelerator specs: nothing is downloaded. `ModelSpec` holds the few numbers
the planner needs; `model_spec()` finds one by preset name, from a keras-hub
backbone config dict, or from a `ModelSpec`. How a family's config reads
into a `ModelSpec` is that family's adapter's `model_spec` (its size
facts); the named models below are keras-hub configs read the same way.
"""

import dataclasses

import keras_hub
import numpy as np

from keras_prompt.adapters.base import find_adapter_class
from keras_prompt.adapters.base import registered_adapters
from keras_prompt.adapters.model_spec import ModelSpec

GIB = 1024**3


def planned_backbone_classes():
    """The keras-hub backbone classes whose adapters have size facts."""
    return [
        name
        for adapter in registered_adapters()
        if adapter.model_spec is not None
        for name in adapter.backbone_classes
    ]


def spec_from_backbone_config(backbone_class, config, name):
    """A `ModelSpec` read by the adapter of a keras-hub backbone class.

    Args:
        backbone_class: a keras-hub backbone class, or its name.
        config: dict, the backbone's config.
        name: str, the spec's name.
    """
    class_name = backbone_class
    if isinstance(backbone_class, str):
        backbone_class = getattr(keras_hub.models, backbone_class, None)
    else:
        class_name = backbone_class.__name__
    adapter = None
    if isinstance(backbone_class, type):
        adapter = find_adapter_class(backbone_class)
    if adapter is None or adapter.model_spec is None:
        raise ValueError(
            "The planner reads configs of "
            f"{', '.join(planned_backbone_classes())} and their subclasses; "
            "pass ModelSpec fields for other models. Received: "
            f"class_name={class_name!r}"
        )
    try:
        return adapter.model_spec(config, name)
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
            `FrozenBackbone`) instance of a family whose adapter has size
            facts (`planned_backbone_classes()`: T5, Gemma, Llama, Mistral,
            Qwen and GPT-2).

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
            return spec_from_backbone_config(
                model["class_name"], config, config.get("name", "custom")
            )
    if hasattr(model, "get_config") and hasattr(model, "token_embedding"):
        backbone = getattr(model, "backbone", model)  # FrozenBackbone
        return spec_from_backbone_config(
            type(backbone), backbone.get_config(), backbone.name
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


def _configs(class_name, keys, rows, **shared):
    """`{name: serialized backbone}` of `class_name` for table `rows`
    (`name: values of keys`), each config updated with `shared`."""
    return {
        name: {
            "class_name": class_name,
            "config": dict(zip(keys, values), name=name, **shared),
        }
        for name, values in rows.items()
    }


# Original T5 (ReLU, tied embeddings) and T5 1.1 (GEGLU, untied); the
# LM-adapted T5 1.1 checkpoints of the paper and FLAN-T5 share T5 1.1's
# shapes.
_T5_KEYS = (
    "hidden_dim",
    "num_layers",
    "num_heads",
    "key_value_dim",
    "intermediate_dim",
    "activation",
    "use_gated_activation",
    "tie_embedding_weights",
)
_T5_SHAPES = {
    "t5_small": (512, 6, 8, 64, 2048, "relu", False, True),
    "t5_base": (768, 12, 12, 64, 3072, "relu", False, True),
    "t5_large": (1024, 24, 16, 64, 4096, "relu", False, True),
    "t5_3b": (1024, 24, 32, 128, 16384, "relu", False, True),
    "t5_11b": (1024, 24, 128, 128, 65536, "relu", False, True),
    "t5_1.1_small": (512, 8, 6, 64, 1024, "gelu", True, False),
    "t5_1.1_base": (768, 12, 12, 64, 2048, "gelu", True, False),
    "t5_1.1_large": (1024, 24, 16, 64, 2816, "gelu", True, False),
    "t5_1.1_xl": (2048, 24, 32, 64, 5120, "gelu", True, False),
    "t5_1.1_xxl": (4096, 24, 64, 64, 10240, "gelu", True, False),
}
_DECODER_KEYS = (
    "vocabulary_size",
    "hidden_dim",
    "num_layers",
    "num_query_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_dim",
    "tie_word_embeddings",
)
# keras-hub's Gemma configs hold both gated branches in `intermediate_dim`.
_GEMMA_SHAPES = {
    "gemma_2b": (256000, 2048, 18, 8, 1, 256, 32768, True),
    "gemma_7b": (256000, 3072, 28, 16, 16, 256, 49152, True),
}
_LLAMA_SHAPES = {
    "llama2_7b": (32000, 4096, 32, 32, 32, 128, 11008, False),
    "llama3_8b": (128256, 4096, 32, 32, 8, 128, 14336, False),
    "llama2_70b": (32000, 8192, 80, 64, 8, 128, 28672, False),
    "llama3_70b": (128256, 8192, 80, 64, 8, 128, 28672, False),
}
_GPT2_SHAPES = {"gpt2_base": (50257, 768, 12, 12, 12, 64, 3072, True)}
_CONFIGS = {
    **_configs("T5Backbone", _T5_KEYS, _T5_SHAPES, vocabulary_size=32128),
    **_configs("GemmaBackbone", _DECODER_KEYS, _GEMMA_SHAPES),
    **_configs("LlamaBackbone", _DECODER_KEYS, _LLAMA_SHAPES),
    **_configs(
        "GPT2Backbone", _DECODER_KEYS, _GPT2_SHAPES, max_sequence_length=1024
    ),
}
MODELS = {name: model_spec(config) for name, config in _CONFIGS.items()}

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


def weight_bytes(model):
    """Bytes of a model's weights, as stored.

    Args:
        model: a Keras layer or model (e.g. a task or `FrozenBackbone`).

    Returns:
        A dict: `"trainable"`, `"frozen"` and `"total"` bytes, and
        `"by_dtype"` (bytes per variable dtype).

    Example:

    ```python
    weight_bytes(keras_prompt.FrozenBackbone(t5_bf16, prompt_length=4))
    # {"trainable": 512, "frozen": ..., "by_dtype": {"bfloat16": ...,
    #  "float32": 512}, ...}: the prompt stays float32
    ```
    """
    sizes = {"trainable": 0, "frozen": 0, "by_dtype": {}}
    trainable = {id(v) for v in model.trainable_weights}
    seen = set()
    for variable in model.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        dtype = str(variable.dtype)
        size = int(np.prod(variable.shape)) * np.dtype(dtype).itemsize
        key = "trainable" if id(variable) in trainable else "frozen"
        sizes[key] += size
        sizes["by_dtype"][dtype] = sizes["by_dtype"].get(dtype, 0) + size
    sizes["total"] = sizes["trainable"] + sizes["frozen"]
    return sizes
