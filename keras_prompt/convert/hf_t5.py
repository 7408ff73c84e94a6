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

The config translation is `keras_prompt.convert.hf_t5_config`'s, the
tensor names and shapes `keras_prompt.convert.hf_t5_weights`'; files are
read and written by `keras_prompt.convert.checkpoint_files`. Importing
this module registers its converter (`keras_prompt.convert.registry`), so
presets holding a T5 checkpoint load through it.
"""

import json
import os

import keras
import keras_hub
import numpy as np

from keras_prompt.convert.checkpoint_files import CONFIG_FILE
from keras_prompt.convert.checkpoint_files import SAFETENSORS_FILE
from keras_prompt.convert.checkpoint_files import TensorReader
from keras_prompt.convert.checkpoint_files import has_weights
from keras_prompt.convert.checkpoint_files import is_hf_handle
from keras_prompt.convert.checkpoint_files import numpy_dtype
from keras_prompt.convert.checkpoint_files import preset_config
from keras_prompt.convert.checkpoint_files import read_config
from keras_prompt.convert.checkpoint_files import resolve_path
from keras_prompt.convert.checkpoint_files import save_safetensors
from keras_prompt.convert.hf_t5_config import SUPPORTED_MAX_DISTANCE
from keras_prompt.convert.hf_t5_config import SUPPORTED_NUM_BUCKETS
from keras_prompt.convert.hf_t5_config import backbone_kwargs_from_config
from keras_prompt.convert.hf_t5_config import feed_forward_proj_from_backbone
from keras_prompt.convert.hf_t5_config import is_t5_config
from keras_prompt.convert.hf_t5_config import scales_decoder_outputs
from keras_prompt.convert.hf_t5_weights import check_tensor_names
from keras_prompt.convert.hf_t5_weights import hf_layout
from keras_prompt.convert.hf_t5_weights import weight_map
from keras_prompt.convert.registry import Converter
from keras_prompt.convert.registry import register_converter
from keras_prompt.prompt_files import atomic_write_bytes

SPIECE_FILE = "spiece.model"
# What a `hf://` handle's download adds to the config and weights.
EXTRA_FILES = (SPIECE_FILE,)

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
    if is_hf_handle(path):
        return False
    return claims_hf_t5(path, preset_config(path))


def claims_hf_t5(preset, config):
    """Whether the T5 converter loads `preset`, whose `config.json` is
    `config` (`None` where there is none).

    An `hf://` handle is claimed when its config says `model_type: "t5"`
    (keras-hub presets on the Hub have a config.json too, without it); a
    local folder when it holds weights and its config describes a T5
    model (`is_hf_t5_checkpoint`).
    """
    if not isinstance(config, dict):
        return False
    if is_hf_handle(preset):
        return config.get("model_type") == "t5"
    return has_weights(os.fspath(preset)) and is_t5_config(config)


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
    path = resolve_path(path, EXTRA_FILES)
    config = read_config(path)
    kwargs = backbone_kwargs_from_config(config)
    tie = scales_decoder_outputs(config)

    with TensorReader(path) as reader:
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
        expected = hf_layout(kwargs, untied_head=not tie)
        allowed_extra = set(EMBEDDING_ALIASES) | set(IGNORED_TENSORS)
        if tie:
            allowed_extra.add("lm_head.weight")
        elif not has_lm_head:
            # No head stored: an unscaled head equal to the embedding
            # (transformers >= 5 drops such duplicates on save).
            expected.pop("lm_head.weight")
        if shared_name != "shared.weight":
            expected[shared_name] = expected.pop("shared.weight")
        check_tensor_names(available, expected, allowed_extra)
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
        entries = weight_map(backbone)
        if {name for name, _, _ in entries} != set(
            hf_layout(kwargs, untied_head=not tie)
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
            variable.assign(value.astype(numpy_dtype(variable.dtype)))
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
    path = resolve_path(path, EXTRA_FILES)
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
    entries = weight_map(backbone)
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
        "feed_forward_proj": feed_forward_proj_from_backbone(backbone),
        "tie_word_embeddings": bool(backbone.tie_embedding_weights),
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "torch_dtype": weight_dtype,
    }

    save_safetensors(os.path.join(path, SAFETENSORS_FILE), tensors)
    config_bytes = (
        json.dumps(config, indent=2, sort_keys=True) + "\n"
    ).encode()
    atomic_write_bytes(os.path.join(path, CONFIG_FILE), config_bytes)
    if tokenizer_proto is not None:
        atomic_write_bytes(
            os.path.join(path, SPIECE_FILE),
            _tokenizer_proto_bytes(tokenizer_proto),
        )


def _load_hf_t5_preprocessor_for(preset, preprocessor_cls, **kwargs):
    # A T5 checkpoint's preprocessor is a T5Seq2SeqLMPreprocessor, whatever
    # class the caller asked for.
    return load_hf_t5_preprocessor(preset, **kwargs)


CONVERTER = register_converter(
    Converter(
        "hf_t5",
        claims=claims_hf_t5,
        load_backbone=load_hf_t5_backbone,
        load_preprocessor=_load_hf_t5_preprocessor_for,
    )
)
