"""Late prompts (`start_layer = k > 0`): the prompt enters before layer k.

For every registered family (tiny backbones have 2 layers, so k = 1):

- the hidden states of the text below k are the plain backbone's (the
  prompt is not there yet, so nothing below k can get a gradient);
- the prompt changes the outputs (the check above can fail);
- deep late prompts hold one layer per layer from k on;
- prompt files record `start_layer`; a late prompt does not load into an
  input-prompt model;
- cached generation equals re-running the whole model per token.
"""

import functools

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptConfig
from tests.test_case import TestCase
from tests.test_case import backbone_inputs
from tests.test_case import get_kind
from tests.test_case import random_prompt
from tests.test_case import registered_families
from tests.test_case import spread_weights
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy
from tests.test_deep_prompts import cached_and_uncached

FAMILIES = registered_families()
GENERATING = [f for f in FAMILIES if get_kind(f) in ("causal", "seq2seq")]


@functools.lru_cache(maxsize=None)
def backbone_of(family):
    return spread_weights(tiny_backbone(family))


def prompted_layers(backbone):
    if get_kind_of(backbone) == "seq2seq":
        return backbone.encoder_transformer_layers
    return backbone.transformer_layers


def get_kind_of(backbone):
    return "seq2seq" if hasattr(backbone, "encoder_transformer_layers") else ""


def hidden_states_after(model, layer):
    """A model of `model`'s inputs returning the hidden states `layer`
    (a transformer layer called in `model`'s graph) outputs."""
    for node in reversed(layer._inbound_nodes):
        outputs = node.output_tensors
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        try:
            return keras.Model(model.inputs, outputs)
        except ValueError:
            continue
    raise AssertionError(f"{layer.name} is not in {model.name}'s graph")


@pytest.mark.parametrize("family", FAMILIES)
class TestLatePrompts(TestCase):
    # The JAX lane: late deep prompts (the late input prompt is their first
    # layer).
    @pytest.mark.parametrize(
        "deep",
        [False, pytest.param(True, marks=pytest.mark.all_backends)],
        ids=["shallow", "deep"],
    )
    def test_text_below_start_layer_is_the_plain_backbones(self, family, deep):
        backbone = backbone_of(family)
        wrapped = FrozenBackbone(
            backbone, prompt_length=3, start_layer=1, deep=deep
        )
        assert wrapped.start_layer == 1
        depth = 1 if deep else None
        assert wrapped.prompt_depth == depth
        expected_shape = ((1,) if deep else ()) + (3, wrapped.hidden_dim)
        assert wrapped.prompt_values().shape == expected_shape
        inputs = backbone_inputs(family)
        first = prompted_layers(backbone)[0]
        plain = hidden_states_after(backbone, first)(inputs)
        late = hidden_states_after(wrapped, first)(inputs)
        # Equal, not close: the text runs the very same computation.
        self.assertAllEqual(late, plain)
        # The prompt is used above: another prompt, other outputs (and the
        # same text states below).
        before = to_numpy(wrapped(inputs))
        random_prompt(wrapped, seed=3)
        after = to_numpy(wrapped(inputs))
        changed = [
            np.abs(a - b).max()
            for a, b in zip(
                keras.tree.flatten(before), keras.tree.flatten(after)
            )
        ]
        assert max(changed) > 1e-3
        self.assertAllEqual(hidden_states_after(wrapped, first)(inputs), plain)

    def test_prompt_file_records_start_layer(self, family, tmp_path):
        backbone = backbone_of(family)
        wrapped = random_prompt(
            FrozenBackbone(backbone, prompt_length=3, start_layer=1), seed=1
        )
        path = str(tmp_path / "late.prompt.safetensors")
        wrapped.save_prompts(path)
        other = FrozenBackbone(backbone, prompt_length=3, start_layer=1)
        metadata = other.load_prompts(path)
        assert metadata["prompt_config"]["start_layer"] == 1
        assert FrozenBackbone.prompt_file_settings(metadata)["start_layer"] == 1
        inputs = backbone_inputs(family)
        self.assertAllEqual(other(inputs), wrapped(inputs))
        # Same shape, another place: refused.
        with pytest.raises(ValueError, match="start_layer"):
            FrozenBackbone(backbone, prompt_length=3).load_prompts(path)


@pytest.mark.parametrize(
    "deep",
    [False, pytest.param(True, marks=pytest.mark.all_backends)],
    ids=["shallow", "deep"],
)
@pytest.mark.parametrize("family", GENERATING)
def test_cached_generation_equals_uncached_greedy(family, deep):
    wrapped = FrozenBackbone(
        backbone_of(family), prompt_length=3, start_layer=1, deep=deep
    )
    cached, expected = cached_and_uncached(wrapped, family)
    np.testing.assert_array_equal(cached, expected)


def test_start_layer_must_be_a_layer():
    with pytest.raises(ValueError, match="start_layer"):
        FrozenBackbone(backbone_of("bert"), prompt_length=3, start_layer=2)
    with pytest.raises(ValueError, match="start_layer"):
        PromptConfig(start_layer=-1)


def test_late_prompt_starts_from_the_input_prompt():
    """The prompt entering layer k starts as the hidden states its
    initializer's input prompt produces there."""
    backbone = backbone_of("gpt2")
    config = PromptConfig(
        length=3,
        deep=True,
        initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
    )
    deep = FrozenBackbone(backbone, prompt_config=config)
    late = FrozenBackbone(backbone, prompt_config=config.replace(start_layer=1))
    self_check = TestCase()
    self_check.assertAllClose(
        late.prompt_values(), deep.prompt_values()[1:], atol=1e-6
    )


def test_bank_refuses_a_task_entering_elsewhere():
    """A late prompt has the input prompt's shape: a bank of input prompts
    refuses it (from a model or a file) instead of serving it at the
    wrong layer."""
    from keras_prompt import PromptClassifier
    from keras_prompt.serving import PromptBank

    backbone = backbone_of("bert")
    late = PromptClassifier(
        FrozenBackbone(backbone, prompt_length=3, start_layer=1), num_classes=2
    )
    plain = PromptClassifier(
        FrozenBackbone(backbone, prompt_length=3), num_classes=2
    )
    bank = PromptBank(plain, capacity=2)
    with pytest.raises(ValueError, match="start_layer"):
        bank.add_task("late", late)
