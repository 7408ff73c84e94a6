"""`keras-prompt evaluate` end to end on runs of `keras-prompt tune`: by
default it reproduces run.json's validation metrics exactly (a tiny BERT
with float32 and with bfloat16 frozen weights, in process and in a fresh
process from another folder; a tiny T5; slow: the real all-MiniLM-L6-v2),
scores other splits and sizes, and reports bad arguments in one line."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from keras_prompt.cli import main
from keras_prompt.cli.common import load_run_model
from keras_prompt.cli.common import read_run
from tests.cli.conftest import BERT_EVAL_EXAMPLES
from tests.conftest import REPO_ROOT
from tests.conftest import SHARED_TFDS_DIR

SST2_VALIDATION_EXAMPLES = 872


def evaluate(args, capsys):
    """Runs `keras-prompt evaluate ARGS` in process; returns its summary
    line and its JSON record."""
    capsys.readouterr()
    assert main(["evaluate", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    return lines[0], json.loads(lines[1])


def error_line(capsys):
    """The single stderr line of a failed `evaluate`."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-prompt evaluate: error: "), err
    return lines[0]


def summary(run):
    accuracy = run.info["validation_accuracy"]
    return (
        f"glue/sst2 validation, {run.info['validation_examples']} examples: "
        f"accuracy {accuracy:.4f} (run.json: accuracy {accuracy:.4f})"
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_default_reproduces_the_runs_metrics_exactly(
    bert_runs, dtype, tmp_path, monkeypatch, capsys
):
    run = bert_runs[dtype]
    # From another folder, without $TFDS_DATA_DIR: run.json says where
    # the data is (recorded absolute).
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    assert run.info["run"]["data_dir"] == os.path.abspath(SHARED_TFDS_DIR)
    line, record = evaluate([run.folder], capsys)
    assert record == {
        "run": run.folder,
        "task": "glue/sst2",
        "split": "validation",
        "examples": BERT_EVAL_EXAMPLES,
        "metrics": run.info["validation"],
    }
    assert record["metrics"]["accuracy"] == run.info["validation_accuracy"]
    assert line == summary(run)
    # The frozen weights are loaded in the run's dtype.
    model = load_run_model(read_run(run.folder))
    assert model.backbone.backbone.dtype_policy.name == dtype
    assert model.preprocessor.sequence_length == 16


def test_fresh_process_from_another_folder(bert_runs, tmp_path):
    run = bert_runs["bfloat16"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TFDS_DATA_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    relative = os.path.relpath(run.folder, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "keras_prompt.cli", "evaluate", relative],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.splitlines()
    assert lines[0] == summary(run)
    record = json.loads(lines[1])
    assert record["metrics"]["accuracy"] == run.info["validation_accuracy"]
    assert record["run"] == relative


def test_other_splits_and_sizes(bert_runs, capsys):
    run = bert_runs["float32"]
    data = ["--data-dir", SHARED_TFDS_DIR]
    line, record = evaluate([run.folder, "--max-examples", "0", *data], capsys)
    assert record["examples"] == SST2_VALIDATION_EXAMPLES
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
    assert "run.json" not in line
    # The run's first 200 examples, in batches of 8: the same accuracy up
    # to float rounding of the differently padded batches.
    _, record = evaluate([run.folder, "--batch-size", "8"], capsys)
    assert record["examples"] == BERT_EVAL_EXAMPLES
    assert record["metrics"]["accuracy"] == pytest.approx(
        run.info["validation_accuracy"], abs=2 / BERT_EVAL_EXAMPLES
    )
    line, record = evaluate(
        [run.folder, "--split", "train", "--max-examples", "16"], capsys
    )
    assert (record["split"], record["examples"]) == ("train", 16)
    assert line.startswith("glue/sst2 train, 16 examples: accuracy ")


def test_t5_reproduces_the_runs_metrics(t5_run, capsys):
    """The run scored SST-2's label strings (its default), and evaluate
    does by default; --decode generate scores greedy generations (no
    label strings on this tiny model: other metrics)."""
    line, record = evaluate([t5_run.folder], capsys)
    assert t5_run.info["model_class"] == "PromptSeq2SeqLM"
    assert t5_run.info["recipe"]["decode"] == "score"
    assert record["examples"] == 8
    assert record["decode"] == "score"
    assert record["metrics"] == t5_run.info["validation"]
    assert "(run.json: " in line
    line, record = evaluate([t5_run.folder, "--decode", "generate"], capsys)
    assert record["decode"] == "generate"
    assert record["metrics"] != t5_run.info["validation"]
    assert "run.json" not in line
    args = ["evaluate", t5_run.folder, "--task", "super_glue/record"]
    assert main([*args, "--decode", "score"]) == 1
    assert (
        "--decode score: Task 'super_glue/record' has no label strings"
        in error_line(capsys)
    )


def test_errors_name_the_argument(bert_runs, tmp_path, capsys):
    run = bert_runs["float32"].folder
    for args, expected in [
        (["--max-examples", "-1"], "--max-examples must be an integer >= 0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--task", "glue/nope"], "--task 'glue/nope': Unknown task"),
        (["--split", "nope"], "--split 'nope'"),
        (["--data-dir", str(tmp_path / "x")], "x' does not exist"),
        (["--decode", "beam"], "--decode must be one of score, generate"),
        (["--decode", "generate"], "a PromptClassifier scores its classes"),
    ]:
        assert main(["evaluate", run, *args]) == 1
        assert expected in error_line(capsys)
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "neither a prompt file nor a run folder" in error_line(capsys)
    lone = tmp_path / "lone.prompt.safetensors"
    shutil.copy(os.path.join(run, "prompt.safetensors"), lone)
    assert main(["evaluate", str(lone)]) == 1
    assert "no run.json beside it" in error_line(capsys)


@pytest.mark.slow
@pytest.mark.xdist_group("minilm")
def test_real_minilm_reproduces_the_runs_accuracy(
    minilm_run, monkeypatch, capsys
):
    """The real default backbone, tuned 20 steps: evaluate gives run.json's
    validation accuracy exactly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line, record = evaluate([minilm_run.folder], capsys)
    assert minilm_run.info["backbone_class"] == "BertBackbone"
    assert record["examples"] == 872
    assert record["metrics"] == minilm_run.info["validation"]
    assert line == summary(minilm_run)


def test_deep_run_is_recorded_reproduced_and_checked(tmp_path, capsys):
    """`tune --deep`: run.json and the prompt file record the depth, the
    trainable parameters count a prompt per layer, `evaluate` rebuilds a
    deep model from the run and reproduces its accuracy, and a shallow
    model refuses the file."""
    from keras_prompt import PromptClassifier
    from keras_prompt.prompt_files import read_prompt_file
    from tests.cli.conftest import tune
    from tests.cli.test_tune import tiny_bert_preset

    preset = tiny_bert_preset(str(tmp_path / "bert"), num_layers=2)
    run = tune(preset, tmp_path / "run", "--deep")
    assert run.info["recipe"]["deep"] is True
    prompt_file = os.path.join(run.folder, "prompt.safetensors")
    tensors, metadata = read_prompt_file(prompt_file)
    assert metadata["prompt_depth"] == 2
    assert tensors["prompt"].shape == (2, 3, 16)
    head = sum(v.size for k, v in tensors.items() if k != "prompt")
    assert run.info["trainable_parameters"] == 2 * 3 * 16 + head
    _, record = evaluate([run.folder], capsys)
    assert record["metrics"] == run.info["validation"]
    model = load_run_model(read_run(run.folder))
    assert model.backbone.deep and model.backbone.prompt_depth == 2
    with pytest.raises(ValueError, match="deep=True"):
        PromptClassifier.from_preset(preset, prompts=run.folder, deep=False)
