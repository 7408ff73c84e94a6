"""Decoder-only adapters: every family through the reference test.

With right padding the prompt is the first `P` positions; with left
padding it sits after the pads, right before the first real token. The
reference inputs insert the prompt's tokens at exactly that place (and
ones in the mask), so every output position must match the plain backbone
bit for bit (up to `atol`).
"""

import keras
import keras_hub
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import initializers
from keras_prompt.adapters import get_adapter
from keras_prompt.adapters import supported_families
from tests.test_case import NamedOutputs as Named
from tests.test_case import TestCase
from tests.test_case import insert_before_first_token
from tests.test_case import padded_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

PROMPT_TOKENS = [5, 9, 13]


def tiny_gpt2(max_sequence_length=16):
    return tiny_backbone("gpt2", max_sequence_length=max_sequence_length)


# The registered families (with `tiny_backbone`'s sliding windows of 3
# positions) and two variants. The reference test of the registered
# families themselves runs in tests/test_families.py.
FAMILIES = {
    "gpt2": tiny_gpt2,
    "gemma": lambda: tiny_backbone("gemma"),
    "gemma2": lambda: tiny_backbone(
        "gemma",
        query_head_dim_normalize=False,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        attention_logit_soft_cap=50.0,
        final_logit_soft_cap=30.0,
        use_sliding_window_attention=True,
        sliding_window_size=3,
    ),
    "gemma3": lambda: tiny_backbone("gemma3"),
    "llama": lambda: tiny_backbone("llama"),
    "llama3": lambda: tiny_backbone(
        "llama", backbone_class=keras_hub.models.Llama3Backbone
    ),
    "mistral": lambda: tiny_backbone("mistral"),
    "qwen": lambda: tiny_backbone("qwen"),
    "qwen3": lambda: tiny_backbone("qwen3"),
}
EXPECTED_FAMILY = {
    "gpt2": "gpt2",
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma3",
    "llama": "llama",
    "llama3": "llama",
    "mistral": "mistral",
    "qwen": "qwen",
    "qwen3": "qwen3",
}
# Variants that are not a registered family of their own.
VARIANTS = ["gemma2", "llama3"]


@pytest.fixture(scope="module")
def backbones():
    keras_prompt.set_random_seed(0)
    return {name: make() for name, make in FAMILIES.items()}


def embeddings_of(backbone, token_ids):
    table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    return table[np.asarray(token_ids)]


class TestDecoderAdapters(TestCase):
    @pytest.mark.parametrize("side", ["right", "left"])
    @pytest.mark.parametrize("name", VARIANTS)
    def test_reference_prompt_equals_inserted_tokens(
        self, backbones, name, side
    ):
        backbone = backbones[name]
        wrapped = FrozenBackbone(backbone, prompt_length=len(PROMPT_TOKENS))
        assert wrapped.family == EXPECTED_FAMILY[name]
        assert wrapped.adapter.kind == "causal"
        self.run_prompt_reference_test(
            Named(backbone),
            Named(wrapped),
            padded_inputs(side),
            PROMPT_TOKENS,
            insert_before_first_token(PROMPT_TOKENS),
            {"sequence_output": lambda x: x},
        )

    def test_left_padding_puts_prompt_after_the_pads(self, backbones):
        backbone = backbones["llama"]
        wrapped = FrozenBackbone(backbone, prompt_length=3)
        wrapped.assign_prompts(embeddings_of(backbone, PROMPT_TOKENS))
        inputs = padded_inputs("left")
        actual = to_numpy(wrapped(inputs))
        # Prepending before the pads would leave a gap between the prompt
        # and the text: rotary positions then differ from the right-padded
        # case. That is not what the adapter does.
        batch = len(inputs["token_ids"])
        before_pads = {
            "token_ids": np.concatenate(
                [np.tile(PROMPT_TOKENS, (batch, 1)), inputs["token_ids"]], 1
            ).astype("int32"),
            "padding_mask": np.concatenate(
                [np.ones((batch, 3), "int32"), inputs["padding_mask"]], 1
            ),
        }
        naive = to_numpy(backbone(before_pads))
        assert not np.allclose(actual[0, -4:], naive[0, -4:], atol=1e-4)
        # The text's outputs are those of the right-padded row.
        right = to_numpy(wrapped(padded_inputs("right")))
        self.assertAllClose(actual[0, -7:], right[0, :7], atol=1e-5)
        # `remove_prompt` gives back the token positions.
        tokens_only = to_numpy(
            wrapped.adapter.remove_prompt(actual, inputs["padding_mask"])
        )
        assert tokens_only.shape == (2, 7, 16)
        self.assertAllClose(tokens_only[0, 3:], right[0, 3:7])

    def test_gemma_prompt_is_stored_before_the_embedding_scale(self, backbones):
        backbone = backbones["gemma"]
        wrapped = FrozenBackbone(
            backbone,
            prompt_length=3,
            initializer=initializers.FromTokens(token_ids=PROMPT_TOKENS),
        )
        # The prompt holds the raw (unscaled) table rows...
        self.assertAllEqual(
            wrapped.prompt_values(), embeddings_of(backbone, PROMPT_TOKENS)
        )
        # ... and behaves exactly like the tokens, so it is scaled by
        # sqrt(hidden_dim) inside, like them.
        inputs = padded_inputs("right")
        reference = backbone(insert_before_first_token(PROMPT_TOKENS)(inputs))
        self.assertAllClose(wrapped(inputs), reference, atol=1e-5)
        # Storing the scaled rows would scale twice.
        wrapped.assign_prompts(
            embeddings_of(backbone, PROMPT_TOKENS) * np.sqrt(16.0)
        )
        assert not np.allclose(
            to_numpy(wrapped(inputs)), to_numpy(reference), atol=1e-3
        )

    def test_prompt_changes_outputs_and_only_prompt_trains(self, backbones):
        backbone = backbones["mistral"]
        wrapped = FrozenBackbone(backbone, prompt_length=2)
        assert wrapped.trainable_weights == [
            wrapped.prompt_embedding.embeddings
        ]
        inputs = padded_inputs("right")
        plain = to_numpy(backbone(inputs))
        prompted = to_numpy(wrapped(inputs))[:, 2:]
        assert not np.allclose(plain[0, :4], prompted[0, :4], atol=1e-3)

    def test_bank(self, backbones):
        backbone = backbones["gpt2"]
        wrapped = FrozenBackbone(backbone, prompt_length=3, num_prompts=2)
        bank = wrapped.prompt_values()
        bank[1] = embeddings_of(backbone, PROMPT_TOKENS)
        wrapped.assign_prompts(bank)
        inputs = padded_inputs("left")
        out = to_numpy(
            wrapped(dict(inputs, prompt_ids=np.array([0, 1], "int32")))
        )
        reference = to_numpy(
            backbone(insert_before_first_token(PROMPT_TOKENS)(inputs))
        )
        self.assertAllClose(out[1], reference[1], atol=1e-5)
        assert not np.allclose(out[0], reference[0], atol=1e-3)

    @pytest.mark.parametrize("name", ["gpt2", "gemma", "gemma3", "qwen3"])
    def test_cached_passes_equal_the_full_forward_pass(self, backbones, name):
        backbone = backbones[name]
        wrapped = FrozenBackbone(backbone, prompt_length=3)
        adapter = wrapped.adapter
        token_ids = np.array([[3, 4, 6, 7, 8, 9], [8, 9, 10, 11, 12, 2]])
        token_ids = token_ids.astype("int32")
        full = adapter.logits(
            adapter.remove_prompt(
                wrapped(
                    {
                        "token_ids": token_ids,
                        "padding_mask": np.ones_like(token_ids),
                    }
                ),
                np.ones_like(token_ids),
            )
        )
        # Prefill the first four tokens (right padded), then two steps.
        prefill_ids = token_ids.copy()
        prefill_ids[:, 4:] = 0
        mask = np.zeros_like(token_ids, dtype="bool")
        mask[:, :4] = True
        cache = adapter.init_cache(2, 3 + 6, "float32")
        logits, hidden, cache = adapter.call_with_cache(
            prefill_ids,
            cache,
            0,
            prompt=wrapped.prompt_embedding,
            padding_mask=mask,
        )
        assert tuple(hidden.shape) == (2, 9, 16)
        steps = [keras.ops.convert_to_numpy(logits)[:, 3 + 3]]
        for index in (4, 5):
            logits, _, cache = adapter.call_with_cache(
                token_ids[:, index : index + 1], cache, 3 + index
            )
            steps.append(keras.ops.convert_to_numpy(logits)[:, 0])
        self.assertAllClose(np.stack(steps, 1), to_numpy(full)[:, 3:], 1e-4)

    def test_gpt2_prompt_plus_sequence_over_the_limit(self):
        gpt2 = tiny_gpt2(max_sequence_length=16)
        wrapped = FrozenBackbone(gpt2, prompt_length=4)
        adapter = wrapped.adapter
        assert adapter.max_sequence_length() == 16
        adapter.check_sequence_length(12, 4)
        with pytest.raises(ValueError, match=r"prompt_length \(4\) \+ seq"):
            adapter.check_sequence_length(13, 4)
        too_long = {
            "token_ids": np.ones((1, 13), "int32"),
            "padding_mask": np.ones((1, 13), "int32"),
        }
        with pytest.raises(ValueError, match=r"= 17 exceeds the 16 pos"):
            wrapped(too_long)
        fits = {k: v[:, :12] for k, v in too_long.items()}
        assert tuple(wrapped(fits).shape) == (1, 16, 16)

    def test_rotary_families_have_no_position_limit(self, backbones):
        for name in ("llama", "gemma", "qwen"):
            adapter = get_adapter(backbones[name])
            assert adapter.max_sequence_length() is None
            adapter.check_sequence_length(10**6, 100)

    def test_gemma3_must_be_text_only_and_causal(self):
        embedder = tiny_backbone(
            "gemma3",
            use_sliding_window_attention=False,
            use_bidirectional_attention=True,
        )
        with pytest.raises(ValueError, match="use_bidirectional_attention"):
            FrozenBackbone(embedder, prompt_length=2)

    def test_unsupported_family_lists_the_families(self):
        families = supported_families()
        for family in EXPECTED_FAMILY.values():
            assert family in families
        other = keras_hub.models.OPTBackbone(
            vocabulary_size=20,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=16,
        )
        with pytest.raises(
            ValueError, match="Supported backbone families:.*gpt2.*OPTBack"
        ):
            FrozenBackbone(other, prompt_length=2)

    def test_config_and_keras_saving(self, backbones, tmp_path):
        wrapped = FrozenBackbone(backbones["gemma3"], prompt_length=3)
        revived = self.run_serialization_test(wrapped)
        assert revived.family == "gemma3"
        restored = self.run_model_saving_test(
            wrapped, padded_inputs("left"), tmp_path
        )
        self.assertAllClose(restored.prompt_values(), wrapped.prompt_values())

    def test_export(self, backbones, tmp_path):
        wrapped = FrozenBackbone(backbones["gpt2"], prompt_length=3)
        self.run_export_test(wrapped, padded_inputs("left"), tmp_path)


@pytest.mark.parametrize(
    "adapter",
    [
        "gpt2.GPT2Adapter",
        "gemma.GemmaAdapter",
        "gemma.Gemma3Adapter",
        "llama.LlamaAdapter",
        "llama.MistralAdapter",
        "llama.QwenAdapter",
        "llama.Qwen3Adapter",
    ],
)
def test_docstring_example_runs(adapter):
    import importlib
    import re
    import textwrap

    module, name = adapter.split(".")
    cls = getattr(
        importlib.import_module(f"keras_prompt.adapters.{module}"), name
    )
    (example,) = re.findall(r"```python\n(.*?)```", cls.__doc__, re.DOTALL)
    exec(textwrap.dedent(example), {})
