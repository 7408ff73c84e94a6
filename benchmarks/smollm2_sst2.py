"""`keras-prompt tune --preset smollm2` on GLUE SST-2: a decoder-only model
prompt-tuned on the text-to-text pairs, scored on its greedy continuations.

SmolLM2-135M-Instruct (the `keras-prompt[smollm2]` extra, converted once
from its 4-bit GGUF file into float32) with a 20-token class-label prompt,
Adafactor at 0.3 (or `--optimizer` / `--learning-rate`) and the given steps,
batch size and input length, each configuration in its own process: a
shallow prompt (the input only) and deep prompts (`--deep`: a prompt at each
of the 30 decoder layers), on the same batches (same seed). Prints for each
the trainable parameters, the dev accuracy (exact match of the stripped
continuation with "positive" / "negative"), the training time (steps only:
the evaluation is timed apart), the evaluation time and the peak resident
memory of the process.

    TFDS_DATA_DIR=../shared/tfds python benchmarks/smollm2_sst2.py
    # --steps 20 --max-eval-examples 64 --depths shallow for a quick look
"""

import argparse
import json
import os
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


def tune(args, folder, depth):
    output = os.path.join(folder, depth)
    command = [sys.executable, "-c", CHILD, "tune", "--preset", "smollm2"]
    command += ["--deep" if depth == "deep" else "--no-deep"]
    for name in ("steps", "batch_size", "sequence_length", "seed"):
        command += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    command += ["--checkpoint-every", "0", "--output", output]
    if args.optimizer:
        command += ["--optimizer", args.optimizer]
    if args.learning_rate:
        command += ["--learning-rate", str(args.learning_rate)]
    if args.max_eval_examples:
        command += ["--max-eval-examples", str(args.max_eval_examples)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
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
    return info, peak / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--max-eval-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--optimizer", default=None, help="adam or adafactor (tune's default)"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="tune's default"
    )
    parser.add_argument(
        "--depths",
        default="shallow,deep",
        help="comma-separated: shallow (the input prompt only) and/or deep",
    )
    args = parser.parse_args()
    depths = [d.strip() for d in args.depths.split(",") if d.strip()]
    if not depths or set(depths) - {"shallow", "deep"}:
        raise SystemExit(f"--depths: shallow and/or deep, not {depths}")
    print(
        f"SmolLM2-135M-Instruct, SST-2: {args.steps} steps of "
        f"{args.batch_size}, P=20, inputs <= {args.sequence_length} tokens, "
        f"seed {args.seed}, {args.optimizer or 'default optimizer'} at "
        f"{args.learning_rate or 'its default learning rate'}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for depth in depths:
            info, peak_mb = tune(args, folder, depth)
            print(
                f"{depth:<8} {info['trainable_parameters']:>9,} trained: "
                f"dev accuracy {info['validation_accuracy']:.4f} on "
                f"{info['validation_examples']} examples, train "
                f"{info['train_seconds']:.1f} s "
                f"({args.steps / info['train_seconds']:.2f} steps/s), eval "
                f"{info['eval_seconds']:.1f} s, peak RSS {peak_mb:,.0f} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
