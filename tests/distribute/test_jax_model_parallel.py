"""keras_prompt on the JAX backend with `keras.distribution.ModelParallel`.

The layers use `keras.ops` only, so prompt tuning runs on JAX as is; when
the frozen model is too big for one device, its weights can be sharded
with a layout map. Runs in a subprocess (the backend and the 8 virtual CPU
devices are fixed when Keras and JAX start) and only where JAX is
installed: it is not a dependency of keras_prompt.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="JAX not installed"
    ),
]


def test_model_parallel_prompt_tuning_matches_one_device():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("KERAS_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_jax_worker.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[-1][len("RESULT ") :])
    assert result["backend"] == "jax" and result["devices"] == 8
    single, sharded = result["single"], result["model_parallel"]
    assert "'model'" in sharded["kernel_sharding"]
    assert len(sharded["prompt_trainable"]) == 1
    np.testing.assert_allclose(sharded["loss"], single["loss"], rtol=1e-5)
    update = np.asarray(single["update"])
    assert np.abs(update).max() > 1e-3
    np.testing.assert_allclose(np.asarray(sharded["update"]), update, atol=1e-5)
