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


# -- `from_preset` -------------------------------------------------------------
MISSPELT = [
    ({"promt_length": 3}, "'promt_length' (did you mean 'prompt_length'?)"),
    (
        {"initialiser": "sampled_vocab"},
        "'initialiser' (did you mean 'initializer'?)",
    ),
    ({"num_prompt": 4}, "'num_prompt' (did you mean 'num_prompts'?)"),
]


def tiny_preset(folder, family):
    """A tiny keras-hub preset of `family` (backbone and tokenizer)."""
    import keras_hub

    from keras_prompt import toy
    from tests.serving.serving_fixtures import gpt2_tokenizer
    from tests.test_case import wordpiece_vocabulary

    if family == "bert":
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=wordpiece_vocabulary()
        )
    elif family == "gpt2":
        tokenizer = gpt2_tokenizer()
    else:
        tokenizer = toy.toy_t5_preprocessor().tokenizer
    backbone = tiny_backbone(
        family, vocabulary_size=tokenizer.vocabulary_size()
    )
    backbone.save_to_preset(folder)
    tokenizer.save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Per family: a full preset, and one with only its config (no
    weights, no tokenizer), which only a check made before loading
    anything can get through."""
    import os
    import shutil

    result = {}
    for family in ("bert", "gpt2", "t5"):
        full = tiny_preset(str(tmp_path_factory.mktemp(family)), family)
        config_only = str(tmp_path_factory.mktemp(f"{family}_config"))
        for name in ("config.json", "metadata.json"):
            shutil.copy(os.path.join(full, name), config_only)
        result[family] = {"full": full, "config_only": config_only}
    return result


def from_preset_calls():
    from keras_prompt import PromptSeq2SeqLM

    return [
        pytest.param(
            "bert",
            lambda preset, **kw: FrozenBackbone.from_preset(preset, **kw),
            id="FrozenBackbone",
        ),
        pytest.param(
            "bert",
            lambda preset, **kw: PromptClassifier.from_preset(
                preset, num_classes=2, sequence_length=8, **kw
            ),
            id="PromptClassifier",
        ),
        pytest.param(
            "gpt2",
            lambda preset, **kw: PromptCausalLM.from_preset(preset, **kw),
            id="PromptCausalLM",
        ),
        pytest.param(
            "t5",
            lambda preset, **kw: PromptSeq2SeqLM.from_preset(preset, **kw),
            id="PromptSeq2SeqLM",
        ),
    ]


@pytest.mark.parametrize("family, load", from_preset_calls())
@pytest.mark.parametrize("kwargs, hint", MISSPELT)
def test_from_preset_refuses_misspelt_keywords_before_loading(
    presets, family, load, kwargs, hint
):
    with pytest.raises(TypeError) as info:
        load(presets[family]["config_only"], prompt_length=2, **kwargs)
    message = str(info.value)
    assert "from_preset got unexpected keyword argument(s)" in message
    assert hint in message
    assert "dtype" in message  # The valid names are listed.


@pytest.mark.parametrize("family, load", from_preset_calls())
def test_from_preset_keeps_the_backbone_keywords(presets, family, load):
    model = load(presets[family]["full"], prompt_length=2, dtype="bfloat16")
    wrapped = model if isinstance(model, FrozenBackbone) else model.backbone
    assert wrapped.backbone.dtype_policy.name == "bfloat16"
    assert wrapped.prompt_length == 2


def test_from_preset_passes_backbone_constructor_arguments(presets):
    wrapped = FrozenBackbone.from_preset(
        presets["bert"]["full"], prompt_length=2, dropout=0.25
    )
    assert wrapped.backbone.dropout == 0.25
    with pytest.raises(TypeError, match="'dropuot' \\(did you mean 'dropout'"):
        FrozenBackbone.from_preset(presets["bert"]["config_only"], dropuot=0.2)
    # The task's own misspelt keyword names the task's argument.
    with pytest.raises(TypeError, match="'poolng' \\(did you mean 'pooling'"):
        PromptClassifier.from_preset(
            presets["bert"]["config_only"], num_classes=2, poolng="mean"
        )
