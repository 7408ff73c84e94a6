"""Forward-pass overhead of a soft prompt over the plain backbone.

For each prompt length P, a `FrozenBackbone` wraps the *same* backbone
object (the same weights) as the plain keras-hub backbone it is compared
with; both forward passes (`training=False`, under `tf.function`, with
`jit_compile` off and on) are timed in alternation in this process, after
warm-up. The prompt makes the sequence (L + P) / L longer, so that is the
cost a prompt cannot beat; we print the measured ratio next to it and next
to the FLOP-model ratio (`_measure.forward_bound`: attention grows as
(L + P)^2, and for T5 the decoder, which does not see a longer input except
in cross-attention, does not grow at all). The goal is to stay within 5%
of the (L + P) / L bound. "plain L+P" is the plain backbone on P more real
tokens (over the plain one on L), and "vs plain L+P" the prompted forward
over it: a prompt should cost what as many more tokens cost, no more.

Models: a T5 1.1-small-shaped T5 built at random (the encoder and decoder,
`--t5-target` decoder tokens) and the real all-MiniLM-L6-v2.

    python benchmarks/prompt_inference_overhead.py          # < 10 min here
    python benchmarks/prompt_inference_overhead.py --quick  # < 1 min
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _measure  # noqa: E402
import _models  # noqa: E402

_measure.setup_environment()

GOAL = _models.GOAL_FORWARD


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="t5,minilm")
    parser.add_argument("--prompt-lengths", default="1,20,100")
    parser.add_argument("--t5-batch", type=int, default=8)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--t5-target", type=int, default=8)
    parser.add_argument("--minilm-batch", type=int, default=32)
    parser.add_argument("--minilm-length", type=int, default=64)
    _measure.timing_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.prompt_lengths = "20"
        args.t5_batch, args.t5_input, args.t5_target = 2, 32, 4
        args.minilm_batch, args.minilm_length = 4, 32
        args.repeats, args.jit = 3, "off"
    args.prompt_lengths = [int(p) for p in args.prompt_lengths.split(",")]
    return args


def t5_setup(args):
    import numpy as np

    config = _models.t5_config(args.quick)
    backbone = _models.t5_backbone(args.quick)
    rng = np.random.default_rng(0)
    vocab = config["vocabulary_size"]
    b, s, t = args.t5_batch, args.t5_input, args.t5_target

    def inputs(length):
        return _models.t5_inputs(rng, vocab, b, length, t)

    name = "T5 2-layer tiny" if args.quick else "T5 1.1-small-shaped"
    title = f"{name} (batch {b}, input {s}, target {t})"
    return backbone, inputs, _models.t5_macs(config, s, t), s, title


def minilm_setup(args):
    import numpy as np

    backbone = _models.minilm_pretrained()
    rng = np.random.default_rng(0)
    b, length = args.minilm_batch, args.minilm_length
    vocab = _models.MINILM["vocabulary_size"]

    def inputs(positions):
        return _models.minilm_inputs(rng, vocab, b, positions)

    macs = _models.minilm_macs(_models.MINILM, length)
    title = f"all-MiniLM-L6-v2 (batch {b}, length {length})"
    return backbone, inputs, macs, length, title


SETUPS = {"t5": t5_setup, "minilm": minilm_setup}


def forward(model, jit):
    import tensorflow as tf

    return tf.function(
        lambda inputs: model(inputs, training=False), jit_compile=jit
    )


def run_family(args, family):
    from keras_prompt import FrozenBackbone

    backbone, inputs, macs, length, title = SETUPS[family](args)
    print()
    print(f"== {title}")
    prompted = {
        p: FrozenBackbone(backbone, prompt_length=p)
        for p in args.prompt_lengths
    }
    rows = []
    for jit in _measure.names(args.jit):
        plain = forward(backbone, jit == "on")
        runners = {0: _measure.forward_runner(plain, inputs(length))}
        for p, model in prompted.items():
            runners[p] = _measure.forward_runner(
                forward(model, jit == "on"), inputs(length)
            )
            # The plain backbone on P more real tokens: what the same number
            # of positions costs without a prompt.
            runners[-p] = _measure.forward_runner(plain, inputs(length + p))
        wall, cpu = _measure.interleaved_times(
            runners, repeats=args.repeats, warmup=args.warmup
        )
        rows.append([f"jit {jit}", 0, _measure.describe(wall[0])] + [""] * 7)
        for p in prompted:
            r = _measure.forward_ratios(
                wall[0], wall[p], wall[-p], length, p, macs, GOAL
            )
            rows.append(
                [
                    f"jit {jit}",
                    p,
                    _measure.describe(wall[p]),
                    f"{r['ratio']:.3f}",
                    f"{_measure.paired_ratio(cpu[p], cpu[0]):.3f}",
                    f"{r['bound']:.3f}",
                    f"{r['flop_ratio']:.3f}",
                    f"{r['plain_extended_ratio']:.3f}",
                    f"{r['vs_plain_extended']:.3f}",
                    "yes" if r["met"] else "no",
                ]
            )
    headers = [
        "forward",
        "P",
        "prompted time [IQR]",
        "wall ratio",
        "CPU ratio",
        "(L+P)/L",
        "FLOP ratio",
        "plain L+P",
        "vs plain L+P",
        f"<= {GOAL} (L+P)/L",
    ]
    print(_measure.table(headers, rows))


def main(argv=None):
    args = parse_args(argv)
    _measure.run_families(args.models, lambda f: run_family(args, f))


if __name__ == "__main__":
    main()
