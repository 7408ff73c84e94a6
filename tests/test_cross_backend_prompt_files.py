"""Prompt files are backend-neutral: a file saved on TensorFlow loads on
JAX with equal outputs, and back.

Tiny BERT (deep prompts, a classifier head), T5 and GPT-2 models with
random frozen weights and prompts are saved here, on TensorFlow; a JAX
process (`_cross_backend_worker.py`: the backend is fixed when Keras
starts) loads them into models with other random weights and saves its
own, which are loaded back here.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import pytest

from tests import cross_backend

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

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
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "_cross_backend_worker.py"),
            "jax",
            str(saved_here),
            str(saved_on_jax),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    check(json.loads(lines[-1][len("RESULT ") :]), saver="tensorflow")
    check(cross_backend.load(str(saved_on_jax)), saver="jax")
