"""Tests for the Hugging Face T5 <-> keras-hub T5Backbone converter.

The cross-checks against `transformers` run the PyTorch model in a
subprocess: importing `transformers`' torch stack (it pulls in `triton`) in a
process that already loaded TensorFlow segfaults, so this test process never
imports `transformers`.
"""

import functools
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.utils.keras_utils import gelu_approximate
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.numpy import save_file

from keras_prompt.convert import checkpoint_files
from keras_prompt.convert import hf_t5_config
from keras_prompt.convert import is_hf_t5_checkpoint
from keras_prompt.convert import load_hf_t5_backbone
from keras_prompt.convert import load_hf_t5_preprocessor
from keras_prompt.convert import load_hf_t5_tokenizer
from keras_prompt.convert import save_hf_t5_checkpoint

VOCAB = 64
NUM_LAYERS = 2
NUM_HEADS = 2
HIDDEN = 16
FFN = 32

# name -> (activation, use_gated_activation, tie_embedding_weights)
VARIANTS = {
    "relu_tied": ("relu", False, True),
    "gated_gelu_untied": (gelu_approximate, True, False),
    "gated_exact_gelu_untied": ("gelu", True, False),
    "gated_silu_tied": ("silu", True, True),
}


@functools.lru_cache(maxsize=None)
def make_backbone(variant="gated_gelu_untied", seed=0):
    """A random tiny backbone. Cached (building one takes seconds): callers
    must not modify it."""
    activation, gated, tie = VARIANTS[variant]
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=VOCAB,
        num_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        hidden_dim=HIDDEN,
        intermediate_dim=FFN,
        dropout=0.0,
        activation=activation,
        use_gated_activation=gated,
        tie_embedding_weights=tie,
    )
    # Randomise every variable, layer norm scales included, so a swapped or
    # untransposed tensor cannot go unnoticed.
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        shape = tuple(variable.shape)
        if len(shape) == 1:
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        else:
            value = 0.5 * rng.standard_normal(shape)
        variable.assign(value.astype("float32"))
    return backbone


def make_inputs(seed=1):
    rng = np.random.default_rng(seed)
    encoder_mask = np.ones((2, 7), "int32")
    encoder_mask[1, 4:] = 0
    decoder_mask = np.ones((2, 5), "int32")
    decoder_mask[1, 3:] = 0
    return {
        "encoder_token_ids": rng.integers(3, VOCAB, (2, 7)).astype("int32"),
        "encoder_padding_mask": encoder_mask,
        "decoder_token_ids": rng.integers(3, VOCAB, (2, 5)).astype("int32"),
        "decoder_padding_mask": decoder_mask,
    }


def keras_outputs(backbone, inputs):
    """Encoder output and T5Seq2SeqLM logits, as numpy."""
    outputs = backbone(inputs)
    lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    return {
        "encoder": keras.ops.convert_to_numpy(
            outputs["encoder_sequence_output"]
        ),
        "decoder": keras.ops.convert_to_numpy(
            outputs["decoder_sequence_output"]
        ),
        "logits": keras.ops.convert_to_numpy(lm(inputs)),
    }


@functools.lru_cache(maxsize=None)
def reference_outputs(variant):
    """`keras_outputs` of `make_backbone(variant)` on `make_inputs()`."""
    return keras_outputs(make_backbone(variant), make_inputs())


def assert_same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        # Auto-numbered layer names (`t5_layer_norm_7`) differ per model.
        assert x.shape == y.shape
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)
        )


def rewrite_tensors(path, edit):
    filename = os.path.join(path, "model.safetensors")
    tensors = load_file(filename)
    edit(tensors)
    save_file(tensors, filename, metadata={"format": "pt"})


def rewrite_config(path, edit):
    filename = os.path.join(path, "config.json")
    with open(filename) as f:
        config = json.load(f)
    edit(config)
    with open(filename, "w") as f:
        json.dump(config, f)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved gated-gelu untied checkpoint and the backbone it came from."""
    backbone = make_backbone("gated_gelu_untied")
    path = str(tmp_path_factory.mktemp("saved"))
    save_hf_t5_checkpoint(backbone, path)
    return backbone, path


@pytest.fixture
def saved_copy(saved, tmp_path):
    """A throwaway copy of `saved` that a test may corrupt."""
    _, path = saved
    for name in os.listdir(path):
        with open(os.path.join(path, name), "rb") as src:
            data = src.read()
        with open(tmp_path / name, "wb") as dst:
            dst.write(data)
    return str(tmp_path)


# ---------------------------------------------------------------------------
# Round trip keras-hub -> HF layout -> keras-hub.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_round_trip(variant, tmp_path):
    backbone = make_backbone(variant)
    save_hf_t5_checkpoint(backbone, tmp_path)
    assert is_hf_t5_checkpoint(tmp_path)
    restored = load_hf_t5_backbone(tmp_path)

    assert restored.tie_embedding_weights == backbone.tie_embedding_weights
    assert restored.use_gated_activation == backbone.use_gated_activation
    assert keras.activations.serialize(
        restored.activation
    ) == keras.activations.serialize(backbone.activation)
    assert_same_weights(backbone, restored)

    expected = reference_outputs(variant)
    actual = keras_outputs(restored, make_inputs())
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-5)
    # No stray temporary files are left behind.
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


def test_saved_layout_matches_hf_names(saved):
    backbone, path = saved
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    assert config["model_type"] == "t5"
    assert config["feed_forward_proj"] == "gated-gelu"
    assert config["tie_word_embeddings"] is False
    assert (config["d_model"], config["d_kv"], config["d_ff"]) == (16, 8, 32)
    with safe_open(os.path.join(path, "model.safetensors"), "np") as f:
        names = set(f.keys())
        q = f.get_tensor("encoder.block.1.layer.0.SelfAttention.q.weight")
        head = f.get_tensor("lm_head.weight")
    assert "shared.weight" in names
    assert "decoder.block.1.layer.1.EncDecAttention.o.weight" in names
    assert "decoder.block.0.layer.2.DenseReluDense.wi_1.weight" in names
    assert (
        "encoder.block.1.layer.0.SelfAttention.relative_attention_bias"
        + (".weight")
        not in names
    )
    assert len(names) == len(backbone.weights)
    # torch Linear weights are (out, in): the transpose of keras kernels.
    layer = backbone.encoder_transformer_layers[1].self_attention
    np.testing.assert_array_equal(
        q, keras.ops.convert_to_numpy(layer.query_projector.kernel).T
    )
    np.testing.assert_array_equal(
        head,
        keras.ops.convert_to_numpy(
            backbone.token_embedding.reverse_embeddings
        ).T,
    )


def test_activation_survives_keras_serialization(saved):
    _, path = saved
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    activation, gated = hf_t5_config.activation_from_feed_forward_proj(
        config["feed_forward_proj"]
    )
    assert gated
    serialized = keras.activations.serialize(activation)
    assert serialized["config"] == "keras_hub>gelu_approximate"
    assert keras.activations.deserialize(serialized) is gelu_approximate


# ---------------------------------------------------------------------------
# Sharded and bf16 checkpoints.
# ---------------------------------------------------------------------------


def test_sharded_checkpoint(saved, saved_copy):
    backbone, _ = saved
    path = saved_copy
    tensors = load_file(os.path.join(path, "model.safetensors"))
    os.remove(os.path.join(path, "model.safetensors"))
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    weight_map = {}
    for filename, shard_names in shards.items():
        save_file(
            {n: tensors[n] for n in shard_names},
            os.path.join(path, filename),
            metadata={"format": "pt"},
        )
        weight_map.update({n: filename for n in shard_names})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)

    assert is_hf_t5_checkpoint(path)
    assert_same_weights(backbone, load_hf_t5_backbone(path))


def test_sharded_checkpoint_missing_shard_raises(saved_copy):
    path = saved_copy
    os.remove(os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"shared.weight": "nope.safetensors"}}, f)
    with pytest.raises(ValueError, match="nope.safetensors"):
        load_hf_t5_backbone(path)


def test_bfloat16_checkpoint_and_dtype(saved, saved_copy):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    backbone, _ = saved
    path = saved_copy
    rewrite_tensors(
        path,
        lambda t: t.update(
            {k: v.astype(ml_dtypes.bfloat16) for k, v in t.items()}
        ),
    )
    restored = load_hf_t5_backbone(path, dtype="bfloat16")
    for x, y in zip(backbone.weights, restored.weights):
        assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
        rounded = keras.ops.convert_to_numpy(x).astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), rounded)


def test_raw_safetensors_reader_matches_safe_open(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    tensors = {
        "a": np.arange(6, dtype="float32").reshape(2, 3),
        "b": np.linspace(-2, 2, 8).astype(ml_dtypes.bfloat16).reshape(4, 2),
    }
    filename = str(tmp_path / "x.safetensors")
    save_file(tensors, filename)
    for name, value in tensors.items():
        raw = checkpoint_files.read_safetensors_raw(filename, name)
        assert raw.dtype == value.dtype
        np.testing.assert_array_equal(raw, value)


# ---------------------------------------------------------------------------
# Validation errors.
# ---------------------------------------------------------------------------


def test_missing_tensor_raises(saved_copy):
    name = "decoder.block.1.layer.1.EncDecAttention.k.weight"
    rewrite_tensors(saved_copy, lambda t: t.pop(name))
    with pytest.raises(ValueError, match=f"Missing tensors: {name}"):
        load_hf_t5_backbone(saved_copy)


def test_missing_lm_head_when_untied_uses_embedding(saved_copy):
    # transformers >= 5 writes no `lm_head.weight` when it equals the
    # embedding, marking the unscaled head with `scale_decoder_outputs`.
    rewrite_tensors(saved_copy, lambda t: t.pop("lm_head.weight"))
    rewrite_config(
        saved_copy,
        lambda c: c.update(
            tie_word_embeddings=True, scale_decoder_outputs=False
        ),
    )
    backbone = load_hf_t5_backbone(saved_copy)
    assert not backbone.tie_embedding_weights
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(backbone.token_embedding.reverse_embeddings),
        keras.ops.convert_to_numpy(backbone.token_embedding.embeddings).T,
    )


def test_unexpected_tensor_raises(saved_copy):
    name = "encoder.block.0.layer.0.SelfAttention.bogus.weight"
    rewrite_tensors(
        saved_copy, lambda t: t.update({name: np.zeros((2, 2), "float32")})
    )
    with pytest.raises(ValueError, match=f"Unexpected tensors: {name}"):
        load_hf_t5_backbone(saved_copy)


def test_aliases_and_ignored_tensors_are_accepted(saved, saved_copy):
    backbone, _ = saved

    def add(tensors):
        tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"]
        tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"]
        unused = "decoder.block.0.layer.1.EncDecAttention"
        tensors[f"{unused}.relative_attention_bias.weight"] = np.ones(
            (32, NUM_HEADS), "float32"
        )

    rewrite_tensors(saved_copy, add)
    assert_same_weights(backbone, load_hf_t5_backbone(saved_copy))


def test_differing_alias_raises(saved_copy):
    def add(tensors):
        tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"] + 1

    rewrite_tensors(saved_copy, add)
    with pytest.raises(ValueError, match="decoder.embed_tokens.weight"):
        load_hf_t5_backbone(saved_copy)


def test_scaled_head_with_distinct_lm_head_raises(saved_copy):
    rewrite_config(saved_copy, lambda c: c.update(tie_word_embeddings=True))
    with pytest.raises(ValueError, match="lm_head.weight"):
        load_hf_t5_backbone(saved_copy)


def test_shape_mismatch_raises(saved_copy):
    rewrite_config(saved_copy, lambda c: c.update(d_ff=24))
    with pytest.raises(ValueError, match="has shape"):
        load_hf_t5_backbone(saved_copy)


@pytest.mark.parametrize(
    "update, match",
    [
        ({"num_decoder_layers": 3}, "num_decoder_layers=3"),
        ({"relative_attention_num_buckets": 64}, "relative_attention"),
        ({"relative_attention_max_distance": 256}, "relative_attention"),
        ({"feed_forward_proj": "gated-tanh"}, "Unsupported T5 activation"),
        ({"feed_forward_proj": "relu-gated"}, "feed_forward_proj"),
        ({"model_type": "bert", "architectures": ["Bert"]}, "Not a T5"),
    ],
)
def test_unsupported_config_raises(saved_copy, update, match):
    rewrite_config(saved_copy, lambda c: c.update(update))
    with pytest.raises(ValueError, match=match):
        load_hf_t5_backbone(saved_copy)


def test_missing_files_raise(tmp_path):
    with pytest.raises(ValueError, match="No directory"):
        load_hf_t5_backbone(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="config.json"):
        load_hf_t5_backbone(tmp_path)
    rewrite_dir = tmp_path / "config_only"
    rewrite_dir.mkdir()
    (rewrite_dir / "config.json").write_text(
        json.dumps({"model_type": "t5", "vocab_size": 8, "d_model": 4,
                    "d_kv": 2, "d_ff": 8, "num_layers": 1, "num_heads": 2})
    )  # fmt: skip
    with pytest.raises(ValueError, match="No weights"):
        load_hf_t5_backbone(rewrite_dir)


@pytest.mark.parametrize(
    "feed_forward_proj, activation, gated",
    [
        ("relu", "relu", False),
        ("gated-gelu", gelu_approximate, True),
        ("gated-gelu_new", gelu_approximate, True),
        ("gelu", "gelu", False),
        ("gated-gelu_python", "gelu", True),
        ("gated-silu", "silu", True),
        ("gated-relu", "relu", True),
    ],
)
def test_activation_mapping(feed_forward_proj, activation, gated):
    assert hf_t5_config.activation_from_feed_forward_proj(
        feed_forward_proj
    ) == (
        activation,
        gated,
    )


def test_save_rejects_non_t5(tmp_path):
    with pytest.raises(ValueError, match="T5Backbone"):
        save_hf_t5_checkpoint(keras.Sequential(), tmp_path)


# ---------------------------------------------------------------------------
# Checkpoint detection and `hf://` handles.
# ---------------------------------------------------------------------------


def test_is_hf_t5_checkpoint(saved, tmp_path):
    _, path = saved
    assert is_hf_t5_checkpoint(path)
    assert not is_hf_t5_checkpoint(tmp_path)
    assert not is_hf_t5_checkpoint(os.path.join(path, "config.json"))
    assert not is_hf_t5_checkpoint("hf://google/t5-base-lm-adapt")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert not is_hf_t5_checkpoint(tmp_path)  # No weights.
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    assert is_hf_t5_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["T5EncoderModel"]})
    )
    assert is_hf_t5_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart"}))
    assert not is_hf_t5_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    assert not is_hf_t5_checkpoint(tmp_path)


def test_hf_handle_download_failure_names_handle(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def fail(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(ValueError, match="hf://google/t5-small-lm-adapt"):
        load_hf_t5_backbone("hf://google/t5-small-lm-adapt")
    with pytest.raises(ValueError, match="hf://owner/name"):
        load_hf_t5_backbone("hf://not-a-repo")


def test_hf_handle_resolves_through_snapshot_download(saved, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    backbone, path = saved
    calls = []

    def fake_snapshot_download(repo_id, revision=None, **kwargs):
        calls.append((repo_id, revision))
        return path

    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", fake_snapshot_download
    )
    restored = load_hf_t5_backbone("hf://google/t5-small-lm-adapt@main")
    assert calls == [("google/t5-small-lm-adapt", "main")]
    assert_same_weights(backbone, restored)


# ---------------------------------------------------------------------------
# Tokenizer and preprocessor.
# ---------------------------------------------------------------------------

WORDS = (
    "the quick brown fox jumps over lazy dog and but prompt tuning frozen "
    "model soft great movie bad film positive negative review was very not "
    "good plot fun"
).split()


@pytest.fixture(scope="module")
def spiece_proto():
    sentencepiece = pytest.importorskip("sentencepiece")
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS, size=8)) for _ in range(200)] + [
        " ".join(WORDS)
    ]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=40,
        model_type="word",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def test_tokenizer(saved, spiece_proto, tmp_path):
    import sentencepiece

    backbone, _ = saved
    save_hf_t5_checkpoint(backbone, tmp_path, tokenizer_proto=spiece_proto)
    assert (tmp_path / "spiece.model").read_bytes() == spiece_proto

    tokenizer = load_hf_t5_tokenizer(tmp_path)
    assert isinstance(tokenizer, keras_hub.models.T5Tokenizer)
    assert tokenizer.pad_token_id == 0
    assert tokenizer.end_token_id == 1
    text = "the quick brown fox"
    ids = keras.ops.convert_to_numpy(tokenizer(text)).tolist()
    reference = sentencepiece.SentencePieceProcessor(model_proto=spiece_proto)
    assert ids == reference.encode(text)
    assert len(ids) == 4 and 2 not in ids  # All known words, no <unk>.
    assert tokenizer.detokenize(ids) == text


def test_tokenizer_proto_from_tokenizer_and_path(saved, spiece_proto, tmp_path):
    backbone, _ = saved
    spm_path = tmp_path / "source.model"
    spm_path.write_bytes(spiece_proto)
    tokenizer = keras_hub.models.T5Tokenizer(proto=spiece_proto)
    for i, proto in enumerate([str(spm_path), tokenizer]):
        out = tmp_path / f"ckpt{i}"
        save_hf_t5_checkpoint(backbone, out, tokenizer_proto=proto)
        assert (out / "spiece.model").read_bytes() == spiece_proto
    with pytest.raises(ValueError, match="tokenizer_proto"):
        save_hf_t5_checkpoint(backbone, tmp_path / "bad", tokenizer_proto=3)


def test_missing_spiece_raises(saved):
    _, path = saved
    with pytest.raises(ValueError, match="spiece.model"):
        load_hf_t5_tokenizer(path)


def test_preprocessor(saved, spiece_proto, tmp_path):
    backbone, _ = saved
    save_hf_t5_checkpoint(backbone, tmp_path, tokenizer_proto=spiece_proto)
    preprocessor = load_hf_t5_preprocessor(
        tmp_path, encoder_sequence_length=8, decoder_sequence_length=4
    )
    assert isinstance(preprocessor, keras_hub.models.T5Seq2SeqLMPreprocessor)
    x, y, sample_weight = preprocessor(
        {
            "encoder_text": ["the quick brown fox"],
            "decoder_text": ["great movie"],
        }
    )
    encoder_ids = keras.ops.convert_to_numpy(x["encoder_token_ids"])
    assert encoder_ids.shape == (1, 8)
    assert encoder_ids[0, 4] == 1  # </s> after the four words.
    assert encoder_ids[0, 5:].tolist() == [0, 0, 0]
    assert keras.ops.convert_to_numpy(x["decoder_token_ids"]).shape == (1, 4)


# ---------------------------------------------------------------------------
# Cross-checks against Hugging Face `transformers` (in a subprocess).
# ---------------------------------------------------------------------------

HF_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys

    import numpy as np

    try:
        import torch
        from transformers import T5Config
        from transformers import T5ForConditionalGeneration
    except Exception as e:  # torch or transformers broken / missing.
        print(f"{type(e).__name__}: {e}")
        sys.exit(3)

    torch.manual_seed(0)
    job = json.load(open(sys.argv[1]))
    inputs = dict(np.load(job["inputs"]))


    def run(path):
        model = T5ForConditionalGeneration.from_pretrained(path).eval()
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor(inputs["encoder_token_ids"]).long(),
                attention_mask=torch.tensor(inputs["encoder_padding_mask"]),
                decoder_input_ids=torch.tensor(
                    inputs["decoder_token_ids"]
                ).long(),
                decoder_attention_mask=torch.tensor(
                    inputs["decoder_padding_mask"]
                ),
            )
        np.savez(
            os.path.join(path, "hf_outputs.npz"),
            encoder=out.encoder_last_hidden_state.numpy(),
            logits=out.logits.numpy(),
        )


    for path in job["keras_written"]:
        run(path)

    for path, spec in job["hf_written"].items():
        config = T5Config(**spec["config"])
        model = T5ForConditionalGeneration(config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("layer_norm.weight"):
                    param.copy_(1.0 + 0.2 * torch.randn(param.shape))
                else:
                    param.copy_(0.5 * torch.randn(param.shape))
        if spec.get("distinct_lm_head"):
            model.lm_head.weight = torch.nn.Parameter(
                0.5 * torch.randn(model.lm_head.weight.shape)
            )
        if spec.get("torch_bin"):
            os.makedirs(path, exist_ok=True)
            torch.save(
                model.state_dict(), os.path.join(path, "pytorch_model.bin")
            )
            config.save_pretrained(path)
        else:
            model.save_pretrained(path, safe_serialization=True)
        if spec.get("legacy_config"):
            # Like the configs of google/t5-*-lm-adapt on the Hub, written by
            # transformers 4.x: no `scale_decoder_outputs`.
            filename = os.path.join(path, "config.json")
            with open(filename) as f:
                saved = json.load(f)
            for key in ("scale_decoder_outputs", "dense_act_fn"):
                saved.pop(key, None)
            saved.pop("is_gated_act", None)
            saved["tie_word_embeddings"] = spec["config"].get(
                "tie_word_embeddings", True
            )
            with open(filename, "w") as f:
                json.dump(saved, f)
        run(path)
    """
)

HF_TINY = dict(
    vocab_size=VOCAB,
    d_model=HIDDEN,
    d_kv=8,
    d_ff=FFN,
    num_layers=NUM_LAYERS,
    num_heads=NUM_HEADS,
    dropout_rate=0.0,
)
HF_MODELS = {
    # T5 1.1 LM-adapted: gated-gelu, separate unscaled LM head.
    "lm_adapt_legacy_config": dict(
        config=dict(
            HF_TINY, feed_forward_proj="gated-gelu", tie_word_embeddings=False
        ),
        distinct_lm_head=True,
        legacy_config=True,
    ),
    # Same, as transformers >= 5 writes it (scale_decoder_outputs=False).
    "lm_adapt_transformers5": dict(
        config=dict(
            HF_TINY, feed_forward_proj="gated-gelu", tie_word_embeddings=False
        ),
        distinct_lm_head=True,
    ),
    # transformers >= 5, untied config but head equal to the embedding: the
    # checkpoint holds no `lm_head.weight`.
    "untied_without_lm_head": dict(
        config=dict(
            HF_TINY, feed_forward_proj="gated-gelu", tie_word_embeddings=False
        ),
    ),
    # Original T5: relu, tied and scaled head.
    "t5_v1_0": dict(config=dict(HF_TINY, feed_forward_proj="relu")),
    # PyTorch pickle with every alias (`*.embed_tokens.weight`) present.
    "torch_bin_gated_silu": dict(
        config=dict(
            HF_TINY, feed_forward_proj="gated-silu", tie_word_embeddings=False
        ),
        distinct_lm_head=True,
        legacy_config=True,
        torch_bin=True,
    ),
}


@pytest.fixture(scope="module")
def hf_results(tmp_path_factory):
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"`{module}` is not installed; cannot cross-check.")
    root = tmp_path_factory.mktemp("hf")
    inputs = make_inputs()
    np.savez(root / "inputs.npz", **inputs)

    keras_written = {}
    for variant in sorted(VARIANTS):
        path = str(root / f"keras_{variant}")
        save_hf_t5_checkpoint(make_backbone(variant), path)
        keras_written[variant] = (path, reference_outputs(variant))
    hf_written = {name: str(root / f"hf_{name}") for name in HF_MODELS}

    job = {
        "inputs": str(root / "inputs.npz"),
        "keras_written": [path for path, _ in keras_written.values()],
        "hf_written": {hf_written[k]: spec for k, spec in HF_MODELS.items()},
    }
    (root / "job.json").write_text(json.dumps(job))
    (root / "hf_script.py").write_text(HF_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, str(root / "hf_script.py"), str(root / "job.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if result.returncode == 3:
        pytest.skip(f"transformers cannot import: {result.stdout.strip()}")
    assert result.returncode == 0, result.stderr[-4000:]
    return {
        "inputs": inputs,
        "keras_written": keras_written,
        "hf_written": hf_written,
    }


def assert_matches_hf(actual, hf_dir):
    expected = np.load(os.path.join(hf_dir, "hf_outputs.npz"))
    np.testing.assert_allclose(
        actual["encoder"], expected["encoder"], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        actual["logits"], expected["logits"], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keras_written_checkpoint_matches_transformers(hf_results, variant):
    path, outputs = hf_results["keras_written"][variant]
    assert_matches_hf(outputs, path)


@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_transformers_written_checkpoint_loads(hf_results, name):
    path = hf_results["hf_written"][name]
    assert is_hf_t5_checkpoint(path)
    backbone = load_hf_t5_backbone(path)
    spec = HF_MODELS[name]["config"]
    assert backbone.tie_embedding_weights == spec.get(
        "tie_word_embeddings", True
    )
    assert_matches_hf(keras_outputs(backbone, hf_results["inputs"]), path)
