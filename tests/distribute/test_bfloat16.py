"""Frozen weights in bfloat16, prompt and optimizer state in float32.

A keras-hub backbone built (or loaded with `from_preset`) with
`dtype="bfloat16"` stores its frozen weights in bfloat16; `FrozenBackbone`
keeps the prompt variable in float32 (policy `mixed_bfloat16`) and the
prompt's Adafactor slot is float32. The weights take half the bytes and the
outputs stay within bfloat16 rounding of the float32 model's.
"""

import keras
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptSeq2SeqLM
from keras_prompt import toy
from keras_prompt.distribute import weight_bytes

# bfloat16 keeps 8 significant bits (relative rounding 2**-8 ~ 0.4%); after
# a few layers the logits of this toy T5 differ by ~1.4% of their range.
LOGITS_RTOL = 0.03  # max |difference| / max |logit|
PROBABILITY_ATOL = 0.02


@pytest.fixture(scope="module")
def models():
    keras_prompt.set_random_seed(0)  # Before the SentencePiece tokenizer.
    preprocessor = toy.toy_t5_preprocessor()
    vocabulary = preprocessor.tokenizer.vocabulary_size()
    full = toy.toy_t5(vocabulary, hidden_dim=32)
    half = toy.toy_t5(vocabulary, hidden_dim=32, dtype="bfloat16")
    half.set_weights(full.get_weights())
    full_frozen = FrozenBackbone(full, prompt_length=4)
    half_frozen = FrozenBackbone(half, prompt_length=4)
    half_frozen.assign_prompts(full_frozen.prompt_values())
    return preprocessor, full_frozen, half_frozen


def test_prompt_variable_stays_float32(models):
    _, _, half = models
    assert half.backbone.token_embedding.embeddings.dtype == "bfloat16"
    prompt = half.prompt_embedding
    assert prompt.dtype_policy.name == "mixed_bfloat16"
    assert prompt.embeddings.dtype == "float32"
    assert prompt.compute_dtype == "bfloat16"
    assert half.trainable_weights == [prompt.embeddings]


def test_weight_bytes_halve(models):
    _, full, half = models
    full_bytes, half_bytes = weight_bytes(full), weight_bytes(half)
    assert half_bytes["frozen"] * 2 == full_bytes["frozen"]
    assert half_bytes["trainable"] == full_bytes["trainable"] == 4 * 32 * 4
    assert set(half_bytes["by_dtype"]) == {"bfloat16", "float32"}
    assert half_bytes["by_dtype"]["float32"] == half_bytes["trainable"]
    assert half_bytes["total"] < 0.51 * full_bytes["total"]


def test_outputs_close_to_float32(models):
    preprocessor, full, half = models
    inputs, targets = toy.task_pairs(np.random.default_rng(1), 32)
    x, _, _ = preprocessor({"encoder_text": inputs, "decoder_text": targets})
    full_logits = keras.ops.convert_to_numpy(
        PromptSeq2SeqLM(full, preprocessor)(x)
    )
    half_logits = keras.ops.convert_to_numpy(
        keras.ops.cast(PromptSeq2SeqLM(half, preprocessor)(x), "float32")
    )
    scale = np.abs(full_logits).max()
    assert np.abs(half_logits - full_logits).max() <= LOGITS_RTOL * scale
    probabilities = [
        keras.ops.convert_to_numpy(keras.ops.softmax(logits))
        for logits in (full_logits, half_logits)
    ]
    np.testing.assert_allclose(*probabilities, atol=PROBABILITY_ATOL)
    agree = (full_logits.argmax(-1) == half_logits.argmax(-1)).mean()
    assert agree >= 0.95


def test_training_learns_with_float32_prompt_state(models):
    preprocessor, _, half = models
    model = PromptSeq2SeqLM(half, preprocessor)
    model.compile()  # The paper's Adafactor.
    inputs, targets = toy.task_pairs(np.random.default_rng(2), 64)
    history = model.fit(inputs, targets, batch_size=16, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.05, losses
    slots = [
        v
        for v in model.optimizer.variables
        if v.name not in ("iteration", "learning_rate")
    ]
    assert slots and all(v.dtype == "float32" for v in slots)
    assert half.prompt_embedding.embeddings.dtype == "float32"
    for weight in half.backbone.weights:
        assert weight.dtype == "bfloat16"


@pytest.mark.parametrize(
    "dtype,expected",
    [
        ("float16", "mixed_float16"),
        ("float32", "float32"),
        ("mixed_bfloat16", "mixed_bfloat16"),
    ],
)
def test_prompt_policy_for_other_dtypes(dtype, expected):
    backbone = toy.toy_t5(20, hidden_dim=8, num_layers=1, dtype=dtype)
    frozen = FrozenBackbone(backbone, prompt_length=2)
    assert frozen.prompt_embedding.dtype_policy.name == expected
    assert frozen.prompt_embedding.embeddings.dtype == "float32"
