import json
import os

import pytest

from keras_prompt.convert import registry


def write_config(folder, config):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "config.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


@pytest.mark.parametrize(
    "config, is_t5",
    [
        ({"model_type": "t5", "d_model": 8}, True),
        ({"module": "keras_hub.src.models.bert", "class_name": "Bert"}, False),
    ],
)
def test_hf_handle_routes_t5_to_converter(tmp_path, monkeypatch, config, is_t5):
    import huggingface_hub

    path = write_config(str(tmp_path), config)
    calls = []

    def fake_download(repo, filename, revision=None):
        calls.append((repo, filename, revision))
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    found = registry.find_converter("hf://google/t5-small-lm-adapt@main")
    assert (found is not None) == is_t5
    assert calls == [("google/t5-small-lm-adapt", "config.json", "main")]


def test_hf_handle_offline_falls_back_to_keras_hub(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    assert registry.find_converter("hf://google/t5-small-lm-adapt") is None


def test_local_folder_detection(tmp_path):
    assert registry.find_converter(str(tmp_path)) is None
