"""`keras-prompt demo`: prompt tuning end to end on a toy T5, in a minute.

Pretrains a tiny T5 on two prefixed tasks (`keras_prompt.toy`), freezes it,
trains a 4-vector prompt that steers the frozen model to one task without
its prefix, generates with the prompt and writes the prompt file.
"""

import json
import os
import time


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="prompt-tune a toy T5 made on the spot (no downloads)",
        description=__doc__,
    )
    parser.add_argument("--output", default="prompt_out/demo")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def _accuracy(outputs, targets):
    return sum(o.strip() == t for o, t in zip(outputs, targets)) / len(targets)


def run(args):
    import numpy as np

    from keras_prompt import FrozenBackbone
    from keras_prompt import PromptSeq2SeqLM
    from keras_prompt import initializers
    from keras_prompt import toy
    from keras_prompt.optimizers import Adafactor
    from keras_prompt.prompt_files import atomic_write_bytes

    os.makedirs(args.output, exist_ok=True)
    start = time.time()
    print(
        "1/4 Pretraining a toy T5: 'color: <sentence>' -> its color, "
        "'animal: <sentence>' and plain '<sentence>' -> its animal"
    )
    backbone, preprocessor = toy.pretrained_toy_t5(seed=args.seed, verbose=2)

    print("2/4 Freezing it and adding a soft prompt (the color words)")
    # The paper's class-label init, one position per color, and its
    # Adafactor at a step suited to the toy: its embeddings have entries of
    # rms ~1, so lr 0.3 (sized for real T5 embeddings) oscillates.
    frozen = FrozenBackbone(
        backbone,
        prompt_length=len(toy.COLORS),
        initializer=initializers.ClassLabel(
            labels=list(toy.COLORS), tokenizer=preprocessor.tokenizer
        ),
    )
    model = PromptSeq2SeqLM(frozen, preprocessor)
    model.compile(
        optimizer=Adafactor(0.1, decay_rate=0.8, weight_decay_rate=1e-5),
        jit_compile=True,
    )
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    print(
        f"    trainable parameters: {trainable:,} of {total:,} "
        f"({100 * trainable / total:.2f}%)"
    )

    print("3/4 Training the prompt alone: plain sentence -> its color")
    rng = np.random.default_rng(args.seed + 1)
    inputs, targets = toy.task_pairs(rng, 256, prefix="color:")
    test_inputs, test_targets = toy.task_pairs(rng, 64, prefix="color:")
    before = _accuracy(model.generate(test_inputs), test_targets)
    model.fit(inputs, targets, batch_size=32, epochs=args.epochs, verbose=2)
    outputs = model.generate(test_inputs)
    after = _accuracy(outputs, test_targets)
    for text, out in list(zip(test_inputs, outputs))[:3]:
        print(f"    {text!r} -> {out.strip()!r}")
    print(f"    held-out accuracy: {before:.2f} before, {after:.2f} after")

    print("4/4 Saving the prompt file")
    path = os.path.join(args.output, "color.prompt.safetensors")
    model.save_prompts(path, task_names=["color"])
    run_info = {
        "task": "toy color",
        "prompt_length": len(toy.COLORS),
        "epochs": args.epochs,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "accuracy_before": before,
        "accuracy_after": after,
        "prompt_file": path,
        "prompt_file_bytes": os.path.getsize(path),
        "seconds": round(time.time() - start, 1),
    }
    atomic_write_bytes(
        os.path.join(args.output, "run.json"),
        json.dumps(run_info, indent=2).encode(),
    )
    print(
        f"    wrote {path} ({run_info['prompt_file_bytes']:,} bytes) and "
        f"run.json in {run_info['seconds']} s"
    )
    return 0
