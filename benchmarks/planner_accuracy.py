"""How close is `keras_prompt.distribute.plan` to measured memory?

For small configurations that run on this machine's CPU, each in its own
subprocess, we train (one warm-up step that traces and compiles, then two
measured steps) and read TensorFlow's own allocator statistics for the CPU
device, `tf.config.experimental.get_memory_info("CPU:0")`: `current` (bytes
of live tensors and variables) and `peak`. The peak is reset with
`tf.config.experimental.reset_memory_stats` after the warm-up step, so it
is the peak of the training steps alone. The allocator counts tensor bytes
only (no Python, no TF runtime, no compiled code), which is what the
planner estimates: weights + optimizer state + activations + backward
working set. (RSS would add a few hundred MB of runtime that varies from
run to run.)

We compare the planner's per-device total with the measured peak, and the
planner's batch-dependent part (activations + working set) with the
measured peak minus the live bytes before the step (weights, optimizer
state). Errors are `(estimate - measured) / measured`.

Run: `python benchmarks/planner_accuracy.py [--jit 0|1] [--json out.json]`
(about 1 min per configuration on 2 busy cores). `--only NAME` runs one.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small shapes of the real families: T5 1.1 (GEGLU, untied), original T5
# (ReLU, tied), Llama-style (SwiGLU, GQA) and GPT-2; batch and lengths
# chosen so that activations are a few hundred MB.
CONFIGS = [
    {
        "name": "t5.1.1-like d512 L4 s256",
        "spec": dict(
            family="t5",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            head_dim=64,
            intermediate_dim=1024,
            gated=True,
        ),
        "batch": 8,
        "seq": 256,
        "target": 32,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "t5.1.1-like d512 L4 s512",
        "spec": dict(
            family="t5",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            head_dim=64,
            intermediate_dim=1024,
            gated=True,
        ),
        "batch": 4,
        "seq": 512,
        "target": 32,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "t5-like relu tied d256 L6 s256 V32k",
        "spec": dict(
            family="t5",
            vocabulary_size=32128,
            hidden_dim=256,
            num_layers=6,
            num_heads=4,
            head_dim=64,
            intermediate_dim=1024,
            gated=False,
            tied_embeddings=True,
            activation="relu",
        ),
        "batch": 8,
        "seq": 256,
        "target": 64,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "t5.1.1-like d512 L4 s256 bf16",
        "spec": dict(
            family="t5",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            head_dim=64,
            intermediate_dim=1024,
            gated=True,
        ),
        "batch": 8,
        "seq": 256,
        "target": 32,
        "prompt": 20,
        "dtype": "bfloat16",
        "mode": "prompt",
    },
    {
        "name": "llama-like d512 L4 s256",
        "spec": dict(
            family="decoder",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            num_kv_heads=2,
            head_dim=64,
            intermediate_dim=1536,
            gated=True,
            activation="silu",
            score_tensors=2,
        ),
        "batch": 8,
        "seq": 256,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "llama-like d512 L4 s512",
        "spec": dict(
            family="decoder",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            num_kv_heads=2,
            head_dim=64,
            intermediate_dim=1536,
            gated=True,
            activation="silu",
            score_tensors=2,
        ),
        "batch": 4,
        "seq": 512,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "gemma-like d512 L4 s256",
        "spec": dict(
            family="decoder",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            num_kv_heads=1,
            head_dim=64,
            intermediate_dim=1536,
            gated=True,
            tied_embeddings=True,
            activation="gelu_tanh",
            score_tensors=2,
        ),
        "batch": 8,
        "seq": 256,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "gpt2-like d384 L6 s256",
        "spec": dict(
            family="decoder",
            vocabulary_size=8192,
            hidden_dim=384,
            num_layers=6,
            num_heads=6,
            head_dim=64,
            intermediate_dim=1536,
            gated=False,
            tied_embeddings=True,
            max_positions=512,
            activation="gelu_tanh",
        ),
        "batch": 8,
        "seq": 256,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "gpt2-like d384 L6 s512",
        "spec": dict(
            family="decoder",
            vocabulary_size=8192,
            hidden_dim=384,
            num_layers=6,
            num_heads=6,
            head_dim=64,
            intermediate_dim=1536,
            gated=False,
            tied_embeddings=True,
            max_positions=640,
            activation="gelu_tanh",
        ),
        "batch": 4,
        "seq": 512,
        "prompt": 20,
        "dtype": "float32",
        "mode": "prompt",
    },
    {
        "name": "t5.1.1-like d512 L4 s256 full FT Adam",
        "spec": dict(
            family="t5",
            vocabulary_size=8192,
            hidden_dim=512,
            num_layers=4,
            num_heads=8,
            head_dim=64,
            intermediate_dim=1024,
            gated=True,
        ),
        "batch": 8,
        "seq": 256,
        "target": 32,
        "prompt": 20,
        "dtype": "float32",
        "mode": "full",
    },
]


# -- worker: one configuration in a fresh process ----------------------------
def _build(config):
    import keras
    import keras_hub

    from keras_prompt import FrozenBackbone
    from keras_prompt import PromptCausalLM
    from keras_prompt import PromptSeq2SeqLM

    spec = config["spec"]
    dtype = config["dtype"]
    full = config["mode"] == "full"
    if spec["family"] == "t5":
        backbone = keras_hub.models.T5Backbone(
            vocabulary_size=spec["vocabulary_size"],
            num_layers=spec["num_layers"],
            num_heads=spec["num_heads"],
            hidden_dim=spec["hidden_dim"],
            intermediate_dim=spec["intermediate_dim"],
            key_value_dim=spec["head_dim"],
            dropout=0.0,
            activation="gelu" if spec.get("gated", True) else "relu",
            use_gated_activation=spec.get("gated", True),
            tie_embedding_weights=spec.get("tied_embeddings", False),
            dtype=dtype,
        )
        task_cls, plain_cls = PromptSeq2SeqLM, keras_hub.models.T5Seq2SeqLM
    elif spec.get("activation") == "gelu_tanh" and spec.get("gated", True):
        backbone = keras_hub.models.GemmaBackbone(
            vocabulary_size=spec["vocabulary_size"],
            num_layers=spec["num_layers"],
            num_query_heads=spec["num_heads"],
            num_key_value_heads=spec["num_kv_heads"],
            hidden_dim=spec["hidden_dim"],
            intermediate_dim=2 * spec["intermediate_dim"],
            head_dim=spec["head_dim"],
            dtype=dtype,
        )
        task_cls, plain_cls = PromptCausalLM, keras_hub.models.GemmaCausalLM
    elif spec.get("max_positions"):
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=spec["vocabulary_size"],
            num_layers=spec["num_layers"],
            num_heads=spec["num_heads"],
            hidden_dim=spec["hidden_dim"],
            intermediate_dim=spec["intermediate_dim"],
            dropout=0.0,
            max_sequence_length=spec["max_positions"],
            dtype=dtype,
        )
        task_cls, plain_cls = PromptCausalLM, keras_hub.models.GPT2CausalLM
    else:
        backbone = keras_hub.models.LlamaBackbone(
            vocabulary_size=spec["vocabulary_size"],
            num_layers=spec["num_layers"],
            num_query_heads=spec["num_heads"],
            num_key_value_heads=spec["num_kv_heads"],
            hidden_dim=spec["hidden_dim"],
            intermediate_dim=spec["intermediate_dim"],
            dtype=dtype,
        )
        task_cls, plain_cls = PromptCausalLM, keras_hub.models.LlamaCausalLM
    if full:
        model = plain_cls(backbone=backbone, preprocessor=None)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=config["jit"],
        )
    else:
        wrapped = FrozenBackbone(backbone, prompt_length=config["prompt"])
        model = task_cls(wrapped, None)
        model.compile(jit_compile=config["jit"])  # Adafactor, the paper's.
    return model


def _data(config):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    b, vocab = config["batch"], config["spec"]["vocabulary_size"]
    if config["spec"]["family"] == "t5":
        s, t = config["seq"], config["target"]
        x = {
            "encoder_token_ids": rng.integers(3, vocab, (b, s)),
            "encoder_padding_mask": np.ones((b, s)),
            "decoder_token_ids": rng.integers(3, vocab, (b, t)),
            "decoder_padding_mask": np.ones((b, t)),
        }
        y = rng.integers(3, vocab, (b, t))
    else:
        s = config["seq"]
        x = {
            "token_ids": rng.integers(3, vocab, (b, s)),
            "padding_mask": np.ones((b, s)),
        }
        y = rng.integers(3, vocab, (b, s))
    x = {k: v.astype("int32") for k, v in x.items()}
    sample_weight = np.ones(y.shape, "float32")
    return tf.data.Dataset.from_tensors((x, y.astype("int32"), sample_weight))


def worker(config):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    model = _build(config)
    data = _data(config)
    model.fit(data, verbose=0)  # Trace (and compile) and build the slots.
    info = tf.config.experimental.get_memory_info("CPU:0")
    before = info["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    model.fit(data.repeat(2), verbose=0)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]

    def nbytes(variables):
        return sum(
            int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
            for v in variables
        )

    return {
        "weights": nbytes(model.weights),
        "optimizer": nbytes(model.optimizer.variables),
        "live_before_step": before,
        "peak": peak,
    }


# -- driver ------------------------------------------------------------------
def estimate(config):
    from keras_prompt.distribute import plan

    result = plan(
        dict(config["spec"], name=config["name"]),
        batch_size=config["batch"],
        sequence_length=config["seq"],
        target_length=config.get("target"),
        prompt_length=config["prompt"],
        dtype=config["dtype"],
        device="cpu",
        ram_gb=64,
    )
    if config["mode"] == "full":
        estimate = result.full_finetuning
        # The benchmark's full fine-tuning keeps float32 weights and no
        # master copy; the planner's 16 bytes per parameter is the same.
    else:
        estimate = result.prompt_tuning
    return {
        "total": estimate.total,
        "step": estimate.activations + estimate.transient,
        "static": estimate.static,
    }


def run_config(config, timeout=900):
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    start = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{config['name']} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    measured = json.loads(line)
    measured["seconds"] = round(time.time() - start, 1)
    return measured


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--jit", type=int, default=0, choices=(0, 1))
    parser.add_argument("--only", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--measured",
        default=None,
        help="re-score the measurements of an earlier --json file against "
        "the current planner instead of measuring again",
    )
    args = parser.parse_args(argv)
    earlier = {}
    if args.measured:
        with open(args.measured) as f:
            earlier = {row["name"]: row for row in json.load(f)}
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    mib = 1024 * 1024
    rows = []
    print(
        f"{'configuration':<40}{'measured':>10}{'planned':>10}{'error':>8}"
        f"{'step meas.':>12}{'step plan':>11}{'error':>8}"
    )
    for config in CONFIGS:
        if args.only and args.only not in config["name"]:
            continue
        config = dict(config, jit=bool(args.jit))
        if args.measured:
            if config["name"] not in earlier:
                continue
            row = earlier[config["name"]]
            measured = {
                "peak": row["measured_peak"],
                "live_before_step": row["measured_peak"] - row["measured_step"],
                "weights": row["weights"],
                "seconds": row["seconds"],
            }
        else:
            measured = run_config(config)
        planned = estimate(config)
        step = measured["peak"] - measured["live_before_step"]
        row = {
            "name": config["name"],
            "jit_compile": config["jit"],
            "measured_peak": measured["peak"],
            "planned_total": planned["total"],
            "total_error": planned["total"] / measured["peak"] - 1,
            "measured_step": step,
            "planned_step": planned["step"],
            "step_error": planned["step"] / step - 1,
            "weights": measured["weights"],
            "seconds": measured["seconds"],
        }
        rows.append(row)
        print(
            f"{config['name']:<40}{measured['peak'] / mib:>9.0f}M"
            f"{planned['total'] / mib:>9.0f}M{row['total_error']:>+8.0%}"
            f"{step / mib:>11.0f}M{planned['step'] / mib:>10.0f}M"
            f"{row['step_error']:>+8.0%}",
            flush=True,
        )
    if rows:
        worst = max(abs(r["total_error"]) for r in rows)
        worst_step = max(abs(r["step_error"]) for r in rows)
        print(
            f"largest error: {worst:.0%} on the total, {worst_step:.0%} on "
            "the batch-dependent part (activations + working set)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
