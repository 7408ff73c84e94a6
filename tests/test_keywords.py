"""Misspelt keywords are refused, not silently dropped by Keras."""

import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptClassifier
from tests.test_case import tiny_backbone


def test_frozen_backbone_refuses_unknown_keywords_with_a_hint():
    with pytest.raises(TypeError) as info:
        FrozenBackbone(
            tiny_backbone("bert"),
            prompt_length=3,
            initialiser="sampled_vocab",
            num_prompt=4,
        )
    message = str(info.value)
    assert "'initialiser' (did you mean 'initializer'?)" in message
    assert "'num_prompt' (did you mean 'num_prompts'?)" in message


def test_tasks_refuse_unknown_keywords():
    backbone = FrozenBackbone(tiny_backbone("bert"), prompt_length=2)
    with pytest.raises(TypeError, match="did you mean 'pooling'"):
        PromptClassifier(backbone, num_classes=2, poolng="mean")
    decoder = FrozenBackbone(tiny_backbone("gpt2"), prompt_length=2)
    with pytest.raises(TypeError, match="did you mean 'preprocessor'"):
        PromptCausalLM(decoder, preprocesor=None)
    # Keras' own keywords still work.
    assert PromptClassifier(backbone, num_classes=2, name="x").name == "x"
