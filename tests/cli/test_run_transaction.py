"""`keras-prompt tune` and `export` treat their output as a transaction:
one atomic publication, one writer, a runaway loss caught, and every
setting checked before a model is loaded.

A tiny random BERT on a few examples of the real SST-2, in process.
"""

import json
import os

import pytest

import keras_prompt
from keras_prompt.cli import CliError
from keras_prompt.cli import common
from keras_prompt.cli import main
from keras_prompt.cli import tune
from tests.cli.test_tune import error_line
from tests.cli.test_tune import listing
from tests.cli.test_tune import needs_sst2
from tests.cli.test_tune import tiny_args
from tests.cli.test_tune import tiny_bert_preset
from tests.test_run_folders import attempts_killed_at_each_step
from tests.test_run_folders import start_holder


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return tiny_bert_preset(str(tmp_path_factory.mktemp("tiny_bert")))


def with_changes(argv, **changes):
    argv = list(argv)
    for name, value in changes.items():
        argv[argv.index("--" + name.replace("_", "-")) + 1] = str(value)
    return argv


def published_run(output):
    """The run `output` holds, read as `keras-prompt predict` reads it (a
    prompt file and a `run.json` of different runs are refused, by the
    prompt file's SHA-256 that `run.json` records): its seed."""
    path, info = common.locate_run(str(output))
    assert path == os.path.join(str(output), "prompt.safetensors")
    return info["recipe"]["seed"]


def files_of(folder):
    return {name: (folder / name).read_bytes() for name in listing(folder)}


@needs_sst2
def test_overwrite_killed_at_every_publication_step_leaves_a_whole_run(
    preset, tmp_path, capsys, monkeypatch
):
    output = tmp_path / "run"
    assert main(tiny_args(preset, output)) == 0
    (output / "notes.txt").write_text("mine")
    old = published_run(output)
    write_outputs = common.write_outputs
    found = []

    def publish_dying_at_each_step(folder, write_files, drop=()):
        def publish():
            write_outputs(folder, write_files, drop)

        for _ in attempts_killed_at_each_step(monkeypatch, publish):
            found.append(published_run(output))
            assert (output / "notes.txt").read_text() == "mine"

    monkeypatch.setattr(tune, "write_outputs", publish_dying_at_each_step)
    argv = tiny_args(preset, output, "--overwrite", "--seed", "1")
    assert main(argv) == 0
    capsys.readouterr()
    new = published_run(output)
    assert (old, new) == (0, 1)
    # The old run until the publication step, the new one from it on.
    switch = found.index(new)
    assert 3 <= switch < len(found) - 1
    assert found == [old] * switch + [new] * (len(found) - switch)
    assert listing(output) == ["notes.txt", "prompt.safetensors", "run.json"]
    killed = [n for n in listing(tmp_path) if n.startswith(".run.tmp-")]
    assert killed

    # The next run on the folder removes what the killed ones left, even
    # one refused before it loads anything (here by its memory need).
    before = files_of(output)
    argv = tiny_args(preset, output, "--overwrite", "--prompt-length", "1")
    assert main(with_changes(argv, batch_size=10**9)) == 1
    assert "--batch-size 1000000000" in error_line(capsys)
    assert listing(tmp_path) == ["run"]
    assert files_of(output) == before


@needs_sst2
def test_a_second_tune_on_the_output_is_refused_and_the_first_finishes(
    preset, tmp_path, capsys, monkeypatch
):
    output = tmp_path / "run"
    argv = tiny_args(preset, output, "--checkpoint-every", "2")
    second = []
    guard = keras_prompt.FiniteGuard.on_train_batch_end

    def start_a_second_writer(self, batch, logs=None):
        guard(self, batch, logs)
        if batch == 2 and not second:
            capsys.readouterr()
            second.append(main(argv + ["--overwrite"]))
            second.append(capsys.readouterr())

    monkeypatch.setattr(
        keras_prompt.FiniteGuard, "on_train_batch_end", start_a_second_writer
    )
    assert main(argv) == 0
    code, (out, err) = second
    assert code == 1
    assert out == ""  # Refused before loading anything.
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"is being written by process {os.getpid()}" in lines[0]
    assert "--output" in lines[0]
    assert listing(output) == ["prompt.safetensors", "run.json"]
    published_run(output)
    assert listing(tmp_path) == ["run"]


@needs_sst2
def test_a_runaway_loss_stops_the_run_and_keeps_the_earlier_one(
    preset, tmp_path, capsys
):
    """A normal run of more steps than the rule's window is not stopped;
    with a learning rate of 1e6 the loss climbs (finite) and the run stops
    with the non-finite guard's error, leaving the earlier run whole."""
    output = tmp_path / "run"
    argv = with_changes(tiny_args(preset, output), steps=14)
    assert main(argv) == 0
    capsys.readouterr()
    before = files_of(output)
    diverging = with_changes(argv, learning_rate="1e6") + ["--overwrite"]
    assert main(diverging) == 1
    line = error_line(capsys)
    assert "Training diverged at step" in line
    assert "times the loss it started from" in line
    assert "Nothing was saved" in line
    assert files_of(output) == before
    assert listing(tmp_path) == ["run"]


class TestPreflight:
    def test_empty_and_dangling_outputs_are_refused(
        self, preset, tmp_path, capsys
    ):
        assert main(tiny_args(preset, "")) == 1
        assert "--output must be a folder path, got ''" in error_line(capsys)
        link = tmp_path / "link"
        link.symlink_to(tmp_path / "gone")
        assert main(tiny_args(preset, link)) == 1
        line = error_line(capsys)
        assert f"--output {str(link)!r} is a symbolic link" in line
        assert "does not exist" in line
        assert listing(tmp_path) == ["link"]

    @pytest.mark.skipif(
        os.geteuid() == 0, reason="root writes into read-only folders"
    )
    def test_an_output_in_a_read_only_folder_is_refused(
        self, preset, tmp_path, capsys
    ):
        parent = tmp_path / "parent"
        (parent / "run").mkdir(parents=True)
        parent.chmod(0o555)
        try:
            assert main(tiny_args(preset, parent / "run", "--overwrite")) == 1
            assert "is not writable" in error_line(capsys)
        finally:
            parent.chmod(0o755)

    @pytest.mark.parametrize(
        "change, words",
        [
            ({"prompt_length": 10**9}, "--prompt-length 1000000000"),
            ({"batch_size": 10**9}, "--batch-size 1000000000"),
        ],
    )
    def test_settings_beyond_the_memory_are_refused_before_loading(
        self, preset, tmp_path, capsys, change, words
    ):
        output = tmp_path / "new" / "run"
        assert main(with_changes(tiny_args(preset, output), **change)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0]
        assert "GiB of memory" in lines[0]
        assert listing(tmp_path) == []

    def test_hugging_face_and_keras_hub_configs_are_read(self, tmp_path):
        """all-MiniLM-L6-v2's Hugging Face config: `--batch-size
        10000000` needs terabytes, refused on a 128 GiB machine; the
        defaults pass."""
        from keras_prompt.cli import preflight

        minilm = tmp_path / "minilm"
        minilm.mkdir()
        config = {"hidden_size": 384, "num_hidden_layers": 6}
        config["num_attention_heads"] = 12
        (minilm / "config.json").write_text(json.dumps(config))
        (minilm / "model.safetensors").write_bytes(b"0" * 1000)
        assert preflight.preset_sizes(str(minilm)) == (384, 6, 12, 1000)
        memory = 128 * preflight.GIB
        with pytest.raises(CliError, match="--batch-size 10000000, "):
            preflight.check_training_memory(
                str(minilm), 10**7, 128, 20, deep=True, memory=memory
            )
        preflight.check_training_memory(
            str(minilm), 32, 128, 20, deep=True, memory=memory
        )
        keras_hub = tmp_path / "keras_hub"
        keras_hub.mkdir()
        config = {"hidden_dim": 64, "num_layers": 3, "num_query_heads": 4}
        (keras_hub / "config.json").write_text(json.dumps({"config": config}))
        assert preflight.preset_sizes(str(keras_hub)) == (64, 3, 4, 0)
        # A preset that is not a local folder is not fetched: sizes of 1.
        assert preflight.preset_sizes("bert_base_en") == (1, 1, 1, 0)

    def test_least_training_bytes_is_the_documented_sum(self):
        from keras_prompt.cli import preflight

        # The prompt, its gradient and one slot; 3 kept block inputs; one
        # layer's scores; the weights.
        got = preflight.least_training_bytes(
            hidden=8,
            layers=2,
            heads=2,
            weight_bytes=100,
            batch_size=4,
            sequence_length=6,
            prompt_length=2,
        )
        assert got == 100 + 4 * 3 * 2 * 8 + 2 * (3 * 4 * 8 * 8 + 4 * 2 * 64)


def test_export_to_a_locked_folder_is_refused_at_once(tmp_path, capsys):
    out_dir = tmp_path / "models" / "1"
    out_dir.parent.mkdir()
    holder = start_holder(out_dir)
    try:
        assert main(["export", str(tmp_path / "no_run"), str(out_dir)]) == 1
    finally:
        holder.communicate("\n")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"OUT_DIR {str(out_dir)!r} is being written by process" in err[0]
    assert str(holder.pid) in err[0]
    assert listing(out_dir.parent) == []
