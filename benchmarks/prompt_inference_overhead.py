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

_measure.setup_environment()

from train_step_cost import MINILM  # noqa: E402
from train_step_cost import T5_SMALL  # noqa: E402
from train_step_cost import T5_TINY  # noqa: E402

GOAL = 1.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="t5,minilm")
    parser.add_argument("--prompt-lengths", default="1,20,100")
    parser.add_argument("--t5-batch", type=int, default=8)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--t5-target", type=int, default=8)
    parser.add_argument("--minilm-batch", type=int, default=32)
    parser.add_argument("--minilm-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--jit", default="off,on")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompt_lengths = "20"
        args.t5_batch, args.t5_input, args.t5_target = 2, 32, 4
        args.minilm_batch, args.minilm_length = 4, 32
        args.repeats, args.jit = 3, "off"
    args.prompt_lengths = [int(p) for p in args.prompt_lengths.split(",")]
    return args


def t5_setup(args):
    import keras_hub
    import numpy as np

    import keras_prompt

    config = T5_TINY if args.quick else T5_SMALL
    keras_prompt.set_random_seed(0)
    backbone = keras_hub.models.T5Backbone(**config)
    rng = np.random.default_rng(0)
    vocab = config["vocabulary_size"]
    b, s, t = args.t5_batch, args.t5_input, args.t5_target

    def inputs(length):
        return {
            "encoder_token_ids": rng.integers(2, vocab, (b, length), "int32"),
            "encoder_padding_mask": np.ones((b, length), "bool"),
            "decoder_token_ids": rng.integers(2, vocab, (b, t), "int32"),
            "decoder_padding_mask": np.ones((b, t), "bool"),
        }

    def macs(prompt_length):
        return _measure.t5_forward_macs(config, s + prompt_length, t)

    name = "T5 2-layer tiny" if args.quick else "T5 1.1-small-shaped"
    title = f"{name} (batch {b}, input {s}, target {t})"
    return backbone, inputs, macs, s, title


def minilm_setup(args):
    import keras_hub
    import numpy as np

    from keras_prompt.pretrained import minilm_preset_dir

    backbone = keras_hub.models.BertBackbone.from_preset(minilm_preset_dir())
    rng = np.random.default_rng(0)
    b, length = args.minilm_batch, args.minilm_length

    def inputs(positions):
        token_ids = rng.integers(1000, 30522, (b, positions), "int32")
        token_ids[:, 0], token_ids[:, -1] = 101, 102
        return {
            "token_ids": token_ids,
            "segment_ids": np.zeros((b, positions), "int32"),
            "padding_mask": np.ones((b, positions), "bool"),
        }

    def macs(prompt_length):
        return _measure.bert_forward_macs(MINILM, length + prompt_length)

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
    for jit in [j.strip() for j in args.jit.split(",") if j.strip()]:
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
            ratio = _measure.paired_ratio(wall[p], wall[0])
            simple = (length + p) / length
            flops = _measure.forward_bound(macs(0), macs(p))
            rows.append(
                [
                    f"jit {jit}",
                    p,
                    _measure.describe(wall[p]),
                    f"{ratio:.3f}",
                    f"{_measure.paired_ratio(cpu[p], cpu[0]):.3f}",
                    f"{simple:.3f}",
                    f"{flops:.3f}",
                    f"{_measure.paired_ratio(wall[-p], wall[0]):.3f}",
                    f"{_measure.paired_ratio(wall[p], wall[-p]):.3f}",
                    "yes" if ratio <= GOAL * simple else "no",
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
    print(_measure.machine_line())
    for family in [f.strip() for f in args.models.split(",") if f.strip()]:
        run_family(args, family)
    print()
    print(_measure.machine_line())


if __name__ == "__main__":
    main()
