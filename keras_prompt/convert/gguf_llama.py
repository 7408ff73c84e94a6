"""Convert a llama.cpp GGUF Llama checkpoint into a Hugging Face folder.

keras-hub loads Hugging Face Llama folders (`config.json`,
`model.safetensors`, `tokenizer.json`, `tokenizer_config.json`) as a
`Llama3Backbone` and `Llama3Tokenizer`; `gguf_to_hf_folder` writes one
from a GGUF file of the `llama` architecture (Llama, SmolLM, ...) with a
GPT-2-style byte-level BPE vocabulary, reading it with the `gguf`
package's NumPy reader (no llama.cpp needed).

What the conversion undoes (GGUF name -> Hugging Face name):

- Quantized tensors (`Q4_0`, `Q4_1`, `Q8_0`, ... and `F16`) are
  dequantized to float32 with `gguf.quants.dequantize`.
- GGUF lists a tensor's dimensions innermost first; read as NumPy arrays
  they are already `(out, in)`, as torch `Linear` weights are.
- llama.cpp's converter permutes the rows of the query and key projections
  (`attn_q`, `attn_k`) from Hugging Face's rotary layout (the two halves
  of each head) to GGML's (interleaved pairs); `unpermute_rows` restores
  the Hugging Face order.
- `token_embd` -> `model.embed_tokens`; `output` (absent when the input
  and output embeddings are tied) -> `lm_head`; `blk.{i}.attn_norm`,
  `ffn_norm`, `attn_{q,k,v,output}`, `ffn_{gate,up,down}` ->
  `model.layers.{i}.input_layernorm`, `post_attention_layernorm`,
  `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`; `output_norm`
  -> `model.norm`.
"""

import json
import os

import numpy as np

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
HF_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)

# GGUF names of one decoder layer's tensors -> Hugging Face names.
LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GLOBAL_TENSORS = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# llama.cpp's token types: 3 is a control (special) token.
CONTROL_TOKEN_TYPE = 3


def permute_rows(weights, num_heads):
    """Hugging Face -> GGML rotary row order of a query/key projection.

    What llama.cpp's `convert_hf_to_gguf.py` does: within each head, the
    rows of the first and second halves (Hugging Face's `rotate_half`
    layout) become interleaved pairs. `unpermute_rows` inverts it.

    Args:
        weights: array `(num_heads * head_dim, in)` (or `(num_heads *
            head_dim,)`).
        num_heads: int, the heads of the projection (the key/value heads
            for `k_proj`).
    """
    weights = np.asarray(weights)
    rows = weights.shape[0]
    return (
        weights.reshape(num_heads, 2, rows // num_heads // 2, -1)
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def unpermute_rows(weights, num_heads):
    """GGML -> Hugging Face rotary row order; the inverse of
    `permute_rows`.

    Args:
        weights: array `(num_heads * head_dim, in)` as stored in a GGUF.
        num_heads: int, the heads of the projection.
    """
    weights = np.asarray(weights)
    rows = weights.shape[0]
    if rows % (2 * num_heads):
        raise ValueError(
            f"Cannot unpermute {rows} rows into {num_heads} heads of an even "
            f"size. Received: weights.shape={weights.shape}, "
            f"num_heads={num_heads}"
        )
    return (
        weights.reshape(num_heads, rows // num_heads // 2, 2, -1)
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


class GgufFile:
    """A GGUF file read with `gguf.GGUFReader`, and its path for messages.

    Args:
        path: str, the `.gguf` file.
    """

    def __init__(self, path):
        import gguf

        self.path = path
        self.reader = gguf.GGUFReader(path)
        self.tensors = self.reader.tensors

    def field(self, key, default=None):
        """The value of metadata `key`; `default` when it is missing (a
        `ValueError` naming the key and file when there is no default)."""
        field = self.reader.fields.get(key)
        if field is None:
            if default is not None:
                return default
            raise ValueError(
                f"The GGUF file {self.path!r} has no {key!r} metadata; it is "
                "not a complete Llama checkpoint."
            )
        return field.contents()


def _tensor_array(tensor):
    """A GGUF tensor as a float32 NumPy array in Hugging Face shape."""
    from gguf.quants import dequantize

    values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    return np.ascontiguousarray(values.reshape(shape), dtype=np.float32)


def read_config(reader):
    """The Hugging Face `config.json` of a `GgufFile` Llama's metadata."""
    architecture = reader.field("general.architecture")
    if architecture != "llama":
        raise ValueError(
            f"Only GGUF files of the 'llama' architecture convert; "
            f"{reader.path!r} holds {architecture!r}."
        )
    names = {tensor.name for tensor in reader.tensors}
    tokens = reader.field("tokenizer.ggml.tokens")

    def llama(key, default=None):
        return reader.field(f"llama.{key}", default)

    num_heads = int(llama("attention.head_count"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(llama("vocab_size", len(tokens))),
        "hidden_size": int(llama("embedding_length")),
        "intermediate_size": int(llama("feed_forward_length")),
        "num_hidden_layers": int(llama("block_count")),
        "num_attention_heads": num_heads,
        "num_key_value_heads": int(llama("attention.head_count_kv", num_heads)),
        "max_position_embeddings": int(llama("context_length", 2048)),
        "rms_norm_eps": float(llama("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(llama("rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "tie_word_embeddings": "output.weight" not in names,
        "hidden_act": "silu",
        "bos_token_id": int(reader.field("tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(reader.field("tokenizer.ggml.eos_token_id")),
        "torch_dtype": "float32",
    }


def hf_tensor_name(name):
    """The Hugging Face name of a GGUF tensor name, e.g.
    `"blk.0.attn_q.weight"` -> `"model.layers.0.self_attn.q_proj.weight"`.
    """
    stem, _, suffix = name.rpartition(".")
    if stem in GLOBAL_TENSORS:
        return f"{GLOBAL_TENSORS[stem]}.{suffix}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in LAYER_TENSORS:
        return f"model.layers.{parts[1]}.{LAYER_TENSORS[parts[2]]}.{suffix}"
    raise ValueError(f"Unknown tensor {name!r} in a GGUF Llama checkpoint.")


def read_tensors(reader, config):
    """`{Hugging Face name: float32 array}` of every tensor of a
    `GgufFile`."""
    heads = {
        "attn_q": config["num_attention_heads"],
        "attn_k": config["num_key_value_heads"],
    }
    tensors = {}
    for tensor in reader.tensors:
        values = _tensor_array(tensor)
        kind = tensor.name.split(".")[-2]
        if kind in heads:
            values = unpermute_rows(values, heads[kind])
        tensors[hf_tensor_name(tensor.name)] = values
    return tensors


def read_tokenizer(reader):
    """`(tokenizer.json, tokenizer_config.json)` dicts of a GGUF's BPE
    vocabulary: what keras-hub's Llama 3 converter reads (the vocabulary,
    the merges, the special tokens, the start and end tokens)."""
    model = reader.field("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            "Only byte-level BPE (`tokenizer.ggml.model = 'gpt2'`) GGUF "
            f"vocabularies convert; {reader.path!r} has {model!r}."
        )
    tokens = [str(token) for token in reader.field("tokenizer.ggml.tokens")]
    types = reader.field("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [str(merge) for merge in reader.field("tokenizer.ggml.merges")]
    special = [
        {"id": index, "content": token, "special": True}
        for index, (token, kind) in enumerate(zip(tokens, types))
        if kind == CONTROL_TOKEN_TYPE
    ]
    bos = tokens[int(reader.field("tokenizer.ggml.bos_token_id"))]
    eos = tokens[int(reader.field("tokenizer.ggml.eos_token_id"))]
    add_bos = bool(reader.field("tokenizer.ggml.add_bos_token", False))
    tokenizer = {
        "version": "1.0",
        "added_tokens": special,
        "model": {
            "type": "BPE",
            "vocab": {token: index for index, token in enumerate(tokens)},
            "merges": merges,
        },
    }
    tokenizer_config = {
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": add_bos,
        "model_max_length": int(reader.field("llama.context_length", 2048)),
    }
    return tokenizer, tokenizer_config


def gguf_to_hf_folder(gguf_path, folder):
    """Writes a GGUF Llama checkpoint as a Hugging Face folder.

    The folder gets `config.json`, `model.safetensors` (float32, the
    quantized tensors dequantized, query/key rows in Hugging Face order),
    `tokenizer.json` and `tokenizer_config.json`; keras-hub's
    `from_preset(folder)` loads it as a `Llama3Backbone` and
    `Llama3Tokenizer`.

    Args:
        gguf_path: str, a `.gguf` file of the `llama` architecture with a
            byte-level BPE vocabulary.
        folder: str, the folder to write (created if missing; files of
            the same names are replaced).

    Returns:
        The folder.

    Example:

    ```python
    from keras_prompt.convert.gguf_llama import gguf_to_hf_folder

    folder = gguf_to_hf_folder("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
    backbone = keras_hub.models.Backbone.from_preset(folder)
    ```
    """
    from safetensors.numpy import save_file

    if not os.path.isfile(gguf_path):
        raise FileNotFoundError(
            f"`gguf_path` is not a file. Received: gguf_path={gguf_path!r}"
        )
    reader = GgufFile(gguf_path)
    config = read_config(reader)
    tokenizer, tokenizer_config = read_tokenizer(reader)
    tensors = read_tensors(reader, config)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, WEIGHTS_FILE))
    for name, data in (
        (CONFIG_FILE, config),
        (TOKENIZER_FILE, tokenizer),
        (TOKENIZER_CONFIG_FILE, tokenizer_config),
    ):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
    return folder
