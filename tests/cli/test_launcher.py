"""The `keras-prompt` launcher (`keras_prompt_cli`): no TensorFlow start-up
lines, a global `--verbose`, and one clean line on Ctrl-C while TensorFlow
is still importing. Run as real subprocesses: what is checked is what
native code writes to the process's stderr and how it exits on SIGINT."""

import os
import signal
import subprocess
import sys
import time

import pytest

import keras_prompt_cli
from tests.conftest import REPO_ROOT

# Lines TensorFlow's native code prints at import (without the launcher).
TF_LINE_MARKS = (
    "absl::InitializeLog",
    "oneDNN",
    "cudart_stub",
    "cpu_feature_guard",
    "To enable the following instructions",
)
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n",
    "I0000 00:00:1796277425.173682    8533 port.cc:153] oneDNN custom "
    "operations are on.\n",
    "W0000 00:00:1796277641.934610   11848 assert_op.cc:39] Ignoring Assert\n",
    "To enable the following instructions: AVX2 FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.\n",
]
KEPT = [
    "E0000 00:00:1796277492.566701    8726 cuda_platform.cc:52] failed call "
    "to cuInit\n",
    "/x/y.py:3: UserWarning: something the user should see\n",
    "Traceback (most recent call last):\n",
]


def launcher_env():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    # The test session sets it; the launcher must set it by itself.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def launch(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_prompt_cli", *args],
        env=launcher_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_split_verbose_takes_only_global_flags():
    split = keras_prompt_cli.split_verbose
    assert split(["--verbose", "--help"]) == (["--help"], True)
    assert split(["-v", "tune", "--task", "x"]) == (
        ["tune", "--task", "x"],
        True,
    )
    # After the subcommand, `-v` belongs to the subcommand.
    assert split(["tune", "-v"]) == (["tune", "-v"], False)
    assert split([]) == ([], False)


@pytest.mark.parametrize("line", NOISE)
def test_native_startup_lines_are_noise(line):
    assert keras_prompt_cli.is_native_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_python_output_are_kept(line):
    assert not keras_prompt_cli.is_native_noise(line)


def test_help_prints_no_tensorflow_log_lines(tmp_path):
    process = launch("--help", cwd=str(tmp_path))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.startswith("usage: keras-prompt")
    assert "--verbose" in out
    for mark in TF_LINE_MARKS:
        assert mark not in err, err
    assert err == ""


def test_verbose_help_is_accepted(tmp_path):
    process = launch("--verbose", "--help", cwd=str(tmp_path))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.startswith("usage: keras-prompt")
    assert "Traceback" not in err


def test_module_cli_still_runs(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "keras_prompt.cli", "--help"],
        env=launcher_env(),
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("usage: keras-prompt")


# Runs the launcher with an import hook that, once TensorFlow's native
# libraries are loaded and it is importing `tensorflow.python.framework.ops`,
# writes a marker file and pauses there: the test sends SIGINT then, so the
# signal lands inside TensorFlow's import on any machine, however loaded.
PAUSED_IMPORT = """
import faulthandler, os, sys, time
stacks = open(sys.argv[1] + ".stacks", "w")
faulthandler.enable(stacks)  # SIGABRT: every thread's stack, for a report
class PauseTensorFlowImport:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow.python.framework.ops":
            with open(sys.argv[1], "w") as marker:
                marker.write(str(os.getpid()))
            time.sleep(300)
        return None
sys.meta_path.insert(0, PauseTensorFlowImport())
import keras_prompt_cli
sys.exit(keras_prompt_cli.main(sys.argv[2:]))
"""


def interactive_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_tensorflow_imports(tmp_path):
    marker = tmp_path / "importing"
    # Files, not pipes, and `wait`, not `communicate`: the outcome is the
    # launcher's own exit, whatever else may hold its output open.
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", PAUSED_IMPORT, str(marker), "--help"],
            env=launcher_env(),
            stdout=stdout,
            stderr=stderr,
            cwd=str(tmp_path),
            # Ctrl-C as in a terminal: a test run started in the background
            # or under nohup ignores SIGINT, and a child inherits that.
            preexec_fn=interactive_sigint,
        )
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, (out.read_text(), err.read_text())
        assert time.monotonic() < deadline, "TensorFlow never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        process.wait(timeout=60)
    stdout, stderr = out.read_text(), err.read_text()
    stacks = (tmp_path / "importing.stacks").read_text()
    assert process.returncode == 130, (
        process.returncode,
        stdout,
        stderr,
        stacks,
    )
    assert stderr == "keras-prompt: interrupted\n"
    assert stdout == ""
