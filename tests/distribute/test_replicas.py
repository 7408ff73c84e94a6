"""Two replicas give what one device gives on the same global batch.

Each test runs `_replica_worker.py` in fresh processes (the logical CPU
devices, and a multi-worker cluster, must be configured before TensorFlow
initialises): a plain `fit` (no preparation) of PromptSeq2SeqLM on a tiny
T5 and of PromptClassifier on a tiny BERT, both from raw strings (so with
keras-hub's boolean padding masks, unevenly padded across replicas), and of
PromptCausalLM on a tiny GPT-2 (under `MirroredStrategy` also with deep
prompts). Plain SGD makes the prompt's update proportional to the
gradient, so a gradient summed instead of averaged over replicas would
show.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "_replica_worker.py")
EXPECTED_TASKS = {"seq2seq", "causal", "causal_deep", "classifier"}
MULTI_WORKER_TASKS = {"seq2seq", "causal"}


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _result(stdout, stderr):
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no RESULT line; stderr:\n{stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _check_same_as_one_device(result, expected=EXPECTED_TASKS):
    assert result["replicas"] == 2
    assert set(result["tasks"]) == expected
    for kind, runs in result["tasks"].items():
        single, distributed = runs["single"], runs["distributed"]
        assert single["steps"] == distributed["steps"] == 2, kind
        np.testing.assert_allclose(
            distributed["train_loss"], single["train_loss"], rtol=1e-5
        )
        update = np.asarray(single["update"])
        scale = np.abs(update).max()
        assert scale > 1e-5, f"{kind}: the prompt did not move"
        np.testing.assert_allclose(
            np.asarray(distributed["update"]),
            update,
            atol=1e-4 * scale,
            err_msg=f"{kind}: prompt updates differ",
        )


def test_mirrored_two_devices_match_one_device():
    proc = subprocess.run(
        [sys.executable, WORKER, "mirrored"],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = _result(proc.stdout, proc.stderr)
    assert result["strategy"].startswith("MirroredStrategy: 2 replica(s)")
    _check_same_as_one_device(result)
    # MirroredStrategy cannot XLA-compile a multi-device step.
    for runs in result["tasks"].values():
        assert runs["distributed"]["jit_compile"] is False


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(timeout):
    """Two local workers on loopback ports; both are stopped on timeout."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        tf_config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, "multi_worker"],
                cwd=REPO_ROOT,
                env=_env(TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=timeout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return procs, outputs


@pytest.mark.slow
def test_multi_worker_two_processes_match_one_device():
    procs, outputs = _run_cluster(timeout=500)
    if any(p.returncode for p in procs) and any(
        "address already in use" in err.lower() for _, err in outputs
    ):
        procs, outputs = _run_cluster(timeout=500)  # A port was taken.
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-4000:]
    results = [_result(out, err) for out, err in outputs]
    for result in results:
        assert result["strategy"].startswith(
            "MultiWorkerMirroredStrategy: 2 replicas on 2 worker(s)"
        )
        _check_same_as_one_device(result, MULTI_WORKER_TASKS)
    # Both workers hold the same prompt after training.
    for kind in MULTI_WORKER_TASKS:
        np.testing.assert_allclose(
            results[0]["tasks"][kind]["distributed"]["update"],
            results[1]["tasks"][kind]["distributed"]["update"],
            atol=1e-7,
        )
