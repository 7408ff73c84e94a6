"""bfloat16 vs float32 frozen weights: `keras-prompt tune` on the real
all-MiniLM-L6-v2 and GLUE SST-2, seeds 0 and 1, interleaved in one run.

Each configuration is the README's main job (P=20, class-label init, mean
head, Adam 1e-2, 1,500 steps of 32, all 872 dev sentences; deep prompts, as
`tune` defaults to, or `--no-deep` for the input prompt alone, as measured
in docs/performance.md) with `--dtype float32` or `--dtype bfloat16`, in
its own process; the same seed draws
the same batches for both. Prints the training time (steps only: the
evaluation is timed apart), the steps per second, the peak resident
memory of the process and the dev accuracy, and the ratios.

With `--noise-floor` each seed also runs float32 on TensorFlow's Eigen
kernels instead of oneDNN's (`TF_ENABLE_ONEDNN_OPTS=0`): the same float32
arithmetic summed in another order, the smallest change a run can see
(another machine, another TensorFlow build). How far its accuracy moves
from the oneDNN float32 run is how far any change of rounding moves one
run, bfloat16's included. The summary gives each configuration's mean
and range over the seeds.

    TFDS_DATA_DIR=../shared/tfds python benchmarks/bfloat16_minilm.py
    # --steps 30 --max-eval-examples 200 for a quick look
    # --seeds 0 1 2 3 4 --noise-floor: the comparison over five seeds
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = (
    "import resource, sys\n"
    "from keras_prompt.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


# label -> (--dtype, extra environment)
CONFIGURATIONS = {
    "float32": ("float32", {}),
    "bfloat16": ("bfloat16", {}),
    "float32 Eigen": ("float32", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
}


def tune(label, seed, steps, max_eval, folder, deep):
    dtype, extra = CONFIGURATIONS[label]
    output = os.path.join(folder, f"{label.replace(' ', '-')}-{seed}")
    command = [
        sys.executable,
        "-c",
        CHILD,
        "tune",
        "--dtype",
        dtype,
        "--seed",
        str(seed),
        "--output",
        output,
    ]
    if steps:
        command += ["--steps", str(steps)]
    if max_eval:
        command += ["--max-eval-examples", str(max_eval)]
    if deep is not None:
        command += ["--deep" if deep else "--no-deep"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)
    peak = next(
        int(line.split()[1])
        for line in result.stdout.splitlines()
        if line.startswith("PEAK_RSS_KB")
    )
    with open(os.path.join(output, "run.json")) as f:
        info = json.load(f)
    return {
        "train_seconds": info["train_seconds"],
        "steps_per_second": info["steps"] / info["train_seconds"],
        "peak_rss_mb": peak / 1024,
        "accuracy": info["validation_accuracy"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, help="training steps (default: tune's, 1500)"
    )
    parser.add_argument("--max-eval-examples", type=int)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--deep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deep prompts or the input prompt (default: tune's, deep)",
    )
    parser.add_argument(
        "--noise-floor",
        action="store_true",
        help="also run float32 on TensorFlow's Eigen kernels (see above)",
    )
    args = parser.parse_args()
    labels = list(CONFIGURATIONS)[: 3 if args.noise_floor else 2]
    results = {}  # (seed, label) -> row
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for label in labels:
                row = tune(
                    label,
                    seed,
                    args.steps,
                    args.max_eval_examples,
                    folder,
                    args.deep,
                )
                results[seed, label] = row
                print(
                    f"seed {seed} {label:13s}: train "
                    f"{row['train_seconds']:6.1f} s "
                    f"({row['steps_per_second']:.2f} steps/s), peak RSS "
                    f"{row['peak_rss_mb']:,.0f} MB, dev accuracy "
                    f"{row['accuracy']:.4f}",
                    flush=True,
                )
    print()
    print(
        "| seed | float32 steps/s | bfloat16 steps/s | speed-up | float32 "
        "dev | bfloat16 dev | difference (points) | peak RSS f32 / bf16 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        f32, bf16 = results[seed, "float32"], results[seed, "bfloat16"]
        print(
            f"| {seed} | {f32['steps_per_second']:.2f} | "
            f"{bf16['steps_per_second']:.2f} | "
            f"{bf16['steps_per_second'] / f32['steps_per_second']:.2f}x | "
            f"{f32['accuracy']:.4f} | {bf16['accuracy']:.4f} | "
            f"{100 * (bf16['accuracy'] - f32['accuracy']):+.2f} | "
            f"{f32['peak_rss_mb']:,.0f} / {bf16['peak_rss_mb']:,.0f} MB |"
        )
    print()
    accuracy = {key: row["accuracy"] for key, row in results.items()}
    for label in labels:
        values = [accuracy[seed, label] for seed in args.seeds]
        line = (
            f"{label:13s}: dev accuracy mean {statistics.mean(values):.4f}, "
            f"range {min(values):.4f}-{max(values):.4f} over seeds "
            f"{', '.join(map(str, args.seeds))}"
        )
        if label != "float32":
            differences = [
                100 * (accuracy[seed, label] - accuracy[seed, "float32"])
                for seed in args.seeds
            ]
            line += (
                "; minus float32 per seed (points): "
                + ", ".join(f"{d:+.2f}" for d in differences)
                + f", mean {statistics.mean(differences):+.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
