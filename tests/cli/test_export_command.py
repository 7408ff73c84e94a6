"""`keras-prompt export` end to end: the TF Serving folder it writes for a
run of `keras-prompt tune`, loaded in a fresh process with only TensorFlow
and tensorflow-text, serves what `keras-prompt predict` gives (tiny BERT
runs with float32 and bfloat16 frozen weights, a tiny T5 with a fixed
generation batch; slow: the real all-MiniLM-L6-v2). An existing folder is
refused unless --overwrite is given."""

import json
import os

import numpy as np
import pytest

from keras_prompt.cli import main
from keras_prompt.serving import read_manifest
from tests.serving.serving_fixtures import serve_in_fresh_process

TEXTS = [
    "a great , funny film",
    "dull and boring",
    "the best story of the year",
    "a mess",
    "it is a moving and funny movie",
]
LABELS = ("negative", "positive")


def run_cli(args, capsys):
    """Runs `keras-prompt ARGS` in process; returns its stdout lines."""
    capsys.readouterr()
    assert main(args) == 0
    return capsys.readouterr().out.splitlines()


def predict(run, texts, capsys, *options):
    return [
        json.loads(line)
        for line in run_cli(["predict", run, *texts, *options], capsys)
    ]


def error_line(capsys):
    """The single stderr line of a failed `export`."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-prompt export: error: "), err
    return lines[0]


def assert_same_classes(records, probabilities):
    assert len(records) == len(probabilities) == len(TEXTS)
    for record, row in zip(records, probabilities):
        assert record["label"] == LABELS[int(np.argmax(row))]
        np.testing.assert_allclose(record["probability"], max(row), rtol=1e-6)


def test_served_classifier_gives_predicts_probabilities(
    bert_runs, tmp_path, capsys
):
    calls, expected = [], {}
    for dtype, run in bert_runs.items():
        out = tmp_path / "models" / dtype / "1"
        lines = run_cli(["export", run.folder, str(out)], capsys)
        assert lines == [
            f"Exported the PromptClassifier of "
            f"{os.path.join(run.folder, 'prompt.safetensors')} to {out}: "
            "signature serve(inputs: strings) -> probabilities",
            "Serve it with: tensorflow_model_server --rest_api_port=8501 "
            f"--model_name={dtype} --model_base_path={out.parent}",
        ]
        assert read_manifest(out)["output"] == "probabilities"
        calls.append({"name": dtype, "path": str(out), "inputs": TEXTS})
        expected[dtype] = predict(run.folder, TEXTS, capsys)
    served = serve_in_fresh_process(calls)
    for dtype, records in expected.items():
        assert_same_classes(records, served[dtype]["probabilities"])


def test_served_t5_generates_what_predict_generates(t5_run, tmp_path, capsys):
    out = tmp_path / "t5" / "1"
    run_cli(["export", t5_run.folder, str(out), "--batch-size", "2"], capsys)
    manifest = read_manifest(out)
    assert (manifest["output"], manifest["batch_size"]) == ("outputs", 2)
    texts = TEXTS[:3]  # Two chunks of 2, the second padded.
    served = serve_in_fresh_process(
        [{"name": "t5", "path": str(out), "inputs": texts}]
    )
    # The exported graph generates; predict scores the run's labels unless
    # told to generate.
    records = predict(t5_run.folder, texts, capsys, "--decode", "generate")
    assert [r["output"] for r in records] == served["t5"]["outputs"]


def test_existing_out_dir_is_refused_unless_overwrite(
    bert_runs, tmp_path, capsys
):
    run = bert_runs["float32"].folder
    out = tmp_path / "sst2" / "1"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    assert main(["export", run, str(out)]) == 1
    line = error_line(capsys)
    assert f"OUT_DIR {str(out)!r} already exists" in line
    assert "--overwrite" in line and str(tmp_path / "sst2" / "2") in line
    assert os.listdir(out) == ["notes.txt"]
    run_cli(["export", run, str(out), "--overwrite"], capsys)
    assert "saved_model.pb" in os.listdir(out)
    assert "notes.txt" not in os.listdir(out)
    assert sorted(os.listdir(tmp_path / "sst2")) == ["1"]


def test_errors_before_any_model_is_loaded(bert_runs, tmp_path, capsys):
    run = bert_runs["float32"].folder
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for args, expected in [
        ([run, str(tmp_path / "m" / "1"), "--batch-size", "0"], "--batch-size"),
        ([run, str(a_file / "1")], f"OUT_DIR {str(a_file / '1')!r} cannot"),
        ([str(tmp_path), str(tmp_path / "m" / "1")], "neither a prompt file"),
    ]:
        assert main(["export", *args]) == 1
        assert expected in error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


@pytest.mark.slow
@pytest.mark.xdist_group("minilm")
def test_real_minilm_export_serves_predicts_probabilities(
    minilm_run, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sst2" / "1"
    run_cli(["export", minilm_run.folder, str(out)], capsys)
    served = serve_in_fresh_process(
        [{"name": "sst2", "path": str(out), "inputs": TEXTS}]
    )
    records = predict(minilm_run.folder, TEXTS, capsys)
    assert_same_classes(records, served["sst2"]["probabilities"])
