"""The package's documented namespaces after a plain `import keras_prompt`,
checked in a fresh process (in the test process, other tests' imports of
the subpackages would set the attributes)."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

FRESH_IMPORT = """
import json
import sys

import keras_prompt

namespace = {}
exec("from keras_prompt import *", namespace)
print(json.dumps({
    "adafactor": keras_prompt.optimizers.Adafactor.__name__,
    "get_task": keras_prompt.data.get_task("glue/sst2").name,
    "convert": callable(keras_prompt.convert.load_hf_t5_backbone),
    "plan": callable(keras_prompt.distribute.plan),
    "analysis": keras_prompt.analysis.nearest_tokens.__name__,
    "recipe": keras_prompt.training.lester2021().prompt_length,
    "star": sorted(k for k in namespace if k != "__builtins__"),
    "all": sorted(keras_prompt.__all__),
    "tfds_imported": "tensorflow_datasets" in sys.modules,
}))
"""


def fresh_import():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    result = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_documented_namespaces_and_star_import():
    found = fresh_import()
    assert found["adafactor"] == "Adafactor"
    assert found["get_task"] == "glue/sst2"
    assert found["convert"] and found["plan"]
    assert found["analysis"] == "nearest_tokens"
    assert found["recipe"] == 100  # The paper's prompt length.
    # A star import must not shadow the standard library's `inspect`.
    assert "inspect" not in found["star"]
    assert found["star"] == found["all"]
    for name in (
        "analysis",
        "convert",
        "data",
        "distribute",
        "optimizers",
        "serving",
        "training",
    ):
        assert name in found["star"]
    # TFDS is imported when a dataset is read, not with the package.
    assert not found["tfds_imported"]
