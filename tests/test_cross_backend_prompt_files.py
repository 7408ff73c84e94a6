"""Prompt files are backend-neutral: a file saved on TensorFlow loads on
JAX with equal outputs, and back.

Tiny BERT (deep prompts, a classifier head), T5 and GPT-2 models with
random frozen weights and prompts are saved here, on TensorFlow; a JAX
process (`_cross_backend_worker.py`: the backend is fixed when Keras
starts) loads them into models with other random weights and saves its
own, which are loaded back here.
"""

import importlib.util
import os

import keras
import pytest

from tests import cross_backend
from tests.test_case import script_result

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None,
        reason="JAX not installed (the `jax` extra)",
    ),
]


def check(found, saver):
    assert sorted(found) == ["bert", "gpt2", "t5"]
    for family, one in found.items():
        assert one["file_backend"] == saver, family
        # The loaded weights and prompt make the outputs (the other random
        # model's were far) ...
        assert one["changed"] > 1e-2, (family, one)
        # ... and they equal the saving backend's.
        assert one["max_difference"] <= 1e-5, (family, one)


def test_prompt_files_travel_between_tensorflow_and_jax(tmp_path):
    assert keras.config.backend() == "tensorflow"
    saved_here, saved_on_jax = tmp_path / "tensorflow", tmp_path / "jax"
    saved_here.mkdir()
    saved_on_jax.mkdir()
    cross_backend.save(str(saved_here))
    worker = os.path.join(HERE, "_cross_backend_worker.py")
    found = script_result([worker, "jax", str(saved_here), str(saved_on_jax)])
    check(found, saver="tensorflow")
    check(cross_backend.load(str(saved_on_jax)), saver="jax")
