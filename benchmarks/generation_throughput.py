"""Generation throughput with the key/value cache, with and without a prompt.

- seq2seq: `PromptSeq2SeqLM` vs keras-hub's `T5Seq2SeqLM` on the same T5
  backbone object (T5 1.1-small-shaped, random weights). The prompt enters
  the encoder once; the decoder's cross-attention cache spans it.
- causal: `PromptCausalLM` vs keras-hub's `GPT2CausalLM` on the same small
  random GPT-2 backbone. The prompt is written into the self-attention
  cache by the prefill pass, never recomputed per token.

Both sides use greedy decoding, no stop token (every row generates the
full length) and the compiled `generate_function` on token ids (what
`generate` runs between its pre- and post-processing). They are timed in
alternation in this process after warm-up, with `jit_compile` off and on.
Each side is run for 1 and for N new tokens: the difference gives the
per-token decode time (the cached step), the 1-token run the prefill.
"first call" is the first N-token call: tracing (and XLA compilation).

    python benchmarks/generation_throughput.py          # < 10 min here
    python benchmarks/generation_throughput.py --quick  # < 1 min
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _measure  # noqa: E402

_measure.setup_environment()

from train_step_cost import T5_SMALL  # noqa: E402
from train_step_cost import T5_TINY  # noqa: E402

GPT2_SMALL = dict(
    vocabulary_size=50257,
    num_layers=4,
    num_heads=4,
    hidden_dim=256,
    intermediate_dim=1024,
    max_sequence_length=512,
)
GPT2_TINY = dict(GPT2_SMALL, vocabulary_size=512, num_layers=2, hidden_dim=64)
GPT2_TINY.update(intermediate_dim=128, num_heads=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="seq2seq,causal")
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--gpt2-input", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--jit", default="off,on")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.t5_input, args.gpt2_input = 2, 16, 16
        args.new_tokens, args.prompt_length = 8, 4
        args.repeats, args.jit = 3, "off"
    return args


# -- models and inputs --------------------------------------------------------
def seq2seq_models(args):
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    backbone = keras_hub.models.T5Backbone(
        **(T5_TINY if args.quick else T5_SMALL)
    )
    plain = keras_hub.models.T5Seq2SeqLM(backbone)
    prompt = keras_prompt.PromptSeq2SeqLM(
        keras_prompt.FrozenBackbone(backbone, prompt_length=args.prompt_length)
    )
    return plain, prompt


def seq2seq_inputs(args, model, new_tokens):
    return _measure.t5_generate_inputs(
        args.batch, args.t5_input, new_tokens, model.backbone.vocabulary_size
    )


def causal_models(args):
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        **(GPT2_TINY if args.quick else GPT2_SMALL)
    )
    plain = keras_hub.models.GPT2CausalLM(backbone)
    prompt = keras_prompt.PromptCausalLM(
        keras_prompt.FrozenBackbone(backbone, prompt_length=args.prompt_length)
    )
    return plain, prompt


def causal_inputs(args, model, new_tokens):
    import numpy as np

    rng = np.random.default_rng(0)
    vocab = model.backbone.vocabulary_size
    b, s = args.batch, args.gpt2_input
    token_ids = np.zeros((b, s + new_tokens), "int32")
    token_ids[:, :s] = rng.integers(2, vocab, (b, s), "int32")
    mask = np.zeros((b, s + new_tokens), "bool")
    mask[:, :s] = True
    return {"token_ids": token_ids, "padding_mask": mask}


FAMILIES = {
    "seq2seq": (seq2seq_models, seq2seq_inputs, "T5Seq2SeqLM"),
    "causal": (causal_models, causal_inputs, "GPT2CausalLM"),
}


def generate_runner(model, inputs, jit):
    """One compiled generation over `inputs` (token ids), no stop token."""
    import tensorflow as tf

    inputs = _measure.to_tensors(inputs)
    function = tf.function(model.generate_step, jit_compile=jit)

    def run():
        outputs = function(inputs, stop_token_ids=None)
        ids = [t for t in tf.nest.flatten(outputs) if t.dtype.is_integer]
        return int(tf.reduce_sum(ids[0]))

    return run


def run_family(args, family):
    build, make_inputs, plain_name = FAMILIES[family]
    plain, prompt = build(args)
    for model in (plain, prompt):
        model.compile(sampler="greedy")
    title = (
        f"{plain_name} vs {type(prompt).__name__} (batch {args.batch}, "
        f"prompt {args.prompt_length}, {args.new_tokens} new tokens)"
    )
    print()
    print(f"== {title}")
    for model in (plain, prompt):
        function = model.make_generate_function()
        print(
            f"   {type(model).__name__}.generate() compiles with jit_compile="
            f"{getattr(function, '_jit_compile', None)} by default here "
            f"(model.jit_compile={model.jit_compile})"
        )
    models = {"plain": plain, "prompt": prompt}
    rows = []
    for jit in [j.strip() for j in args.jit.split(",") if j.strip()]:
        on = jit == "on"
        runners, counters = {}, {}
        for name, model in models.items():
            counters[name] = _measure.TraceCounter(model, "generate_step")
            for tokens in (1, args.new_tokens):
                inputs = make_inputs(args, model, tokens)
                runners[(name, tokens)] = generate_runner(model, inputs, on)
        first = {}
        for key, runner in runners.items():  # trace (and XLA compile)
            start = time.perf_counter()
            runner()
            first[key] = time.perf_counter() - start
        wall, _ = _measure.interleaved_times(
            runners, repeats=args.repeats, warmup=max(args.warmup - 1, 0)
        )
        result = {}
        for name in models:
            full = _measure.median(wall[(name, args.new_tokens)])
            prefill = _measure.median(wall[(name, 1)])
            per_token = (full - prefill) / max(args.new_tokens - 1, 1)
            tokens_per_s = args.batch * args.new_tokens / full
            result[name] = (full, prefill, per_token, tokens_per_s)
        for name in models:
            full, prefill, per_token, tokens_per_s = result[name]
            base = result["plain"]
            rows.append(
                [
                    f"jit {jit}",
                    name,
                    f"{tokens_per_s:.1f}",
                    f"{tokens_per_s / base[3]:.3f}",
                    f"{prefill * 1e3:.1f}",
                    f"{prefill / base[1]:.3f}",
                    f"{per_token * 1e3:.2f}",
                    f"{per_token / base[2]:.3f}",
                    f"{first[(name, args.new_tokens)]:.1f}",
                    f"{counters[name].count}/2",
                ]
            )
    headers = [
        "generate",
        "model",
        "tokens/s",
        "vs plain",
        "prefill ms",
        "vs plain",
        "ms/token",
        "vs plain",
        "first call s",
        "traces/shapes",
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
