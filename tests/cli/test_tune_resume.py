"""`keras-prompt tune --resume`: a run interrupted any number of times ends
with the prompt of an uninterrupted run, bit for bit.

A tiny random BERT (dropout on) on a few examples of the real SST-2; the
fault-injection test kills `keras-prompt tune` processes with SIGKILL at
seeded random moments of their training and resumes each time.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_prompt.cli import main
from keras_prompt.cli import tune
from keras_prompt.prompt_files import read_prompt_file
from tests.cli.test_tune import listing
from tests.cli.test_tune import needs_sst2
from tests.cli.test_tune import tiny_args
from tests.cli.test_tune import tiny_bert_preset
from tests.conftest import REPO_ROOT

KILLS = 3


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    return tiny_bert_preset(str(tmp_path_factory.mktemp("tiny_bert")))


def args(preset, output, steps, *extra):
    argv = tiny_args(
        preset,
        output,
        "--checkpoint-every",
        "4",
        "--eval-every",
        str(steps // 3),
        *extra,
    )
    argv[argv.index("--steps") + 1] = str(steps)
    return argv


def same_files(folder, reference):
    """The prompt files hold the same tensors and metadata, and run.json
    the same scores (not the same bytes: safetensors orders its header
    per process, run.json records timings)."""
    import json

    got, got_meta = read_prompt_file(folder / "prompt.safetensors")
    want, want_meta = read_prompt_file(reference / "prompt.safetensors")
    assert got_meta == want_meta
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    runs = [
        json.loads((f / "run.json").read_text()) for f in (folder, reference)
    ]
    for key in ("validation", "history", "recipe", "run", "steps"):
        assert runs[0][key] == runs[1][key], key


def saved_step(output):
    names = listing(output / tune.CHECKPOINT_DIR) or []
    steps = [int(n[5:]) for n in names if n.startswith("step-")]
    return max(steps, default=0)


@needs_sst2
def test_ctrl_c_says_how_to_resume_and_resume_matches(
    preset, tmp_path, capsys, monkeypatch
):
    reference = tmp_path / "reference"
    assert main(args(preset, reference, 12)) == 0
    assert listing(reference) == ["prompt.safetensors", "run.json"]
    # Not a terminal: a progress line every 5% (here every step from the
    # second on), with the rate and the time left; no per-step Keras bar.
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "steps/s, ETA" in line]
    assert len(lines) == 11 and lines[-1].startswith("step 12/12 (100%)")
    assert "ms/step" not in out

    import keras_prompt

    def interrupt(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 10:
            raise KeyboardInterrupt

    output = tmp_path / "run"
    argv = args(preset, output, 12)
    with monkeypatch.context() as patch:
        patch.setattr(keras_prompt.FiniteGuard, "on_train_batch_end", interrupt)
        assert main(argv) == 130
    err = capsys.readouterr().err
    assert "stopped at step 10 of 12" in err
    assert "progress up to step 8 is saved in" in err
    assert "--resume" in err.splitlines()[0]
    assert listing(output) == ["checkpoint"]
    # Starting afresh over it is refused; --resume continues it.
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert listing(output) == ["prompt.safetensors", "run.json"]
    same_files(output, reference)


@pytest.mark.slow
@needs_sst2
def test_sigkilled_at_random_moments_and_resumed_is_bit_identical(
    preset, tmp_path
):
    steps = 120
    reference = tmp_path / "reference"
    assert main(args(preset, reference, steps)) == 0
    output = tmp_path / "run"
    command = [sys.executable, "-m", "keras_prompt.cli"]
    command += args(preset, output, steps, "--resume")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    rng = random.Random(20261203)
    saved, kills = [], 0
    while kills < KILLS:
        log = tmp_path / f"log-{kills}.txt"
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        # Wait until this process has saved a new checkpoint (its own
        # progress), then kill it a random moment later: inside a step, a
        # checkpoint write or an evaluation.
        start, deadline = saved_step(output), time.monotonic() + 120
        while saved_step(output) == start:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if process.poll() is not None:
            break  # It finished first.
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        saved.append(saved_step(output))
    assert kills == KILLS, saved
    # The kills landed at different moments of the training.
    assert len(set(saved)) >= 3 and 0 < max(saved) < steps, saved
    assert saved == sorted(saved)  # Never a step back.
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    work = output / tune.CHECKPOINT_DIR
    assert f"Resuming the run in {work} from step {saved[-1]}" in (
        result.stdout
    )
    assert listing(output) == ["prompt.safetensors", "run.json"]
    same_files(output, reference)
