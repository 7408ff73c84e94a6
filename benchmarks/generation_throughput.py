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
import _models  # noqa: E402

_measure.setup_environment()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="seq2seq,causal")
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--gpt2-input", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    _measure.timing_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.t5_input, args.gpt2_input = 2, 16, 16
        args.new_tokens, args.prompt_length = 8, 4
        args.repeats, args.jit = 3, "off"
    return args


# -- models and inputs --------------------------------------------------------
def seq2seq_models(args):
    backbone = _models.t5_backbone(args.quick)
    return tuple(
        _models.t5_task(backbone, method, args.prompt_length)
        for method in ("plain", "prompt")
    )


def causal_models(args):
    backbone = _models.gpt2_backbone(args.quick)
    return tuple(
        _models.gpt2_task(backbone, method, args.prompt_length)
        for method in ("plain", "prompt")
    )


def seq2seq_inputs(args, model, new_tokens):
    return _models.t5_generate_inputs(
        args.batch, args.t5_input, new_tokens, model.backbone.vocabulary_size
    )


def causal_inputs(args, model, new_tokens):
    return _models.gpt2_generate_inputs(
        args.batch, args.gpt2_input, new_tokens, model.backbone.vocabulary_size
    )


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
    for jit in _measure.names(args.jit):
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
        result = {
            name: _measure.generation_rates(
                wall[(name, args.new_tokens)],
                wall[(name, 1)],
                args.batch,
                args.new_tokens,
            )
            for name in models
        }
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
    _measure.run_families(args.models, lambda f: run_family(args, f))


if __name__ == "__main__":
    main()
