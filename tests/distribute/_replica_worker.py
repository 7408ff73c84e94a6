"""Runs in a subprocess: one device vs. two replicas, same global batch.

`python _replica_worker.py mirrored` configures two logical CPU devices
before TensorFlow initialises, then trains each task (the causal one also
with deep prompts) twice from the same initial weights on the same global
batches: once on the default strategy and once under `MirroredStrategy`
(via `resolve_strategy("cpu")`), and prints `RESULT {json}` with the
losses and prompt updates of both.

`python _replica_worker.py multi_worker` is one worker of a
`MultiWorkerMirroredStrategy` cluster described by `TF_CONFIG`; it trains
under the strategy, then the one-device reference, and prints the same.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

MODE = sys.argv[1]
if MODE == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_prompt.distribute import resolve_strategy  # noqa: E402

    STRATEGY = resolve_strategy("cpu")
else:
    from keras_prompt.distribute import resolve_strategy  # noqa: E402

    STRATEGY = resolve_strategy("multi_worker")

import keras  # noqa: E402

keras.config.disable_traceback_filtering()
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_prompt  # noqa: E402
from keras_prompt import FrozenBackbone  # noqa: E402
from keras_prompt import toy  # noqa: E402
from keras_prompt.distribute import compile_options  # noqa: E402
from keras_prompt.distribute import describe_strategy  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 2
LEARNING_RATE = 0.5


def seq2seq_task(preprocessor):
    """A tiny random T5 and the toy SentencePiece preprocessor: `fit` on
    raw strings, so the padding masks are keras-hub's booleans."""
    backbone = toy.toy_t5(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=16
    )
    return keras_prompt.PromptSeq2SeqLM(
        FrozenBackbone(backbone, prompt_length=3), preprocessor
    )


def seq2seq_data():
    rng = np.random.default_rng(0)
    inputs, targets = toy.task_pairs(rng, GLOBAL_BATCH * STEPS)
    # Uneven padding: the replicas see different numbers of real tokens.
    inputs = [x if i % 4 else x.split()[0] for i, x in enumerate(inputs)]
    return tf.data.Dataset.from_tensor_slices((inputs, targets))


def causal_task(preprocessor, deep=False):
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=40,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=16,
    )
    return keras_prompt.PromptCausalLM(
        FrozenBackbone(gpt2, prompt_length=3, deep=deep), None
    )


def deep_causal_task(preprocessor):
    """The causal task with deep prompts (one per GPT-2 layer), their
    layers `1..` propagated inside the strategy's scope."""
    return causal_task(preprocessor, deep=True)


def causal_data():
    rng = np.random.default_rng(0)
    count = GLOBAL_BATCH * STEPS
    tokens = rng.integers(3, 40, size=(count, 8)).astype("int32")
    mask = np.ones_like(tokens, dtype=bool)
    mask[: count // 4, 5:] = False  # Uneven padding across replicas.
    x = {"token_ids": tokens, "padding_mask": mask}
    y = np.roll(tokens, -1, axis=1)
    return tf.data.Dataset.from_tensor_slices((x, y, mask.astype("float32")))


WORDS = "good great fun bad dull boring film the a is".split()


def classifier_task(preprocessor):
    """A tiny random BERT classifier with keras-hub's preprocessor: `fit`
    on raw strings (boolean padding masks)."""
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=16,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary),
        sequence_length=8,
    )
    return keras_prompt.PromptClassifier(
        FrozenBackbone(bert, prompt_length=3),
        num_classes=2,
        preprocessor=preprocessor,
        dropout=0.0,
    )


def classifier_data():
    rng = np.random.default_rng(0)
    count = GLOBAL_BATCH * STEPS
    texts = [
        " ".join(rng.choice(WORDS, size=rng.integers(1, 6)))
        for _ in range(count)
    ]
    labels = rng.integers(0, 2, size=count)
    return tf.data.Dataset.from_tensor_slices((texts, labels))


TASKS = {
    "seq2seq": (seq2seq_task, seq2seq_data),
    "causal": (causal_task, causal_data),
    "causal_deep": (deep_causal_task, causal_data),
    "classifier": (classifier_task, classifier_data),
}


def train(kind, strategy):
    build, data = TASKS[kind]
    # Seed first: `tf.random.set_seed` clears TF's kernel cache, which
    # drops the SentencePiece resource of a tokenizer made before it.
    keras_prompt.set_random_seed(1)
    # The preprocessor (runs in tf.data on the host) is made outside the
    # scope; the model inside it.
    preprocessor = None
    if kind == "seq2seq":
        preprocessor = toy.toy_t5_preprocessor(
            encoder_sequence_length=8, decoder_sequence_length=3
        )
    scope = strategy.scope() if strategy is not None else _null_scope()
    with scope:
        model = build(preprocessor)
        # XLA for the replicas when the strategy allows it; the one-device
        # reference runs without (faster to trace on a busy CPU).
        options = compile_options(strategy) if strategy else {}
        options.setdefault("jit_compile", False)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), **options)
    # A plain `fit`: the tasks handle the strategy themselves.
    start = model.backbone.prompt_values().copy()
    batches = data().batch(GLOBAL_BATCH, drop_remainder=True)
    history = model.fit(batches, epochs=1, shuffle=False, verbose=0)
    return {
        "train_loss": float(history.history["loss"][-1]),
        "update": (model.backbone.prompt_values() - start).tolist(),
        "steps": int(model.optimizer.iterations.numpy()),
        "jit_compile": bool(options["jit_compile"]),
    }


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main():
    result = {
        "replicas": STRATEGY.num_replicas_in_sync,
        "strategy": describe_strategy(STRATEGY),
        "tasks": {},
    }
    # The multi-worker cluster (slow: two processes talking over gRPC)
    # checks the two generative kinds; the classifier's input pipeline is
    # the same under both strategies, and deep prompts are one more
    # variable shape.
    kinds = TASKS if MODE == "mirrored" else ("seq2seq", "causal")
    for kind in kinds:
        distributed = train(kind, STRATEGY)
        single = train(kind, None)
        result["tasks"][kind] = {"single": single, "distributed": distributed}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
