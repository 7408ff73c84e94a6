"""`keras-prompt tune` with the prompt methods: late prompts
(`--start-layer`), residual reparameterisation (`--reparameterization`),
transfer (`--init-from`) and additive deep prompts (`--deep-mode add`),
end to end on tiny 2-layer BERT and Llama 3 presets and a few real SST-2
examples."""

import json

import numpy as np
import pytest

from keras_prompt import PromptClassifier
from keras_prompt.cli import main
from keras_prompt.data.classification import load_classification
from tests.cli.test_tune import SEQUENCE_LENGTH
from tests.cli.test_tune import error_line
from tests.cli.test_tune import needs_sst2
from tests.cli.test_tune import tiny_args
from tests.cli.test_tune import tiny_bert_preset
from tests.cli.test_tune import tiny_llama3_preset
from tests.conftest import SHARED_TFDS_DIR
from tests.test_case import to_numpy


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("tiny_bert_2"))
    return tiny_bert_preset(folder, num_layers=2)


def scored(run, preset):
    """The run's recorded accuracy and what its prompt file scores."""
    info = json.loads((run / "run.json").read_text())
    model = PromptClassifier.from_preset(
        preset, prompts=str(run), sequence_length=SEQUENCE_LENGTH
    )
    validation = load_classification(
        "glue/sst2", "validation", SHARED_TFDS_DIR, max_examples=24
    )
    predicted = model.predict(validation.texts, verbose=0).argmax(-1)
    return info, model, np.mean(predicted == validation.labels)


def assert_same_prompts(run, other, preset):
    """The prompt files of two runs hold the same prompt (<= 1e-6)."""
    _, model, _ = scored(run, preset)
    _, other_model, _ = scored(other, preset)
    np.testing.assert_allclose(
        to_numpy(model.backbone.prompt_values()),
        to_numpy(other_model.backbone.prompt_values()),
        atol=1e-6,
    )


@needs_sst2
def test_late_residual_then_transfer(preset, tmp_path, capsys):
    late = tmp_path / "late"
    code = main(
        tiny_args(
            preset,
            late,
            "--start-layer",
            "1",
            "--reparameterization",
            "residual",
            "--schedule",
            "constant",
            "--frozen-dropout",
            "0",
        )
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "deep prompts at layers 1-1 (residual reparameterisation)" in out
    assert "cosine" not in out  # a classifier's default, overridden
    assert "frozen model's dropout 0" in out
    info, model, accuracy = scored(late, preset)
    assert info["recipe"]["start_layer"] == 1
    assert info["recipe"]["schedule"] == "constant"
    assert info["recipe"]["frozen_dropout"] == 0.0
    assert info["recipe"]["reparameterization"]["method"] == "residual"
    # The file holds the folded prompt: a plain model scores what the run
    # scored.
    assert model.backbone.start_layer == 1
    assert model.backbone.prompt_config.reparameterization is None
    assert accuracy == info["validation_accuracy"]

    # Transfer: the second run starts from the first one's prompt and
    # takes its shape.
    transfer = tmp_path / "transfer"
    code = main(tiny_args(preset, transfer, "--init-from", str(late)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"transfer ({late / 'prompt.safetensors'})" in out
    info, model, _ = scored(transfer, preset)
    assert info["recipe"]["initializer"].startswith("FromPromptFile(")
    assert model.backbone.start_layer == 1

    # Zero steps of learning: the start is the first run's prompt.
    start = tmp_path / "start"
    code = main(
        tiny_args(preset, start, "--init-from", str(late))
        + ["--learning-rate", "1e-30"]
    )
    assert code == 0
    assert_same_prompts(start, late, preset)

    # A shape that contradicts the file: one line, nothing written.
    bad = tmp_path / "bad"
    code = main(
        tiny_args(preset, bad, "--init-from", str(late), "--start-layer", "0")
    )
    assert code != 0
    assert "start_layer" in error_line(capsys)
    assert not bad.exists()
    # A missing source: one line naming the flag.
    code = main(tiny_args(preset, bad, "--init-from", str(tmp_path / "no")))
    assert code != 0
    assert "--init-from: No prompt file" in error_line(capsys)
    # Both --init and --init-from: refused.
    code = main(
        tiny_args(
            preset, bad, "--init-from", str(late), "--init", "sampled_vocab"
        )
    )
    assert code != 0
    assert "--init or --init-from" in error_line(capsys)


@needs_sst2
def test_additive_deep_prompts_on_a_decoder(preset, tmp_path, capsys):
    """`--deep-mode add` trains additive deep prompts on a decoder-only
    preset; the run's file holds them folded: a plain deep model rebuilt
    from it scores what the run scored."""
    from keras_prompt import PromptCausalLM
    from keras_prompt.data import get_task
    from keras_prompt.training.task_kinds import task_kind

    folder = tiny_llama3_preset(str(tmp_path / "llama3"), num_layers=2)
    output = tmp_path / "run"
    args = tiny_args(folder, output, "--deep-mode", "add")
    args[args.index("--max-eval-examples") + 1] = "8"
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "deep prompts at 2 layers (added to the hidden states)" in out
    info = json.loads((output / "run.json").read_text())
    assert info["recipe"]["deep"] is True
    assert info["recipe"]["prompt_config"]["deep_mode"] == "add"
    model = PromptCausalLM.from_preset(
        folder,
        prompts=str(output),
        sequence_length=SEQUENCE_LENGTH + 16,
        target_length=16,
    )
    assert model.backbone.prompt_config.deep_mode == "replace"
    assert model.backbone.prompt_depth == 2
    validation = task_kind(type(model)).read_examples(
        get_task("glue/sst2"), "validation", SHARED_TFDS_DIR, max_examples=8
    )
    score = validation.score(model)["accuracy"]
    assert score == info["validation_accuracy"]

    # Refused in one line, nothing written: with --no-deep, and on an
    # encoder.
    bad = tmp_path / "bad"
    code = main(tiny_args(folder, bad, "--deep-mode", "add", "--no-deep"))
    assert code != 0
    assert "--no-deep" in error_line(capsys)
    code = main(tiny_args(preset, bad, "--deep-mode", "add"))
    assert code != 0
    assert "deep_mode='add'" in error_line(capsys)
    assert not bad.exists()


@needs_sst2
def test_frozen_prefix_cache(preset, tmp_path, capsys):
    """A late prompt trained over several passes caches its frozen prefix
    by default (the run record says so) and trains the prompt an uncached
    run trains; `on` is refused where it cannot hold."""
    late = ["--start-layer", "1", "--frozen-dropout", "0"]
    several = ["--max-train-examples", "16"]  # 4 steps of 8: two passes
    cached = tmp_path / "cached"
    assert main(tiny_args(preset, cached, *late, *several)) == 0
    record = json.loads((cached / "run.json").read_text())
    assert record["frozen_prefix_cache"]["used"]
    assert record["frozen_prefix_cache"]["examples"] == 16
    plain = tmp_path / "plain"
    off = ["--frozen-prefix-cache", "off"]
    assert main(tiny_args(preset, plain, *late, *several, *off)) == 0
    record = json.loads((plain / "run.json").read_text())
    assert not record["frozen_prefix_cache"]["used"]
    assert_same_prompts(cached, plain, preset)
    capsys.readouterr()
    bad = tmp_path / "bad"
    on = ["--frozen-prefix-cache", "on"]
    code = main(tiny_args(preset, bad, *several, *on))  # the input prompt
    assert code != 0
    line = error_line(capsys)
    assert "frozen_prefix_cache=True" in line and "start_layer=0" in line
    assert not bad.exists()
