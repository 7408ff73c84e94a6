"""The frozen-prefix cache: training time per epoch with and without it.

all-MiniLM-L6-v2 (6 layers) on RTE (`glue/rte`, 2,490 training pairs, 277
dev), a 20-vector late prompt entering at layer `k` (default 3: half the
layers), the frozen model's dropout off, batches of 32, `--epochs` passes
(an epoch = `ceil(2490 / 32)` steps, then a dev evaluation). Each
configuration runs in its own process on the same batches: without the
cache (`frozen_prefix_cache=False`: every step runs all six layers) and
with it (`True`: the hidden states entering layer `k` computed once per
example before the first step, then only layers `k..5`).

Prints, per configuration, the training seconds of each epoch (the steps
only: the dev evaluations and the cache's own pass are timed apart), the
speedup of the epochs after the first, the dev accuracy of every epoch,
and the largest difference between the two runs' final prompts.

    python benchmarks/frozen_prefix_cache.py --epochs 3 --dtype float32
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._sst2 import DEFAULT_DATA_DIR  # noqa: E402
from benchmarks._sst2 import emit  # noqa: E402
from benchmarks._sst2 import peak_rss_mb  # noqa: E402
from benchmarks._sst2 import run_worker  # noqa: E402
from benchmarks._sst2 import write_json  # noqa: E402

TASK = "glue/rte"
TRAIN_EXAMPLES = 2490


def worker(config):
    import keras
    import numpy as np

    import keras_prompt
    from keras_prompt.convert.presets import load_backbone
    from keras_prompt.pretrained import minilm_preset_dir
    from keras_prompt.training import Recipe

    keras_prompt.set_random_seed(config["seed"])
    steps_per_epoch = math.ceil(TRAIN_EXAMPLES / config["batch_size"])
    recipe = Recipe(
        task=TASK,
        prompt_length=20,
        start_layer=config["start_layer"],
        deep=config["deep"],
        optimizer_name="auto",
        learning_rate=None,
        batch_size=config["batch_size"],
        steps=config["epochs"] * steps_per_epoch,
        eval_interval=steps_per_epoch,
        frozen_dropout=0.0,
        encoder_sequence_length=config["sequence_length"],
        pooling="mean",
        seed=config["seed"],
        frozen_prefix_cache=config["cache"],
    )
    preset = minilm_preset_dir()
    model = recipe.build_model(
        preset, backbone=load_backbone(preset, dtype=config["dtype"])
    )
    seconds = []

    class StepTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seconds.append(0.0)

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds[-1] += time.perf_counter() - self.start

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        cpu = time.process_time()
        result = recipe.fit(
            model,
            folder,
            data_dir=config["data_dir"],
            callbacks=[StepTimes()],
            restore_best=False,
            verbose=0,
        )
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    prompt = np.asarray(model.backbone.prompt_values(), "float32")
    np.save(config["prompt_path"], prompt)
    emit(
        {
            "cache": config["cache"],
            "epoch_seconds": seconds,
            "accuracy": [e["value"] for e in result.evaluations],
            "frozen_prefix_cache": result.record["frozen_prefix_cache"],
            "dtype": model.backbone.dtype_policy.name,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--start-layer", type=int, default=3)
    parser.add_argument("--deep", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output")
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for cache in (False, True):
            config = {
                key: getattr(args, key)
                for key in (
                    "data_dir",
                    "epochs",
                    "start_layer",
                    "deep",
                    "batch_size",
                    "sequence_length",
                    "dtype",
                    "seed",
                )
            }
            config["cache"] = cache
            config["prompt_path"] = os.path.join(scratch, f"{cache}.npy")
            result = run_worker(__file__, config)
            results[cache] = result
            name = "cache" if cache else "no cache"
            epochs = ", ".join(f"{s:.1f}" for s in result["epoch_seconds"])
            accuracy = ", ".join(f"{a:.4f}" for a in result["accuracy"])
            print(
                f"{name:>8}: epochs {epochs} s; dev {accuracy}; "
                f"{result['dtype']}; peak RSS {result['peak_rss_mb']:.0f} MB"
            )
            record = result["frozen_prefix_cache"]
            if record["used"]:
                print(
                    f"          cache: {record['storage']}, "
                    f"{record['bytes'] / 2**20:.1f} MiB, computed in "
                    f"{record['seconds']:.1f} s"
                )
        import numpy as np

        difference = float(
            np.abs(
                np.load(os.path.join(scratch, "True.npy"))
                - np.load(os.path.join(scratch, "False.npy"))
            ).max()
        )
    plain = results[False]["epoch_seconds"]
    cached = results[True]["epoch_seconds"]
    later = sum(plain[1:]) / max(sum(cached[1:]), 1e-9)
    first = plain[0] / (
        cached[0] + results[True]["frozen_prefix_cache"]["seconds"]
    )
    print(
        f"k={args.start_layer} of 6: epochs after the first "
        f"{later:.2f}x faster with the cache; the first epoch (with the "
        f"cache's pass) {first:.2f}x; final prompts differ by at most "
        f"{difference:.2e}"
    )
    if args.output:
        write_json(
            args.output,
            {
                "args": vars(args),
                "results": {str(k): v for k, v in results.items()},
                "speedup_after_first_epoch": later,
                "speedup_first_epoch": first,
                "prompt_max_abs_difference": difference,
            },
        )


if __name__ == "__main__":
    main()
