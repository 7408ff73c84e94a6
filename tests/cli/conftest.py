"""Runs of `keras-prompt tune` the evaluate and export tests share, made
once per session: tiny random BERT and T5 presets trained on a few SST-2
examples, and (slow) the real all-MiniLM-L6-v2."""

import json
import os

import pytest

import keras_prompt
from keras_prompt.cli import main
from tests.cli.test_tune import SST2_READY
from tests.cli.test_tune import tiny_args
from tests.cli.test_tune import tiny_bert_preset
from tests.conftest import SHARED_TFDS_DIR

#: Validation examples the tiny BERT runs score (enough for an accuracy
#: that is not a coarse fraction).
BERT_EVAL_EXAMPLES = 200


class Run:
    """A finished `tune` run: its folder, preset and `run.json`."""

    def __init__(self, folder, preset):
        self.folder = str(folder)
        self.preset = preset
        with open(os.path.join(self.folder, "run.json")) as f:
            self.info = json.load(f)


def tune(preset, output, *extra, **changes):
    """`keras-prompt tune` of `tiny_args` (with `--name value` changes)."""
    if not SST2_READY:
        pytest.skip("../shared/tfds has no glue/sst2")
    args = tiny_args(preset, output, *extra)
    for name, value in changes.items():
        args[args.index("--" + name.replace("_", "-")) + 1] = str(value)
    assert main(args) == 0
    return Run(output, preset)


@pytest.fixture(scope="session")
def bert_runs(tmp_path_factory):
    """`{dtype: Run}`: a tiny BERT tuned with float32 and with bfloat16
    frozen weights, scored on the first `BERT_EVAL_EXAMPLES` examples."""
    root = tmp_path_factory.mktemp("bert_runs")
    preset = tiny_bert_preset(str(root / "tiny_bert"))
    return {
        dtype: tune(
            preset,
            root / dtype,
            "--dtype",
            dtype,
            max_eval_examples=BERT_EVAL_EXAMPLES,
        )
        for dtype in ("float32", "bfloat16")
    }


@pytest.fixture(scope="session")
def t5_run(tmp_path_factory):
    """A tiny T5 (`PromptSeq2SeqLM`) tuned 2 steps, scored on 8
    generations."""
    from keras_prompt import toy

    root = tmp_path_factory.mktemp("t5_run")
    keras_prompt.set_random_seed(0)
    preprocessor = toy.toy_t5_preprocessor()
    preset = str(root / "t5")
    toy.toy_t5(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=16, num_layers=1
    ).save_to_preset(preset)
    preprocessor.tokenizer.save_to_preset(preset)
    return tune(
        preset,
        root / "run",
        "--init",
        "class_label",
        "--dtype",
        "float32",
        steps=2,
        max_eval_examples=8,
    )


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory):
    """The README's main job, shortened to 20 steps: the real default
    (all-MiniLM-L6-v2, every default of `tune`) on SST-2 from
    `TFDS_DATA_DIR`, scored on all 872 validation examples. Its tests are
    marked `xdist_group("minilm")`: the suite runs with `--dist
    loadgroup`, so they share one worker and the run is made once."""
    if not SST2_READY:
        pytest.skip("../shared/tfds has no glue/sst2")
    output = tmp_path_factory.mktemp("minilm_run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TFDS_DATA_DIR", SHARED_TFDS_DIR)
        assert main(["tune", "--steps", "20", "--output", str(output)]) == 0
    return Run(output, None)
