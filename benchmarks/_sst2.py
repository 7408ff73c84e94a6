"""Pieces shared by the all-MiniLM-L6-v2 / SST-2 benchmarks.

`minilm_sst2.py` (a fixed number of steps, early stopping on held-out
sentences) and `methods_sst2.py` (equal wall-clock training time) read the
same data, score the same way and give the configurations that train no
prompt (a head on the frozen model, LoRA, full fine-tuning) the head of
`keras_prompt.PromptClassifier`: dropout 0.1 and a dense softmax layer on
the mean of the final hidden states over the attended positions (or on
the final `[CLS]` state). Each configuration runs in its own Python
process (`run_worker`), so its peak resident memory is its own.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")
RESULT_PREFIX = "RESULT "
TASK = "glue/sst2"
POOLINGS = ("cls", "mean")
INITIALIZERS = ("random_uniform", "sampled_vocab", "class_label")


def load_splits(data_dir):
    """`(train, validation)`: SST-2's `ClassificationData` splits."""
    from keras_prompt.data.classification import load_classification

    train = load_classification(TASK, "train", data_dir)
    validation = load_classification(TASK, "validation", data_dir)
    return train, validation


def prompt_initializer(name, label_strings, tokenizer, seed):
    """The prompt initialiser called `name` (one of `INITIALIZERS`);
    `class_label` starts the prompt from the embeddings of the label
    strings, as `keras-prompt tune` does for tasks with class labels."""
    from keras_prompt import initializers

    if name == "class_label":
        return initializers.ClassLabel(
            list(label_strings), tokenizer, seed=seed
        )
    if name == "sampled_vocab":
        return initializers.SampledVocab(seed=seed)
    if name == "random_uniform":
        return initializers.RandomUniform(seed=seed)
    raise ValueError(f"initializer must be one of {INITIALIZERS}: {name!r}")


def plain_classifier(backbone, pooling="mean", num_classes=2):
    """A keras-hub backbone with `PromptClassifier`'s head and no prompt.

    Dropout 0.1 and `ClassificationHead` (softmax), both float32, on the
    mean of the final hidden states over the attended positions
    (`pooling="mean"`) or on the final `[CLS]` state (`"cls"`). Whatever
    of `backbone` is trainable (everything, LoRA factors, nothing) trains
    with the head.
    """
    import keras

    from keras_prompt.layers.classification_head import ClassificationHead
    from keras_prompt.tasks.prompt_classifier import masked_mean

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}: {pooling!r}")
    inputs = backbone.input
    sequence = keras.ops.cast(backbone(inputs)["sequence_output"], "float32")
    if pooling == "mean":
        pooled = masked_mean(sequence, inputs["padding_mask"])
    else:
        pooled = sequence[:, 0, :]
    x = keras.layers.Dropout(0.1, dtype="float32", name="classifier_dropout")(
        pooled
    )
    outputs = ClassificationHead(
        num_classes, activation="softmax", dtype="float32", name="logits"
    )(x)
    return keras.Model(inputs, outputs)


def accuracy(model, features, labels):
    """Accuracy of `model`'s argmax class on token `features` (run on
    length-sorted batches, each cut to its longest sentence)."""
    import numpy as np

    from keras_prompt.training.splits import predict_sorted

    probabilities = predict_sorted(model, features)
    return float(np.mean(probabilities.argmax(-1) == labels))


def count_weights(weights):
    """The number of values in `weights`."""
    import numpy as np

    return sum(int(np.prod(w.shape)) for w in weights)


def peak_rss_mb():
    """This process's high-water mark of resident memory, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result):
    """Prints a worker's result for `run_worker` to pick up."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script, config, stream=False):
    """Runs `python script --worker <config as JSON>` and returns the
    result it `emit`ted.

    `stream=True` passes the worker's stderr (its progress lines) through
    to this process's; otherwise both streams are kept and their ends
    printed only when the worker fails.
    """
    command = [sys.executable, os.path.abspath(script)]
    command += ["--worker", json.dumps(config)]
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=None if stream else subprocess.PIPE,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    sys.stderr.write(done.stdout[-4000:] + (done.stderr or "")[-4000:])
    raise RuntimeError(f"configuration {config} failed")


def run_all(script, args, keys, describe):
    """Runs every configuration `args.configs` of every seed `args.seeds`
    in its own worker (`run_worker`), with the settings `keys` of `args`;
    prints `describe(result)` after each and keeps `args.output` up to
    date. Returns `(results, total wall seconds)`."""
    base = {key: getattr(args, key) for key in keys}
    start = time.time()
    results = []
    for seed in args.seeds:
        for name in args.configs:
            result = run_worker(
                script, dict(base, config=name, seed=seed), stream=True
            )
            results.append(result)
            print(
                f"{describe(result)} [{time.time() - start:.0f} s elapsed]",
                flush=True,
            )
            write_json(args.output, {"config": base, "results": results})
    return results, time.time() - start


def write_json(path, data):
    """Writes `data` to `path` as JSON; nothing when `path` is None."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)


def mean_std(values):
    """`(mean, sample standard deviation)`; the deviation is 0 for one
    value."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std
