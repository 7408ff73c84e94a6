"""Load Hugging Face T5 checkpoints into keras-hub's `T5Backbone`.

keras-hub ships no Hugging Face converter for T5, yet the frozen models that
work best for prompt tuning (the T5 1.1 "LM-adapted" checkpoints,
`google/t5-{small,base,large,xl,xxl}-lm-adapt`) are published in the Hugging
Face layout. This module maps every tensor of such a checkpoint explicitly
onto the variables of `keras_hub.models.T5Backbone`, and back.

Layout notes (Hugging Face name -> keras-hub variable):

- `shared.weight` `(vocab, d_model)` -> `token_embedding.embeddings`.
- `lm_head.weight` `(vocab, d_model)` -> `token_embedding.reverse_embeddings`
  `(d_model, vocab)`, transposed, only when the head is untied.
- `*.{q,k,v,o}.weight` and `*.DenseReluDense.{wi,wi_0,wi_1,wo}.weight` are
  torch `Linear` weights `(out, in)` -> keras `Dense` kernels `(in, out)`,
  transposed. `wi`/`wi_0` (the activated branch) -> `input_projector`,
  `wi_1` (the linear gate) -> `gate_projector`, `wo` -> `output_projector`.
- `*.relative_attention_bias.weight` `(buckets, heads)` -> the first layer's
  `self_attention.relative_attention_bias`, unchanged.
- `*.layer_norm.weight` / `*.final_layer_norm.weight` -> `T5LayerNorm.weight`.
"""

import contextlib
import json
import os

import keras
import keras_hub
import numpy as np

from keras_prompt.prompt_files import atomic_write_bytes

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes ships with keras/jax/tf.
    ml_dtypes = None

HF_PREFIX = "hf://"
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
SPIECE_FILE = "spiece.model"

# keras-hub's `T5MultiHeadAttention` hardcodes these two values.
SUPPORTED_NUM_BUCKETS = 32
SUPPORTED_MAX_DISTANCE = 128

T5_ARCHITECTURES = ("T5ForConditionalGeneration", "T5Model", "T5EncoderModel")

# Tensors that may duplicate `shared.weight` in a checkpoint.
EMBEDDING_ALIASES = (
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
)
# Present in the original T5 checkpoints but never used by the model (Hugging
# Face ignores it on load too): cross-attention has no relative bias.
IGNORED_TENSORS = (
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
)

# Hugging Face activation names (`ACT2FN`) -> keras activations.
_EXACT_GELU = ("gelu", "gelu_python")
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_SILU = ("silu", "swish")


# --------------------------------------------------------------------------
# Checkpoint location.
# --------------------------------------------------------------------------


def _is_hf_handle(path):
    return isinstance(path, str) and path.startswith(HF_PREFIX)


def _has_weights(path):
    return any(
        os.path.isfile(os.path.join(path, name))
        for name in (
            SAFETENSORS_FILE,
            SAFETENSORS_INDEX_FILE,
            TORCH_FILE,
            TORCH_INDEX_FILE,
        )
    )


def _download_hf_handle(handle):
    """Download the files of an `hf://owner/name` handle, return a local dir."""
    repo_id = handle[len(HF_PREFIX) :].strip("/")
    revision = None
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    if repo_id.count("/") != 1:
        raise ValueError(
            "A Hugging Face handle must look like `hf://owner/name` (or "
            f"`hf://owner/name@revision`). Received: {handle!r}"
        )
    try:
        from huggingface_hub import snapshot_download

        common = [CONFIG_FILE, SPIECE_FILE, "generation_config.json"]
        local_dir = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=common + ["*.safetensors", SAFETENSORS_INDEX_FILE],
        )
        if not _has_weights(local_dir):
            # Older repos only publish PyTorch pickles.
            local_dir = snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=common
                + ["pytorch_model*.bin", TORCH_INDEX_FILE],
            )
    except Exception as e:
        raise ValueError(
            f"Could not download the Hugging Face checkpoint {handle!r} "
            f"(repo_id={repo_id!r}, revision={revision!r}). Check the name and "
            "your network access, or download it yourself and pass the local "
            f"directory instead. Underlying error: {type(e).__name__}: {e}"
        ) from e
    return local_dir


def _resolve_path(path):
    """Return a local directory for a local path or an `hf://` handle."""
    if _is_hf_handle(path):
        return _download_hf_handle(path)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a local checkpoint directory or an "
            f"`hf://owner/name` handle. No directory at: {path!r}"
        )
    return path


def _read_config(path):
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"No `{CONFIG_FILE}` in checkpoint dir {path!r}.")
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def _is_t5_config(config):
    if config.get("model_type") == "t5":
        return True
    architectures = config.get("architectures") or []
    return any(a in T5_ARCHITECTURES for a in architectures)


def is_hf_t5_checkpoint(path):
    """Return whether `path` is a local Hugging Face T5 checkpoint directory.

    A directory qualifies when its `config.json` describes a T5 model
    (`"model_type": "t5"`, or one of the `T5ForConditionalGeneration`,
    `T5Model`, `T5EncoderModel` architectures) and it holds weights as
    `model.safetensors`, a sharded `model.safetensors.index.json`, or the
    PyTorch equivalents (`pytorch_model.bin`, `pytorch_model.bin.index.json`,
    which need `torch` to load). `hf://` handles are not resolved here, so
    this never touches the network.

    Args:
        path: str or path-like. The directory to inspect.

    Returns:
        bool. `False` for anything that is not such a directory, including
        unreadable or malformed config files.

    Example:
    ```python
    import tempfile
    from keras_prompt.convert import is_hf_t5_checkpoint

    is_hf_t5_checkpoint(tempfile.mkdtemp())  # False: no config.json.
    ```
    """
    if _is_hf_handle(path):
        return False
    try:
        path = os.fspath(path)
    except TypeError:
        return False
    if not os.path.isdir(path) or not _has_weights(path):
        return False
    try:
        config = _read_config(path)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and _is_t5_config(config)


# --------------------------------------------------------------------------
# Tensor reading.
# --------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
if ml_dtypes is not None:
    _SAFETENSORS_DTYPES["BF16"] = ml_dtypes.bfloat16


def _read_safetensors_raw(filename, name):
    """Read one tensor straight from the file bytes (no framework needed).

    Fallback for safetensors builds whose numpy backend cannot represent a
    dtype (bf16 on old versions).
    """
    with open(filename, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
        if name not in header:
            raise KeyError(name)
        info = header[name]
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(
                f"Unsupported safetensors dtype {info['dtype']!r} for tensor "
                f"{name!r} in {filename!r}."
            )
        begin, end = info["data_offsets"]
        f.seek(8 + header_size + begin)
        data = f.read(end - begin)
    return np.frombuffer(data, dtype=dtype).reshape(info["shape"]).copy()


class _TensorReader:
    """Name -> numpy array over single or sharded safetensors / torch files."""

    def __init__(self, path):
        self.path = path
        self._stack = contextlib.ExitStack()
        self._handles = {}
        self._torch_state = {}
        self.files = {}  # tensor name -> file name.
        single = os.path.join(path, SAFETENSORS_FILE)
        index = os.path.join(path, SAFETENSORS_INDEX_FILE)
        torch_single = os.path.join(path, TORCH_FILE)
        torch_index = os.path.join(path, TORCH_INDEX_FILE)
        if os.path.isfile(single):
            self.format = "safetensors"
            for name in self._safetensors_handle(SAFETENSORS_FILE).keys():
                self.files[name] = SAFETENSORS_FILE
        elif os.path.isfile(index):
            self.format = "safetensors"
            self.files = self._read_index(index)
        elif os.path.isfile(torch_single):
            self.format = "torch"
            for name in self._torch_file(TORCH_FILE):
                self.files[name] = TORCH_FILE
        elif os.path.isfile(torch_index):
            self.format = "torch"
            self.files = self._read_index(torch_index)
        else:
            raise ValueError(
                f"No weights in checkpoint dir {path!r}: expected "
                f"`{SAFETENSORS_FILE}` or `{SAFETENSORS_INDEX_FILE}` (or "
                f"`{TORCH_FILE}` / `{TORCH_INDEX_FILE}`)."
            )

    def _read_index(self, index_path):
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"No `weight_map` in {index_path!r}.")
        for filename in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(self.path, filename)):
                raise ValueError(
                    f"Shard {filename!r} listed in {index_path!r} is missing."
                )
        return dict(weight_map)

    def _safetensors_handle(self, filename):
        if filename not in self._handles:
            from safetensors import safe_open

            handle = safe_open(
                os.path.join(self.path, filename), framework="np"
            )
            self._handles[filename] = self._stack.enter_context(handle)
        return self._handles[filename]

    def _torch_file(self, filename):
        if filename not in self._torch_state:
            try:
                import torch
            except ImportError as e:
                raise ValueError(
                    f"Checkpoint {self.path!r} only has PyTorch weights "
                    f"({filename!r}); install `torch` to read them, or convert "
                    "them to safetensors."
                ) from e
            self._torch_state[filename] = torch.load(
                os.path.join(self.path, filename),
                map_location="cpu",
                weights_only=True,
            )
        return self._torch_state[filename]

    @property
    def names(self):
        return set(self.files)

    def get(self, name):
        filename = self.files[name]
        if self.format == "torch":
            tensor = self._torch_file(filename)[name]
            import torch

            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            return tensor.numpy()
        handle = self._safetensors_handle(filename)
        try:
            return handle.get_tensor(name)
        except (TypeError, ValueError):
            return _read_safetensors_raw(
                os.path.join(self.path, filename), name
            )

    def shape(self, name):
        filename = self.files[name]
        if self.format == "torch":
            return tuple(self._torch_file(filename)[name].shape)
        handle = self._safetensors_handle(filename)
        return tuple(handle.get_slice(name).get_shape())

    def close(self):
        self._stack.close()
        self._handles.clear()
        self._torch_state.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# Config mapping.
# --------------------------------------------------------------------------


def _gelu_approximate():
    # keras-hub's registered tanh-approximate gelu; it serializes as
    # "keras_hub>gelu_approximate" so `T5Backbone.from_config` round trips.
    from keras_hub.src.utils.keras_utils import gelu_approximate

    return gelu_approximate


def _activation_from_feed_forward_proj(feed_forward_proj):
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


def _feed_forward_proj_from_backbone(backbone):
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


def _backbone_kwargs_from_config(config):
    """Translate a Hugging Face T5 `config.json` into `T5Backbone` kwargs."""
    if not _is_t5_config(config):
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
    activation, gated = _activation_from_feed_forward_proj(
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


def _scales_decoder_outputs(config):
    """Whether the LM head input is scaled by `d_model**-0.5` (tied T5)."""
    # transformers >= 5 stores the flag separately and always sets
    # `tie_word_embeddings=True`; older configs use `tie_word_embeddings`.
    if "scale_decoder_outputs" in config:
        return bool(config["scale_decoder_outputs"])
    return bool(config.get("tie_word_embeddings", True))


# --------------------------------------------------------------------------
# Weight mapping.
# --------------------------------------------------------------------------


def _attention_map(prefix, attention):
    entries = [
        (f"{prefix}.q.weight", attention.query_projector.kernel, True),
        (f"{prefix}.k.weight", attention.key_projector.kernel, True),
        (f"{prefix}.v.weight", attention.value_projector.kernel, True),
        (f"{prefix}.o.weight", attention.output_projector.kernel, True),
    ]
    if attention.use_relative_attention_bias:
        entries.append(
            (
                f"{prefix}.relative_attention_bias.weight",
                attention.relative_attention_bias,
                False,
            )
        )
    return entries


def _feed_forward_map(prefix, layer):
    if layer.use_gated_activation:
        return [
            (f"{prefix}.wi_0.weight", layer.input_projector.kernel, True),
            (f"{prefix}.wi_1.weight", layer.gate_projector.kernel, True),
            (f"{prefix}.wo.weight", layer.output_projector.kernel, True),
        ]
    return [
        (f"{prefix}.wi.weight", layer.input_projector.kernel, True),
        (f"{prefix}.wo.weight", layer.output_projector.kernel, True),
    ]


def _block_map(prefix, layer, attentions):
    """Entries of one block: each of `attentions`, a list of
    `(hf_name, attention_layer, layer_norm)`, then the feed-forward."""
    entries = []
    for index, (hf_name, attention, norm) in enumerate(attentions):
        entries += _attention_map(f"{prefix}.{index}.{hf_name}", attention)
        entries.append(
            (f"{prefix}.{index}.layer_norm.weight", norm.weight, False)
        )
    index = len(attentions)
    entries += _feed_forward_map(f"{prefix}.{index}.DenseReluDense", layer)
    entries.append(
        (f"{prefix}.{index}.layer_norm.weight", layer.layer_norm.weight, False)
    )
    return entries


def _stack_map(stack, layers, final_norm, cross_attention):
    """Entries of the `"encoder"` or `"decoder"` stack's blocks and norm."""
    entries = []
    for i, layer in enumerate(layers):
        attentions = [
            (
                "SelfAttention",
                layer.self_attention,
                layer.self_attention_layer_norm,
            )
        ]
        if cross_attention:
            attentions.append(
                (
                    "EncDecAttention",
                    layer.cross_attention,
                    layer.cross_attention_layer_norm,
                )
            )
        entries += _block_map(f"{stack}.block.{i}.layer", layer, attentions)
    entries.append(
        (f"{stack}.final_layer_norm.weight", final_norm.weight, False)
    )
    return entries


def _weight_map(backbone):
    """List of `(hf_name, keras_variable, transpose)` for every variable."""
    embedding = backbone.token_embedding
    entries = [("shared.weight", embedding.embeddings, False)]
    if not backbone.tie_embedding_weights:
        entries.append(("lm_head.weight", embedding.reverse_embeddings, True))
    entries += _stack_map(
        "encoder",
        backbone.encoder_transformer_layers,
        backbone.encoder_layer_norm,
        cross_attention=False,
    )
    entries += _stack_map(
        "decoder",
        backbone.decoder_transformer_layers,
        backbone.decoder_layer_norm,
        cross_attention=True,
    )
    # Guard against keras-hub layout drift: every variable mapped exactly once.
    mapped = [id(variable) for _, variable, _ in entries]
    all_variables = {id(v): v.path for v in backbone.weights}
    unmapped = [path for k, path in all_variables.items() if k not in mapped]
    if unmapped or len(set(mapped)) != len(mapped):
        raise RuntimeError(
            "The keras-hub T5Backbone variable layout changed; this converter "
            f"does not map: {sorted(unmapped)}"
        )
    return entries


def _hf_layout(kwargs, untied_head):
    """Hugging Face tensor name -> shape implied by `T5Backbone` kwargs."""
    d_model = kwargs["hidden_dim"]
    d_ff = kwargs["intermediate_dim"]
    inner = kwargs["num_heads"] * kwargs["key_value_dim"]
    vocab = kwargs["vocabulary_size"]
    buckets = (SUPPORTED_NUM_BUCKETS, kwargs["num_heads"])

    def attention(prefix, with_bias):
        shapes = {
            f"{prefix}.q.weight": (inner, d_model),
            f"{prefix}.k.weight": (inner, d_model),
            f"{prefix}.v.weight": (inner, d_model),
            f"{prefix}.o.weight": (d_model, inner),
        }
        if with_bias:
            shapes[f"{prefix}.relative_attention_bias.weight"] = buckets
        return shapes

    def feed_forward(prefix):
        if kwargs["use_gated_activation"]:
            shapes = {
                f"{prefix}.wi_0.weight": (d_ff, d_model),
                f"{prefix}.wi_1.weight": (d_ff, d_model),
            }
        else:
            shapes = {f"{prefix}.wi.weight": (d_ff, d_model)}
        shapes[f"{prefix}.wo.weight"] = (d_model, d_ff)
        return shapes

    layout = {"shared.weight": (vocab, d_model)}
    if untied_head:
        layout["lm_head.weight"] = (vocab, d_model)
    for i in range(kwargs["num_layers"]):
        p = f"encoder.block.{i}.layer"
        layout.update(attention(f"{p}.0.SelfAttention", i == 0))
        layout[f"{p}.0.layer_norm.weight"] = (d_model,)
        layout.update(feed_forward(f"{p}.1.DenseReluDense"))
        layout[f"{p}.1.layer_norm.weight"] = (d_model,)
        p = f"decoder.block.{i}.layer"
        layout.update(attention(f"{p}.0.SelfAttention", i == 0))
        layout[f"{p}.0.layer_norm.weight"] = (d_model,)
        layout.update(attention(f"{p}.1.EncDecAttention", False))
        layout[f"{p}.1.layer_norm.weight"] = (d_model,)
        layout.update(feed_forward(f"{p}.2.DenseReluDense"))
        layout[f"{p}.2.layer_norm.weight"] = (d_model,)
    layout["encoder.final_layer_norm.weight"] = (d_model,)
    layout["decoder.final_layer_norm.weight"] = (d_model,)
    return layout


def _numpy_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _format_names(names, limit=50):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def _check_tensor_names(available, expected, allowed_extra):
    missing = set(expected) - available
    unexpected = available - set(expected) - set(allowed_extra)
    if missing or unexpected:
        message = "The checkpoint does not match the T5Backbone layout."
        if missing:
            message += f" Missing tensors: {_format_names(missing)}."
        if unexpected:
            message += f" Unexpected tensors: {_format_names(unexpected)}."
        raise ValueError(message)


# --------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------


def load_hf_t5_backbone(path, dtype=None):
    """Load a Hugging Face T5 checkpoint into a `keras_hub.models.T5Backbone`.

    Reads `config.json` and the weights (`model.safetensors`, a sharded
    `model.safetensors.index.json`, or, with `torch` installed,
    `pytorch_model.bin` files), builds a `T5Backbone` with the matching
    architecture and assigns every tensor explicitly. T5 1.0 (`relu`, tied
    head), T5 1.1 / LM-adapted / Flan-T5 (`gated-gelu`, untied head) and
    `gated-silu` / `gated-relu` variants are supported. Any missing or
    unexpected tensor raises a `ValueError` listing the names; duplicates of
    `shared.weight` (`encoder.embed_tokens.weight`,
    `decoder.embed_tokens.weight`, a tied `lm_head.weight`) are accepted
    when they equal it.

    The Hugging Face `"gated-gelu"` activation is the tanh approximation of
    gelu, so it is mapped to keras-hub's registered `gelu_approximate`
    (keras' `"gelu"` is the exact erf form).

    Args:
        path: str or path-like. A local checkpoint directory, or an
            `hf://owner/name` (optionally `hf://owner/name@revision`) handle
            resolved with `huggingface_hub.snapshot_download`.
        dtype: string or `keras.mixed_precision.DTypePolicy`. The dtype of the
            backbone's computations and weights, e.g. `"bfloat16"`. `None`
            uses the keras default (usually `"float32"`).

    Returns:
        A `keras_hub.models.T5Backbone` holding the checkpoint weights.

    Example:
    ```python
    import tempfile
    import keras_hub
    from keras_prompt.convert import load_hf_t5_backbone
    from keras_prompt.convert import save_hf_t5_checkpoint

    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=64,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        activation="relu",
    )
    path = tempfile.mkdtemp()
    save_hf_t5_checkpoint(backbone, path)
    restored = load_hf_t5_backbone(path)

    # Or, with network access:
    # backbone = load_hf_t5_backbone("hf://google/t5-base-lm-adapt")
    ```
    """
    path = _resolve_path(path)
    config = _read_config(path)
    kwargs = _backbone_kwargs_from_config(config)
    tie = _scales_decoder_outputs(config)

    with _TensorReader(path) as reader:
        available = reader.names
        shared_name = "shared.weight"
        if shared_name not in available:
            # Some exports keep only the per-stack copies.
            for alias in EMBEDDING_ALIASES:
                if alias in available:
                    shared_name = alias
                    break
        has_lm_head = "lm_head.weight" in available

        # Validate names and shapes before building anything: building a
        # large backbone is slow and memory hungry.
        expected = _hf_layout(kwargs, untied_head=not tie)
        allowed_extra = set(EMBEDDING_ALIASES) | set(IGNORED_TENSORS)
        if tie:
            allowed_extra.add("lm_head.weight")
        elif not has_lm_head:
            # No head stored: an unscaled head equal to the embedding
            # (transformers >= 5 drops such duplicates on save).
            expected.pop("lm_head.weight")
        if shared_name != "shared.weight":
            expected[shared_name] = expected.pop("shared.weight")
        _check_tensor_names(available, expected, allowed_extra)
        embedding_shape = expected[shared_name]
        for name in sorted(available & (set(expected) | allowed_extra)):
            if name in IGNORED_TENSORS:
                continue
            want = expected.get(name, embedding_shape)
            got = reader.shape(name)
            if got != want:
                raise ValueError(
                    f"Tensor {name!r} has shape {got}, but config.json "
                    f"implies {want}."
                )

        shared = reader.get(shared_name)
        lm_head = reader.get("lm_head.weight") if has_lm_head else None
        if tie and lm_head is not None and not np.array_equal(lm_head, shared):
            raise ValueError(
                "This checkpoint scales the decoder output by d_model**-0.5 "
                "(tie_word_embeddings=True) but stores an `lm_head.weight` "
                "different from `shared.weight`. keras-hub's T5 ties the "
                "output scaling to weight tying, so it cannot represent this "
                "combination."
            )
        for alias in EMBEDDING_ALIASES:
            if alias in available and alias != shared_name:
                if not np.array_equal(reader.get(alias), shared):
                    raise ValueError(
                        f"Tensor {alias!r} differs from {shared_name!r}; "
                        "keras-hub's T5 shares one token embedding between "
                        "the encoder and decoder."
                    )

        backbone = keras_hub.models.T5Backbone(
            tie_embedding_weights=tie, dtype=dtype, **kwargs
        )
        first = backbone.encoder_transformer_layers[0].self_attention
        if (
            first.relative_attention_buckets != SUPPORTED_NUM_BUCKETS
            or first.relative_attention_max_distance != SUPPORTED_MAX_DISTANCE
        ):  # pragma: no cover - keras-hub layout drift.
            raise RuntimeError(
                "keras-hub T5 relative attention defaults changed."
            )
        entries = _weight_map(backbone)
        if {name for name, _, _ in entries} != set(
            _hf_layout(kwargs, untied_head=not tie)
        ):  # pragma: no cover - keras-hub layout drift.
            raise RuntimeError("keras-hub T5 variable layout changed.")

        for name, variable, transpose in entries:
            if name == "shared.weight":
                value = shared
            elif name == "lm_head.weight":
                value = lm_head if lm_head is not None else shared
            else:
                value = reader.get(name)
            if transpose:
                value = value.T
            if tuple(value.shape) != tuple(variable.shape):
                # pragma: no cover - shapes were checked against the config.
                raise RuntimeError(
                    f"Tensor {name!r} does not fit keras-hub variable "
                    f"{variable.path!r}: {tuple(value.shape)} vs "
                    f"{tuple(variable.shape)}."
                )
            variable.assign(value.astype(_numpy_dtype(variable.dtype)))
    return backbone


def load_hf_t5_tokenizer(path):
    """Load a `keras_hub.models.T5Tokenizer` from a checkpoint's `spiece.model`.

    Only the SentencePiece model is used. Hugging Face's T5 tokenizer also
    appends 100 `<extra_id_*>` sentinel tokens after the SentencePiece
    vocabulary; keras-hub's tokenizer does not treat them as special tokens
    (they are not needed for prompt tuning or LM-adapted checkpoints).

    Args:
        path: str or path-like. A local checkpoint directory, or an
            `hf://owner/name` handle.

    Returns:
        A `keras_hub.models.T5Tokenizer`.

    Example:
    ```python
    from keras_prompt.convert import load_hf_t5_tokenizer

    # Needs network access; a local checkpoint directory works the same way.
    tokenizer = load_hf_t5_tokenizer("hf://google/t5-base-lm-adapt")
    tokenizer("The quick brown fox.")
    ```
    """
    path = _resolve_path(path)
    spiece_path = os.path.join(path, SPIECE_FILE)
    if not os.path.isfile(spiece_path):
        raise ValueError(f"No `{SPIECE_FILE}` in checkpoint dir {path!r}.")
    with open(spiece_path, "rb") as f:
        proto = f.read()
    return keras_hub.models.T5Tokenizer(proto=proto)


def load_hf_t5_preprocessor(
    path, encoder_sequence_length=512, decoder_sequence_length=128
):
    """Build a `keras_hub.models.T5Seq2SeqLMPreprocessor` for a checkpoint.

    Args:
        path: str or path-like. A local checkpoint directory holding
            `spiece.model`, or an `hf://owner/name` handle.
        encoder_sequence_length: int. Length of the packed encoder inputs.
        decoder_sequence_length: int. Length of the packed decoder inputs.

    Returns:
        A `keras_hub.models.T5Seq2SeqLMPreprocessor` using the checkpoint's
        tokenizer.

    Example:
    ```python
    from keras_prompt.convert import load_hf_t5_preprocessor

    # Needs network access; a local checkpoint directory works the same way.
    preprocessor = load_hf_t5_preprocessor(
        "hf://google/t5-base-lm-adapt",
        encoder_sequence_length=64,
        decoder_sequence_length=16,
    )
    x, y, sample_weight = preprocessor(
        {"encoder_text": ["sst2 sentence: great"], "decoder_text": ["positive"]}
    )
    ```
    """
    tokenizer = load_hf_t5_tokenizer(path)
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer=tokenizer,
        encoder_sequence_length=encoder_sequence_length,
        decoder_sequence_length=decoder_sequence_length,
    )


def _atomic_save_safetensors(filename, tensors):
    from safetensors.numpy import save

    # transformers refuses safetensors files without this metadata.
    atomic_write_bytes(filename, save(tensors, metadata={"format": "pt"}))


def _tokenizer_proto_bytes(tokenizer_proto):
    if isinstance(tokenizer_proto, bytes):
        return tokenizer_proto
    if isinstance(tokenizer_proto, (str, os.PathLike)):
        with open(tokenizer_proto, "rb") as f:
            return f.read()
    proto = getattr(tokenizer_proto, "proto", None)
    if isinstance(proto, bytes):
        return proto
    raise ValueError(
        "`tokenizer_proto` must be SentencePiece model bytes, a path to a "
        "`.model` file, or a keras-hub SentencePiece tokenizer. Received: "
        f"{type(tokenizer_proto).__name__}"
    )


def save_hf_t5_checkpoint(backbone, path, tokenizer_proto=None):
    """Save a `keras_hub.models.T5Backbone` as a Hugging Face T5 checkpoint.

    The inverse of `load_hf_t5_backbone`: writes `config.json` (for
    `T5ForConditionalGeneration`) and a single `model.safetensors`, plus
    `spiece.model` when `tokenizer_proto` is given. Each file is written to a
    temporary file in `path` and moved into place with `os.replace`, so a
    crash never leaves a half-written file. Weights keep the variables'
    dtype. Only `shared.weight` is stored for the embedding, and
    `lm_head.weight` only when the head is untied, as `transformers` does.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        path: str or path-like. The output directory, created if needed.
            Existing files of the same names are replaced.
        tokenizer_proto: optional SentencePiece model, as bytes, a path to a
            `.model` file, or a keras-hub tokenizer with a `proto`. Written as
            `spiece.model`.

    Example:
    ```python
    import os
    import tempfile
    import keras_hub
    from keras_prompt.convert import save_hf_t5_checkpoint

    # A gated feed-forward (the default) and an untied output head.
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, activation="gelu", tie_embedding_weights=False,
    )
    path = tempfile.mkdtemp()
    save_hf_t5_checkpoint(backbone, path)
    sorted(os.listdir(path))  # ["config.json", "model.safetensors"]
    ```
    """
    if not isinstance(backbone, keras_hub.models.T5Backbone):
        raise ValueError(
            "`backbone` must be a keras_hub.models.T5Backbone. Received: "
            f"{type(backbone).__name__}"
        )
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    entries = _weight_map(backbone)
    tensors = {}
    for name, variable, transpose in entries:
        value = keras.ops.convert_to_numpy(variable)
        if transpose:
            value = value.T
        tensors[name] = np.ascontiguousarray(value)

    num_heads = int(backbone.num_heads)
    key_value_dim = backbone.key_value_dim or (backbone.hidden_dim // num_heads)
    weight_dtype = keras.backend.standardize_dtype(
        backbone.token_embedding.embeddings.dtype
    )
    config = {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": int(backbone.vocabulary_size),
        "d_model": int(backbone.hidden_dim),
        "d_kv": int(key_value_dim),
        "d_ff": int(backbone.intermediate_dim),
        "num_layers": int(backbone.num_layers),
        "num_decoder_layers": int(backbone.num_layers),
        "num_heads": num_heads,
        "relative_attention_num_buckets": SUPPORTED_NUM_BUCKETS,
        "relative_attention_max_distance": SUPPORTED_MAX_DISTANCE,
        "dropout_rate": float(backbone.dropout),
        "layer_norm_epsilon": float(backbone.layer_norm_epsilon),
        "initializer_factor": 1.0,
        "feed_forward_proj": _feed_forward_proj_from_backbone(backbone),
        "tie_word_embeddings": bool(backbone.tie_embedding_weights),
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "torch_dtype": weight_dtype,
    }

    _atomic_save_safetensors(os.path.join(path, SAFETENSORS_FILE), tensors)
    config_bytes = (
        json.dumps(config, indent=2, sort_keys=True) + "\n"
    ).encode()
    atomic_write_bytes(os.path.join(path, CONFIG_FILE), config_bytes)
    if tokenizer_proto is not None:
        atomic_write_bytes(
            os.path.join(path, SPIECE_FILE),
            _tokenizer_proto_bytes(tokenizer_proto),
        )
