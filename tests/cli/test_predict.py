"""`keras-prompt predict` end to end: `python -m keras_prompt.cli predict`
in a fresh process on the run folder of a `keras-prompt tune` run (a tiny
random BERT saved as a preset, trained on a few SST-2 examples), on a T5
prompt file with `--preset`, and (slow) on the real all-MiniLM-L6-v2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_prompt import PromptClassifier
from keras_prompt.cli import main
from tests.cli.test_tune import SEQUENCE_LENGTH
from tests.cli.test_tune import needs_sst2
from tests.cli.test_tune import tiny_args
from tests.cli.test_tune import tiny_bert_preset
from tests.conftest import REPO_ROOT
from tests.conftest import SHARED_SST2_DIR
from tests.serving import serving_fixtures as fixtures

TEXTS = ["a great , funny film", "dull and boring"]


def error_line(capsys):
    """The single stderr line of a failed `predict`."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-prompt predict: error: "), err
    return lines[0]


def predict(args, cwd, stdin=None):
    """Runs `python -m keras_prompt.cli predict ARGS` in a new process;
    returns its JSON lines."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    result = subprocess.run(
        [sys.executable, "-m", "keras_prompt.cli", "predict", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=str(cwd),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """`(preset, run folder)`: a 4-step `tune` of a tiny BERT, its preset
    given as a relative path."""
    root = tmp_path_factory.mktemp("predict")
    tiny_bert_preset(str(root / "tiny_bert"))
    output = root / "runs" / "sst2"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        args = tiny_args("./tiny_bert", "runs/sst2")
        assert main(args) == 0
    finally:
        os.chdir(cwd)
    return str(root / "tiny_bert"), output


@needs_sst2
class TestPredictClassifier:
    def test_run_folder_texts_and_tsv(self, tuned_run, tmp_path, capsys):
        capsys.readouterr()
        preset, output = tuned_run
        info = json.loads((output / "run.json").read_text())
        # The relative --preset is recorded absolute: usable from anywhere.
        assert info["run"]["preset"] == preset and os.path.isabs(
            info["run"]["preset"]
        )
        assert info["recipe"]["encoder_sequence_length"] == SEQUENCE_LENGTH
        # The first lines of SST-2's dev.tsv: a header, then text<TAB>label.
        with open(os.path.join(SHARED_SST2_DIR, "dev.tsv")) as f:
            lines = [next(f) for _ in range(4)]
        tsv = tmp_path / "dev.tsv"
        tsv.write_text("".join(lines))
        rows = [line.split("\t")[0].strip() for line in lines[1:]]
        records = predict(
            [str(output), *TEXTS, "--input", str(tsv), "--batch-size", "2"],
            cwd=tmp_path,
        )
        assert [r["text"] for r in records] == TEXTS + rows
        # The run's frozen-weight dtype (`--dtype auto`: bfloat16 on CPUs
        # with AVX512-BF16) is the one predict loads.
        expected = PromptClassifier.from_preset(
            preset,
            prompts=str(output),
            sequence_length=SEQUENCE_LENGTH,
            dtype=info["run"]["dtype"],
        ).predict(TEXTS + rows, verbose=0)
        for record, scores in zip(records, expected):
            assert set(record) == {"text", "label", "probability"}
            assert record["label"] == ("negative", "positive")[scores.argmax()]
            np.testing.assert_allclose(
                record["probability"], scores.max(), rtol=1e-5
            )

    def test_prompt_file_and_stdin(self, tuned_run, tmp_path):
        _, output = tuned_run
        records = predict(
            [str(output / "prompt.safetensors"), "--input", "-"],
            cwd=tmp_path,
            stdin="\n".join(TEXTS) + "\n\n",
        )
        assert [r["text"] for r in records] == TEXTS
        assert {r["label"] for r in records} <= {"negative", "positive"}

    def test_errors_before_any_model_is_loaded(
        self, tuned_run, tmp_path, capsys
    ):
        _, output = tuned_run
        assert main(["predict", str(output)]) == 1
        assert "no texts" in error_line(capsys)
        assert main(["predict", str(tmp_path), "x"]) == 1
        line = error_line(capsys)
        assert "neither a prompt file nor a run folder" in line
        lone = tmp_path / "lone.prompt.safetensors"
        lone.write_bytes((output / "prompt.safetensors").read_bytes())
        assert main(["predict", str(lone), "x"]) == 1
        assert "pass --preset" in error_line(capsys)
        missing = str(tmp_path / "missing.tsv")
        assert main(["predict", str(output), "--input", missing]) == 1
        assert "no such file" in error_line(capsys)


def test_t5_prompt_file_with_preset(tmp_path):
    preset = str(tmp_path / "t5")
    backbone, preprocessor = fixtures.t5()
    backbone.save_to_preset(preset)
    preprocessor.tokenizer.save_to_preset(preset)
    model = fixtures.seq2seq_task(3, seed=4)
    path = str(tmp_path / "color.prompt.safetensors")
    model.save_prompts(path)
    texts = fixtures.TEXTS[:3]
    records = predict(
        [path, *texts, "--preset", preset]
        + ["--sequence-length", "8", "--max-length", "3"],
        cwd=tmp_path,
    )
    assert records == [
        {"text": t, "output": o} for t, o in zip(texts, model.generate(texts))
    ]


def test_causal_lm_prompt_file_with_preset(tmp_path):
    preset = str(tmp_path / "gpt2")
    backbone, preprocessor = fixtures.gpt2()
    backbone.save_to_preset(preset)
    preprocessor.save_to_preset(preset)
    model = fixtures.causal_task(3, seed=5)
    path = str(tmp_path / "lm.prompt.safetensors")
    model.save_prompts(path)
    texts = fixtures.causal_texts()[:3]
    records = predict(
        [path, *texts, "--preset", preset]
        + ["--sequence-length", "4", "--max-length", "8"],
        cwd=tmp_path,
    )
    expected = model.generate(texts, max_length=8)
    assert records == [
        {"text": t, "output": o} for t, o in zip(texts, expected)
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("minilm")
def test_real_minilm_run(minilm_run, tmp_path, monkeypatch):
    """The run of the real default backbone, then predict."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    records = predict([minilm_run.folder, *TEXTS], cwd=tmp_path)
    assert [r["text"] for r in records] == TEXTS
    assert all(r["label"] in ("negative", "positive") for r in records)
    assert all(0.5 <= r["probability"] <= 1.0 for r in records)


def test_labelled_t5_run_predicts_the_best_label(t5_run, capsys):
    """A text-to-text run on a task with class labels: each text's label
    string of highest log-likelihood and its probability among the
    labels. The tiny T5's tokenizer reads both SST-2 labels as the same
    unknown token: equal scores up to the kernels' rounding (the two rows
    of a batch can differ in the last bit), so 0.5 each."""
    texts = ["sentence: red cat", "sentence: dull"]
    capsys.readouterr()
    assert main(["predict", t5_run.folder, *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    keys = ["label", "probability", "text"]
    assert [sorted(r) for r in records] == [keys, keys]
    assert [r["text"] for r in records] == texts
    for record in records:
        assert record["label"] in ("negative", "positive")
        assert record["probability"] == pytest.approx(0.5, abs=1e-5)
    assert main(["predict", t5_run.folder, "x", "--decode", "beam"]) == 1
    assert "--decode must be one of score, generate" in error_line(capsys)


def test_decode_choice():
    """--decode against the task class and the data task, before any
    model is loaded."""
    from keras_prompt import PromptCausalLM
    from keras_prompt import PromptSeq2SeqLM
    from keras_prompt.cli import CliError
    from keras_prompt.cli.common import decode_choice
    from keras_prompt.data import get_task

    sst2, wsc = get_task("glue/sst2"), get_task("super_glue/wsc")
    assert decode_choice(None, PromptCausalLM, sst2) == "score"
    assert decode_choice("generate", PromptCausalLM, sst2) == "generate"
    assert decode_choice(None, PromptSeq2SeqLM, wsc) == "generate"
    assert decode_choice(None, PromptSeq2SeqLM, None) == "generate"
    assert decode_choice(None, PromptClassifier, sst2) is None
    assert decode_choice("score", PromptClassifier, sst2) is None
    for args, message in [
        (("score", PromptSeq2SeqLM, wsc), "'super_glue/wsc' has no label"),
        (("score", PromptCausalLM, None), "records no task"),
        (("generate", PromptClassifier, sst2), "generates no text"),
        (("beam", PromptCausalLM, sst2), "got 'beam'"),
    ]:
        with pytest.raises(CliError, match=message):
            decode_choice(*args)
