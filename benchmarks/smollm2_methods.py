"""SmolLM2-135M-Instruct on SST-2 at equal training time: the input prompt,
deep prompts and keras-hub LoRA, scored by label scoring on all dev.

Question: on a decoder-only model, how do deep prompts compare with the
input prompt (they win on MiniLM, lost 21-30 points here in 60-step
trials), and both with the LoRA a keras-hub user would pick instead?

Configurations (`--configs`), all on SmolLM2-135M-Instruct (the
`keras-prompt[smollm2]` extra), trained on SST-2's text-to-text pairs as
`keras-prompt tune --preset smollm2` trains them ("sst2 sentence: ..."
continued by " positive" / " negative" and the end token; the loss on the
target tokens only), batches of `--batch-size`, inputs of at most
`--sequence-length` tokens:

- `input`, `deep`, `deep_add`: a `PromptCausalLM` with a 20-token
  class-label prompt (`deep`: a prompt at each of the 30 layers replacing
  the hidden states, started by propagation; `deep_add`: added to them,
  `PromptConfig(deep_mode="add")`, started at zero), the frozen weights in
  `--dtype` (default bfloat16), Adam at `--prompt-lr`.
- `lora4`, `lora8`: keras-hub's `LlamaCausalLM` on the float32 backbone
  with `backbone.enable_lora(rank)` (keras-hub's default targets, the
  query and value projections), Adam at `--lora-lr`.

Every configuration of a seed trains on the same shuffled batches for
`--seconds` of training (wall clock, or `--clock cpu`: the process's CPU
time), in its own process, and is scored on all 872 dev sentences every
`--eval-every-seconds` and at the end by label scoring (the
log-likelihood of " negative" and " positive", end token included: the
better one is the answer; `keras_prompt.tasks.label_scoring`; the LoRA
model through the same code). Prints trained parameters, steps, the dev
curve, time and peak memory per configuration.

    flock /work/cpu.lock python benchmarks/smollm2_methods.py \\
        --seconds 600 --eval-every-seconds 300 --output /tmp/smollm2.json
    python benchmarks/smollm2_methods.py --seconds 10 \\
        --eval-every-seconds 0 --max-dev 16   # smoke test

Measured (`--seconds 180 --eval-every-seconds 0`, seed 0, 872 dev):
input prompt 0.804, deep prompts 0.516, LoRA rank 8 0.806
(docs/performance.md, "SmolLM2 at equal time"). `--seconds 320 --clock
cpu`, seeds 0-2: the input prompt 0.792 (Adam 1e-2 and 3e-3 alike),
additive deep prompts 0.818 at `--prompt-lr 3e-3` (0.769 at 1e-2).
"""

import argparse
import json
import sys
import time
import types

from _sst2 import DEFAULT_DATA_DIR
from _sst2 import count_weights
from _sst2 import emit
from _sst2 import mean_std
from _sst2 import peak_rss_mb
from _sst2 import run_all

from keras_prompt.tasks.label_scoring import LabelScoringMixin

LABELS = ("negative", "positive")
PROMPT_CONFIGS = {
    "input": {"deep": False},
    "deep": {"deep": True},
    "deep_add": {"deep": True, "deep_mode": "add"},
}
LORA_CONFIGS = {"lora4": 4, "lora8": 8}
CONFIGS = tuple(PROMPT_CONFIGS) + tuple(LORA_CONFIGS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--configs", nargs="+", default=["input", "deep", "lora8"])
    add("--seeds", nargs="+", type=int, default=[0])
    add("--seconds", type=float, default=600.0, help="training time each")
    add("--clock", choices=("wall", "cpu"), default="wall")
    add("--eval-every-seconds", type=float, default=300.0)
    add("--batch-size", type=int, default=8)
    add("--sequence-length", type=int, default=64)
    add("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    add("--prompt-lr", type=float, default=1e-2)
    add("--lora-lr", type=float, default=1e-3)
    add("--max-steps", type=int, default=20_000)
    add("--max-dev", type=int, default=None, help="smoke tests: fewer")
    add("--data-dir", default=DEFAULT_DATA_DIR)
    add("--output", default=None, help="write every result to this JSON")
    add("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs: unknown {unknown}; known: {CONFIGS}")
    for name in ("seconds", "batch_size", "sequence_length", "max_steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# -- one configuration, in a worker process ----------------------------------
def prompt_model(config):
    """A `PromptCausalLM` built as `keras-prompt tune` builds it."""
    from keras_prompt.convert.presets import load_backbone
    from keras_prompt.layers.prompt_config import PromptConfig
    from keras_prompt.pretrained import smollm2_preset_dir
    from keras_prompt.training import Recipe

    preset = smollm2_preset_dir()
    prompt = PROMPT_CONFIGS[config["config"]]
    recipe = Recipe(
        task="glue/sst2",
        prompt_length=20,
        deep=prompt["deep"],
        prompt_config=PromptConfig(length=20, **prompt),
        optimizer_name="adam",
        learning_rate=config["prompt_lr"],
        batch_size=config["batch_size"],
        steps=1,
        eval_interval=1,
        encoder_sequence_length=config["sequence_length"],
        decoder_sequence_length=16,
        seed=config["seed"],
    )
    backbone = load_backbone(preset, dtype=config["dtype"])
    model = recipe.build_model(preset, backbone=backbone)
    return model, recipe, config["prompt_lr"]


class LoraLM(LabelScoringMixin):
    """keras-hub's `LlamaCausalLM` with LoRA, trained and scored on the
    packing of a `PromptCausalLM` (`packer`): the same rows, the same
    label scoring."""

    run_eagerly = False
    # Label scoring asks the model for its prompt bank: this one has none.
    backbone = types.SimpleNamespace(num_prompts=1)

    def __init__(self, lm, packer):
        self.lm = lm
        self.packer = packer

    @property
    def preprocessor(self):
        return self.packer.preprocessor

    def pack_label_pairs(self, inputs, targets):
        return self.packer.pack_text_pairs(inputs, targets)

    def label_logits(self, x, positions):
        from keras import ops

        backbone = self.lm.backbone
        hidden = backbone(x, training=False)
        hidden = ops.take_along_axis(
            hidden, ops.expand_dims(positions, -1), axis=1
        )
        return backbone.token_embedding(hidden, reverse=True)


def lora_model(config, packer):
    import keras_hub

    from keras_prompt.convert.presets import load_backbone
    from keras_prompt.pretrained import smollm2_preset_dir

    backbone = load_backbone(smollm2_preset_dir(), dtype="float32")
    backbone.enable_lora(LORA_CONFIGS[config["config"]])
    lm = keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)
    return LoraLM(lm, packer), config["lora_lr"]


def run_config(config):
    """Trains one configuration for the time budget; returns its record."""
    import keras
    import numpy as np

    import keras_prompt

    setup = time.perf_counter()
    seed = config["seed"]
    keras_prompt.set_random_seed(seed)
    prompt, recipe, rate = prompt_model(
        dict(config, config="input")
        if config["config"] in LORA_CONFIGS
        else config
    )
    data_dir = config["data_dir"]
    train = recipe.examples(prompt, "train", data_dir).examples
    dev = recipe.examples(prompt, "validation", data_dir, config["max_dev"])
    dev = dev.examples
    if config["config"] in LORA_CONFIGS:
        scorer, rate = lora_model(config, prompt)
        trained = scorer.lm
    else:
        scorer = trained = prompt
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trained.compile(
        optimizer=keras.optimizers.Adam(rate), loss=loss, jit_compile=False
    )
    order = np.random.default_rng(seed).permutation(len(train))
    batch_size = config["batch_size"]
    setup = time.perf_counter() - setup
    gold = np.array([LABELS.index(e.targets.strip()) for e in dev])

    def evaluate():
        wall = time.perf_counter()
        scores = scorer.score_labels(
            [e.inputs for e in dev], LABELS, batch_size=16
        )
        point = {
            "train_s": train_s,
            "step": step,
            "dev": float(np.mean(scores.argmax(-1) == gold)),
            "positive": float(np.mean(scores.argmax(-1) == 1)),
            "loss": sum(losses) / max(len(losses), 1),
        }
        losses.clear()
        timing["eval_s"] += time.perf_counter() - wall
        print(f"  {point}", file=sys.stderr, flush=True)
        return point

    budget, every = config["seconds"], config["eval_every_seconds"]
    next_eval = every if every > 0 else float("inf")
    train_s = train_cpu_s = 0.0
    step, losses, curve = 0, [], []
    timing = {"eval_s": 0.0}

    def spent():
        return train_cpu_s if config["clock"] == "cpu" else train_s

    while step < config["max_steps"] and spent() < budget:
        start = step * batch_size % len(train)
        rows = [train[i] for i in order[start : start + batch_size]]
        x, y, weights = prompt.pack_text_pairs(
            [e.inputs for e in rows], [e.targets for e in rows]
        )
        wall, cpu = time.perf_counter(), time.process_time()
        # `keras.Model`'s: the rows are already tokens, not strings for
        # the task's preprocessor.
        logs = keras.Model.train_on_batch(
            trained, x, y, sample_weight=weights, return_dict=True
        )
        train_s += time.perf_counter() - wall
        train_cpu_s += time.process_time() - cpu
        losses.append(float(logs["loss"]))
        step += 1
        if spent() >= next_eval and spent() < budget:
            curve.append(evaluate())
            while next_eval <= spent():
                next_eval += every
    curve.append(evaluate())
    return {
        "config": config["config"],
        "seed": seed,
        "learning_rate": rate,
        "trainable": count_weights(trained.trainable_weights),
        "steps": step,
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "eval_s": timing["eval_s"],
        "setup_s": setup,
        "dev_final": curve[-1]["dev"],
        "curve": curve,
        "peak_rss_mb": peak_rss_mb(),
        "dev_examples": len(dev),
    }


# -- the driver ---------------------------------------------------------------
def print_table(results):
    print(
        "\n| config | lr | seed | trained | steps | dev final | dev curve "
        "(train s: %) | train s | CPU s | eval s | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        curve = " ".join(
            f"{p['train_s']:.0f}s:{100 * p['dev']:.1f}" for p in r["curve"]
        )
        print(
            f"| {r['config']} | {r['learning_rate']:g} | {r['seed']} "
            f"| {r['trainable']:,} | {r['steps']} "
            f"| {100 * r['dev_final']:.1f} | {curve} | {r['train_s']:.0f} "
            f"| {r['train_cpu_s']:.0f} | {r['eval_s']:.0f} "
            f"| {r['peak_rss_mb'] / 1024:.2f} GB |"
        )
    for name in dict.fromkeys(r["config"] for r in results):
        runs = [100 * r["dev_final"] for r in results if r["config"] == name]
        if len(runs) > 1:
            mean, std = mean_std(runs)
            print(f"{name}: {mean:.1f} +- {std:.1f} over {len(runs)} seeds")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        emit(run_config(json.loads(args.worker)))
        return 0
    keys = (
        "seconds",
        "clock",
        "eval_every_seconds",
        "batch_size",
        "sequence_length",
        "dtype",
        "prompt_lr",
        "lora_lr",
        "max_steps",
        "max_dev",
        "data_dir",
    )

    def describe(result):
        return (
            f"{result['config']} seed {result['seed']}: dev "
            f"{100 * result['dev_final']:.1f}% after {result['steps']} steps"
        )

    results, wall = run_all(__file__, args, keys, describe)
    print_table(results)
    print(f"total wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
