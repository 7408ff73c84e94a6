"""all-MiniLM-L6-v2 on SST-2 at equal training time: prompts vs LoRA vs
full fine-tuning.

Question: given the same wall-clock training time on this CPU, how does
prompt tuning compare with what a Keras user would otherwise pick -
keras-hub's LoRA (`backbone.enable_lora(rank)`) or fine-tuning every
weight - in dev accuracy, trained parameters and memory?

Configurations (`--configs`), all on all-MiniLM-L6-v2 (22.7M parameters)
with the same head - dropout 0.1 and a dense softmax layer on the mean of
the final hidden states over the attended positions (`PromptClassifier`'s
`pooling="mean"`; `_sst2.plain_classifier` for the configurations without
a prompt):

- prompt configurations, `PROMPT_CONFIGS`: a
  `keras_prompt.PromptClassifier.from_preset` with the keyword arguments
  of the table over `PROMPT_DEFAULTS` (P=20, class-label initialisation,
  mean pooling, as `keras-prompt tune` trains MiniLM), the frozen weights
  in `--dtype` (default bfloat16), Adam at the table's rate (`--prompt-lr`
  overrides it): `deep` (a prompt per layer, `tune`'s default),
  `prompt` (the input prompt only), `late3` (late prompts: deep prompts
  at layers 3-5, `start_layer=3`), `residual` (deep prompts through
  Residual Prompt Tuning's reparameterisation) and `deep_cosine` (`deep`
  with the rate on a cosine over the time budget). A new prompt method is one
  more row.
- `lora4`, `lora8`: keras-hub LoRA, `backbone.enable_lora(rank)` on a
  float32 backbone with keras-hub's default target layers (the query and
  value projections of every attention layer; their biases stay trainable,
  as keras-hub leaves them), Adam `--lora-lr`.
- `full`: every weight trains (float32), Adam `--full-lr`.
- `head`: the frozen float32 backbone, only the head trains (Adam
  `--head-lr`).

Data: the real GLUE SST-2 from the TFDS dir `../shared/tfds`. Each seed
shuffles the whole training split (67,349 sentences; reshuffled each pass)
into batches of `--batch-size` (length-bucketed as `keras-prompt tune`
does, each batch cut to its longest sentence, `--sequence-length` tokens
at most); every configuration of a seed trains on the same batch
sequence. Each configuration trains for `--seconds` of wall-clock training
time (the training steps alone; it stops at the first step past the
budget), is scored on all 872 dev sentences every `--eval-every-seconds`
of training time and at the end, and runs in its own Python process:
"peak RSS" is that process's high-water mark of resident memory (model,
data, training, evaluation), "CPU s" the process CPU time of the training
steps, "eval s" the wall time of the evaluations (not in the budget).

    flock /work/cpu.lock python benchmarks/methods_sst2.py \\
        --configs lora8 lora4 full --seconds 600 --eval-every-seconds 150 \\
        --seeds 0 --output /tmp/methods.json
    python benchmarks/methods_sst2.py --seconds 10 --eval-every-seconds 5 \\
        --max-dev 64 --max-train 2000   # smoke test, every configuration

Measured on the shared 2-core CPU (AMD EPYC with AVX512-BF16), seed 0,
`--seconds 600 --eval-every-seconds 150`, the `flock` command above with
`--lora-lr 1e-3 --full-lr 5e-5` (33 min in all). Other jobs not under the
lock (test suites, a training run) shared the cores: the 1-minute load
average was 2.2-3.2 over these runs, so the steps a configuration got in
its 600 s depend on the load as well as on its cost; "steps / CPU s" is
the steadier cost figure.

| config, lr | trained | steps | /s | /CPU s | dev | best | CPU s | eval | RSS |
|---|---|---|---|---|---|---|---|---|---|
| lora8, 1e-3 | 450,818 | 1,874 | 3.12 | 2.45 | 86.4 | 86.4 | 764 | 32 | 1.9 |
| lora4, 1e-3 | 228,098 | 2,479 | 4.13 | 2.42 | 86.9 | 87.5 | 1023 | 20 | 1.9 |
| full, 5e-5 | 22,713,986 | 1,434 | 2.39 | 1.64 | 87.6 | 88.3 | 877 | 26 | 2.4 |

(steps per second of training and per CPU second; dev accuracy % on all
872 sentences at the end and the best of the evaluations; CPU s of
training; eval: wall s of the evaluations; peak RSS in GB; 1-minute load
before / after training 3.1 / 3.2, 3.1 / 2.3, 2.2 / 2.7.) Dev at 150 /
300 / 450 / 600 s: lora8 85.1 / 85.7 / 85.9 / 86.4, lora4 84.4 / 86.2 /
87.5 / 86.9, full 85.7 / 88.3 / 87.4 / 87.6. LoRA rank 4 and 8 cost the
same per CPU second; rank 4's 32% more steps came from a lighter load.
All three reach 86% or more within 600 s. The prompt configurations were
not run at 600 s in this measurement, nor lora8 on seeds 1 and 2.

LoRA learning rate, lora8 seed 0, `--seconds 150 --eval-every-seconds
75` (dev at 75 / 150 s; steps): 3e-4 80.7 / 82.1 (381), 1e-3 82.7 / 85.6
(374), 2e-3 83.1 / 85.1 (462, at a lighter load); 1e-3, the best at
150 s, is `--lora-lr`'s default.

Trained parameters: Keras' LoRA on an `EinsumDense` factorises the kernel
along its last axis only; BERT's query and value kernels are (384, 12,
32), so rank r trains A (384, 12, r) and B (r, 32) per projection:
442,368 + 3,072 for rank 8 over the 12 projections, plus their 4,608
biases (keras-hub leaves them trainable) and the 770 of the head (a
LoRA on the 384 x 384 matrices would train 6,144 per projection at rank
8). `full` counts BERT's pooler (147,840 weights), which this head never
reads (Keras warns that it gets no gradients).

Prompt methods and LoRA in one run, 600 s of process CPU time each
(`--configs deep deep_cosine late3 residual lora8 --clock cpu --seconds
600 --eval-every-seconds 150 --seeds 0`), final dev accuracy: deep 84.3
(1,017 steps), deep_cosine 85.0 (1,095), late3 83.4 (1,811), residual
83.1 (1,037), lora8 87.3 (1,483); curves in docs/performance.md.
"""

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _sst2 import DEFAULT_DATA_DIR  # noqa: E402
from _sst2 import accuracy  # noqa: E402
from _sst2 import count_weights  # noqa: E402
from _sst2 import emit  # noqa: E402
from _sst2 import load_splits  # noqa: E402
from _sst2 import mean_std  # noqa: E402
from _sst2 import peak_rss_mb  # noqa: E402
from _sst2 import plain_classifier  # noqa: E402
from _sst2 import prompt_initializer  # noqa: E402
from _sst2 import run_all  # noqa: E402

#: What every prompt configuration passes to `PromptClassifier.from_preset`
#: unless its row says otherwise (`initializer` is a name of
#: `_sst2.INITIALIZERS`, resolved with the model's tokenizer and the seed).
PROMPT_DEFAULTS = {
    "prompt_length": 20,
    "initializer": "class_label",
    "pooling": "mean",
}
#: Prompt configurations: keyword arguments of
#: `PromptClassifier.from_preset` (over `PROMPT_DEFAULTS`; `dtype` defaults
#: to `--dtype`) and Adam's learning rate.
PROMPT_CONFIGS = {
    "deep": {"kwargs": {"deep": True}, "learning_rate": 1e-2},
    "prompt": {"kwargs": {"deep": False}, "learning_rate": 1e-2},
    # Late prompts: deep prompts at layers 3-5 of 6 (nothing below layer 3
    # takes part in the backward pass).
    "late3": {
        "kwargs": {"deep": True, "start_layer": 3},
        "learning_rate": 1e-2,
    },
    # `deep` with the learning rate on a cosine over the time budget (to
    # 0 at its end) instead of constant.
    "deep_cosine": {
        "kwargs": {"deep": True},
        "learning_rate": 1e-2,
        "schedule": "cosine",
    },
    # Residual Prompt Tuning's reparameterisation over the deep prompts.
    "residual": {
        "kwargs": {"deep": True, "reparameterization": "residual"},
        "learning_rate": 1e-2,
    },
}
#: Configurations without a prompt: the float32 backbone, what of it
#: trains, and the option holding the learning rate.
PLAIN_CONFIGS = {
    "lora4": {"lora_rank": 4, "lr_option": "lora_lr"},
    "lora8": {"lora_rank": 8, "lr_option": "lora_lr"},
    "full": {"trainable": True, "lr_option": "full_lr"},
    "head": {"trainable": False, "lr_option": "head_lr"},
}
CONFIGS = tuple(PROMPT_CONFIGS) + tuple(PLAIN_CONFIGS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    add("--seeds", nargs="+", type=int, default=[0])
    add("--seconds", type=float, default=600.0, help="training time each")
    add(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what --seconds counts: wall-clock training time, or the "
        "process's CPU time in training (steadier on a shared machine; "
        "about twice the wall time on 2 quiet cores)",
    )
    add(
        "--eval-every-seconds",
        type=float,
        default=150.0,
        help="score dev every this many seconds of training (0: at the end "
        "only)",
    )
    add("--batch-size", type=int, default=32)
    add("--sequence-length", type=int, default=64)
    add(
        "--dtype",
        default="bfloat16",
        choices=("float32", "bfloat16"),
        help="frozen weights of the prompt configurations",
    )
    add("--prompt-lr", type=float, default=None, help="overrides the table's")
    add("--lora-lr", type=float, default=1e-3)
    add("--full-lr", type=float, default=5e-5)
    add("--head-lr", type=float, default=1e-2)
    add("--max-steps", type=int, default=20_000, help="a cap on the steps")
    add("--max-train", type=int, default=None, help="smoke tests: fewer")
    add("--max-dev", type=int, default=None, help="smoke tests: fewer")
    add("--data-dir", default=DEFAULT_DATA_DIR)
    add("--output", default=None, help="write every result to this JSON")
    add("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("seconds", "batch_size", "sequence_length", "max_steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


# -- one configuration, in a worker process ----------------------------------
def build_model(config, label_strings):
    """`(model, preprocessor, learning_rate, description)` of a config."""
    import keras_hub

    from keras_prompt import PromptClassifier
    from keras_prompt.pretrained import minilm_preset_dir

    preset = minilm_preset_dir()
    name, seed = config["config"], config["seed"]
    length = config["sequence_length"]
    if name in PROMPT_CONFIGS:
        row = PROMPT_CONFIGS[name]
        kwargs = dict(PROMPT_DEFAULTS, dtype=config["dtype"], **row["kwargs"])
        described = dict(kwargs)
        if isinstance(kwargs["initializer"], str):
            tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
            kwargs["initializer"] = prompt_initializer(
                kwargs["initializer"], label_strings, tokenizer, seed
            )
        model = PromptClassifier.from_preset(
            preset,
            num_classes=len(label_strings),
            sequence_length=length,
            compile=False,
            **kwargs,
        )
        rate = config["prompt_lr"] or row["learning_rate"]
        return model, model.preprocessor, rate, described
    row = PLAIN_CONFIGS[name]
    preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
        preset, sequence_length=length
    )
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    if "lora_rank" in row:
        backbone.enable_lora(row["lora_rank"])
    else:
        backbone.trainable = row["trainable"]
    model = plain_classifier(backbone, "mean", len(label_strings))
    described = {k: v for k, v in row.items() if k != "lr_option"}
    return model, preprocessor, config[row["lr_option"]], described


def read_data(config):
    """`(train, dev)` of the worker, cut for smoke tests."""
    import numpy as np

    train, dev = load_splits(config["data_dir"])
    if config["max_train"]:
        train = train.select(np.arange(min(config["max_train"], len(train))))
    if config["max_dev"]:
        dev = dev.select(np.arange(min(config["max_dev"], len(dev))))
    return train, dev


def log(message):
    print(message, file=sys.stderr, flush=True)


def run_config(config):
    """Trains one configuration for the time budget; returns its record."""
    import keras
    import tensorflow as tf

    import keras_prompt
    from keras_prompt.data import batching

    setup = time.perf_counter()
    seed = config["seed"]
    train, dev = read_data(config)
    keras_prompt.set_random_seed(seed)
    model, preprocessor, rate, described = build_model(
        config, train.label_strings
    )
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    train_features = batching.tokenize(preprocessor, train.texts)
    dev_features = batching.tokenize(preprocessor, dev.texts)
    lengths = batching.token_lengths(train_features)
    batches = batching.train_batches(
        lengths, config["batch_size"], config["max_steps"], seed
    )
    setup = time.perf_counter() - setup
    log(f"{config['config']} seed {seed}: set up in {setup:.0f} s")

    def batch(indices):
        size = batching.padded_length(
            lengths[indices].max(), config["sequence_length"]
        )
        x = {
            key: tf.constant(values[indices, :size])
            for key, values in train_features.items()
        }
        return x, tf.constant(train.labels[indices])

    def evaluate():
        wall, cpu = time.perf_counter(), time.process_time()
        point = {
            "train_s": train_s,
            "step": step,
            "dev": accuracy(model, dev_features, dev.labels),
            "loss": sum(losses) / max(len(losses), 1),
        }
        losses.clear()
        timing["eval_s"] += time.perf_counter() - wall
        timing["eval_cpu_s"] += time.process_time() - cpu
        log(f"  {point}")
        return point

    load_before = os.getloadavg()[0]
    budget, every = config["seconds"], config["eval_every_seconds"]
    next_eval = every if every > 0 else math.inf
    train_s = train_cpu_s = 0.0
    step, losses, curve = 0, [], []
    timing = {"eval_s": 0.0, "eval_cpu_s": 0.0}
    cosine = PROMPT_CONFIGS.get(config["config"], {}).get("schedule")
    cpu_clock = config.get("clock") == "cpu"

    def spent():
        # The budget's clock: wall time, or the process's CPU time (steadier
        # when other jobs share the machine).
        return train_cpu_s if cpu_clock else train_s

    while step < len(batches) and spent() < budget:
        if cosine:
            # The rate follows a cosine over the training time budget.
            done = min(spent() / budget, 1.0)
            model.optimizer.learning_rate.assign(
                rate * 0.5 * (1.0 + math.cos(math.pi * done))
            )
        x, y = batch(batches[step])
        wall, cpu = time.perf_counter(), time.process_time()
        logs = keras.Model.train_on_batch(model, x, y, return_dict=True)
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
        "settings": described,
        "learning_rate": rate,
        "trainable": count_weights(model.trainable_weights),
        "total": count_weights(model.weights),
        "steps": step,
        "steps_per_s": step / train_s,
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "eval_s": timing["eval_s"],
        "eval_cpu_s": timing["eval_cpu_s"],
        "setup_s": setup,
        "dev_final": curve[-1]["dev"],
        "dev_best": max(point["dev"] for point in curve),
        "curve": curve,
        "peak_rss_mb": peak_rss_mb(),
        # 1-minute load averages (this run's own threads included): other
        # jobs on the machine slow the steps of a wall-clock budget.
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "train_examples": len(train),
        "dev_examples": len(dev),
    }


# -- the driver ---------------------------------------------------------------
def curve_text(result):
    return " ".join(
        f"{p['train_s']:.0f}s:{100 * p['dev']:.1f}" for p in result["curve"]
    )


def print_table(results):
    print(
        "\n| config | lr | seed | trained params | steps | steps/s | dev final "
        "| dev best | dev curve (train s: %) | train s | CPU s | eval s "
        "| peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['config']} | {r['learning_rate']:g} | {r['seed']} "
            f"| {r['trainable']:,} | {r['steps']} | {r['steps_per_s']:.2f} "
            f"| {100 * r['dev_final']:.1f} | {100 * r['dev_best']:.1f} "
            f"| {curve_text(r)} | {r['train_s']:.0f} | {r['train_cpu_s']:.0f} "
            f"| {r['eval_s']:.0f} | {r['peak_rss_mb'] / 1024:.2f} GB |"
        )
    names = list(dict.fromkeys(r["config"] for r in results))
    for name in names:
        runs = [r for r in results if r["config"] == name]
        if len(runs) > 1:
            final = mean_std([100 * r["dev_final"] for r in runs])
            steps = mean_std([r["steps"] for r in runs])
            print(
                f"{name}: dev final {final[0]:.1f} +- {final[1]:.1f} over "
                f"{len(runs)} seeds, {steps[0]:.0f} steps"
            )


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
        "full_lr",
        "head_lr",
        "max_steps",
        "max_train",
        "max_dev",
        "data_dir",
    )

    def describe(result):
        return (
            f"{result['config']} seed {result['seed']}: dev "
            f"{100 * result['dev_final']:.1f}% after {result['steps']} steps "
            f"({result['train_s']:.0f} s training, {result['eval_s']:.0f} s "
            f"evaluating), peak RSS {result['peak_rss_mb']:.0f} MB"
        )

    results, wall = run_all(__file__, args, keys, describe)
    print_table(results)
    print(f"total wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
