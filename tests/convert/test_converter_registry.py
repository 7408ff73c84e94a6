"""The converter registry: which converter loads a preset, and keras-hub
for the presets nobody claims (`keras_prompt.convert.presets`)."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt.convert import hf_t5
from keras_prompt.convert import presets
from keras_prompt.convert import save_hf_t5_checkpoint
from keras_prompt.convert.checkpoint_files import preset_config
from keras_prompt.convert.registry import Converter
from keras_prompt.convert.registry import find_converter
from keras_prompt.convert.registry import register_converter
from keras_prompt.convert.registry import registered_converters
from keras_prompt.convert.registry import unregister_converter
from tests.test_case import tiny_backbone
from tests.test_case import tiny_t5
from tests.test_case import wordpiece_vocabulary

TOY_TYPE = "toy_bert"


def same_weights(a, b):
    return len(a.weights) == len(b.weights) and all(
        np.array_equal(
            keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)
        )
        for x, y in zip(a.weights, b.weights)
    )


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    """A tiny Hugging Face T5 checkpoint folder and its backbone."""
    backbone = tiny_t5(num_layers=1)
    path = str(tmp_path_factory.mktemp("hf_t5"))
    save_hf_t5_checkpoint(backbone, path)
    return path, backbone


@pytest.fixture(scope="module")
def keras_hub_folder(tmp_path_factory):
    """A tiny keras-hub preset folder (it has a config.json too) and its
    backbone."""
    backbone = tiny_backbone("bert", num_layers=1)
    path = str(tmp_path_factory.mktemp("keras_hub"))
    backbone.save_to_preset(path)
    return path, backbone


@pytest.fixture
def toy_folder(tmp_path):
    """A folder whose config.json only the toy converter claims."""
    config = {"model_type": TOY_TYPE, "num_layers": 2}
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    return str(tmp_path)


@pytest.fixture
def toy_converter():
    """A converter of `toy_folder`s, registered for one test; it records
    which presets it was asked about."""
    asked = []

    def claims(preset, config):
        asked.append(preset)
        return config is not None and config.get("model_type") == TOY_TYPE

    def load_backbone(preset, dtype=None, hidden_layers=None):
        layers = hidden_layers or preset_config(preset)["num_layers"]
        return tiny_backbone("bert", num_layers=layers, dtype=dtype)

    def load_preprocessor(preset, preprocessor_cls, sequence_length=8):
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=wordpiece_vocabulary()
        )
        return preprocessor_cls(tokenizer, sequence_length=sequence_length)

    converter = register_converter(
        Converter("toy", claims, load_backbone, load_preprocessor)
    )
    converter.asked = asked
    yield converter
    unregister_converter("toy")


def test_the_t5_converter_is_registered_on_import():
    assert hf_t5.CONVERTER in registered_converters()
    assert hf_t5.CONVERTER.name == "hf_t5"


def test_each_preset_goes_to_the_converter_claiming_it(
    t5_folder, keras_hub_folder, toy_folder, toy_converter
):
    t5_path, _ = t5_folder
    keras_hub_path, _ = keras_hub_folder
    # Registered after the T5 converter, the toy one is asked only about
    # what the T5 converter does not claim.
    assert find_converter(t5_path) is hf_t5.CONVERTER
    assert toy_converter.asked == []
    assert find_converter(toy_folder) is toy_converter
    assert find_converter(keras_hub_path) is None
    assert find_converter("bert_tiny_en_uncased") is None
    assert toy_converter.asked == [
        toy_folder,
        keras_hub_path,
        "bert_tiny_en_uncased",
    ]


def test_a_registered_converter_loads_its_presets(toy_folder, toy_converter):
    backbone = presets.load_backbone(toy_folder, dtype="float32")
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert backbone.num_layers == 2  # From the folder's config.json.
    assert presets.load_backbone(toy_folder, hidden_layers=1).num_layers == 1
    # "auto" is resolved before the converter sees it.
    auto = presets.load_backbone(toy_folder, dtype="auto")
    assert auto.dtype_policy.name in ("float32", "bfloat16")
    assert presets.backbone_keywords(toy_folder) == ["dtype", "hidden_layers"]
    presets.check_preset_kwargs("test", toy_folder, {"hidden_layers": 1})
    with pytest.raises(TypeError, match="hidden_layer"):
        presets.check_preset_kwargs("test", toy_folder, {"num_layers": 1})
    preprocessor = presets.load_preprocessor(
        toy_folder,
        keras_hub.models.BertTextClassifierPreprocessor,
        sequence_length=6,
    )
    assert isinstance(
        preprocessor, keras_hub.models.BertTextClassifierPreprocessor
    )
    assert preprocessor.sequence_length == 6


def test_unregistered_converter_is_not_asked(toy_folder):
    converter = register_converter(
        Converter(
            "toy",
            claims=lambda preset, config: True,
            load_backbone=lambda preset: None,
            load_preprocessor=lambda preset, cls: None,
        )
    )
    assert find_converter(toy_folder) is converter
    unregister_converter("toy")
    assert find_converter(toy_folder) is None
    assert "toy" not in [c.name for c in registered_converters()]


def test_t5_folder_loads_through_its_converter(t5_folder):
    path, backbone = t5_folder
    loaded = presets.load_backbone(path)
    assert isinstance(loaded, keras_hub.models.T5Backbone)
    assert same_weights(loaded, backbone)
    assert presets.backbone_keywords(path) == ["dtype"]


def test_an_unclaimed_preset_goes_to_keras_hub(keras_hub_folder):
    path, backbone = keras_hub_folder
    loaded = presets.load_backbone(path)
    assert isinstance(loaded, keras_hub.models.BertBackbone)
    assert same_weights(loaded, backbone)
    # keras-hub's keywords: the backbone class's constructor arguments.
    assert "num_layers" in presets.backbone_keywords(path)


def test_preset_config_reads_only_cheap_local_configs(
    t5_folder, tmp_path, monkeypatch
):
    path, _ = t5_folder
    assert preset_config(path)["model_type"] == "t5"
    assert preset_config(os.path.join(path, "config.json")) is None
    assert preset_config(str(tmp_path)) is None  # No config.json.
    (tmp_path / "config.json").write_text("{not json")
    assert preset_config(str(tmp_path)) is None
    (tmp_path / "config.json").write_text("[1, 2]")
    assert preset_config(str(tmp_path)) is None  # Not a JSON object.
    assert preset_config("bert_tiny_en_uncased") is None
    assert preset_config(3) is None


def test_registry_rejects_bad_converters():
    with pytest.raises(TypeError, match="load_backbone"):
        Converter("bad", lambda p, c: False, "not callable", print)
    with pytest.raises(ValueError, match="name=''"):
        Converter("", print, print, print)
    with pytest.raises(TypeError, match="converter="):
        register_converter("hf_t5")
    with pytest.raises(ValueError, match="'absent'.*hf_t5"):
        unregister_converter("absent")
