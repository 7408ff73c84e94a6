"""Small models the serving tests share: a T5, a GPT-2 and a BERT.

The models are random but rescaled so that their outputs depend on the
prompt (a tiny model at keras-hub's initial scale answers almost the same
whatever the prompt), which is what equivalence tests need. Every weight
matrix is drawn from a seeded NumPy generator, so nothing here resets
TensorFlow's global seed: that would drop the tokenizer resources that
`tf.data` pipelines of models built earlier still use.
"""

import functools
import json
import os
import subprocess
import sys

import keras
import keras_hub
import numpy as np

from keras_prompt import FrozenBackbone
from keras_prompt import toy
from tests.test_case import WORDS
from tests.test_case import random_prompt
from tests.test_case import spread_weights
from tests.test_case import tiny_backbone
from tests.test_case import word_bpe
from tests.test_case import wordpiece_vocabulary

TEXTS = [
    "red cat sun",
    "blue dog",
    "moon star fish",
    "green",
    "cow rain tree white",
    "black bird rock",
    "fish fish",
    "white cow moon",
    "sun",
    "dog red star",
]
CAUSAL_WORDS = WORDS[:10]


def rescale(backbone, seed=0, embedding_std=1.0):
    """Embeddings ~ N(0, embedding_std), kernels ~ N(0, 1 / fan_in)."""
    return spread_weights(backbone, seed=seed, embedding_std=embedding_std)


@functools.lru_cache(maxsize=None)
def t5():
    """`(backbone, preprocessor)`: a random 2-layer T5 on the toy words."""
    preprocessor = toy.toy_t5_preprocessor()
    backbone = toy.toy_t5(preprocessor.tokenizer.vocabulary_size())
    rescale(backbone)
    return backbone, preprocessor


def gpt2_tokenizer(words=CAUSAL_WORDS):
    """A word-level GPT-2 BPE: each word (with and without the leading
    space marker) is a single token."""
    vocabulary, merges = word_bpe(words, ["<|endoftext|>"])
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)


@functools.lru_cache(maxsize=None)
def gpt2():
    """`(backbone, preprocessor)`: a random 2-layer GPT-2, 8 tokens."""
    tokenizer = gpt2_tokenizer()
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=8
    )
    backbone = tiny_backbone(
        "gpt2", vocabulary_size=tokenizer.vocabulary_size()
    )
    rescale(backbone, seed=1, embedding_std=0.5)
    return backbone, preprocessor


@functools.lru_cache(maxsize=None)
def bert():
    """`(backbone, preprocessor)`: a random 2-layer BERT, 8 tokens."""
    vocabulary = wordpiece_vocabulary()
    backbone = tiny_backbone("bert", vocabulary_size=len(vocabulary))
    rescale(backbone, seed=2)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary),
        sequence_length=8,
    )
    return backbone, preprocessor


def seq2seq_task(prompt_length, seed, deep=False):
    from keras_prompt import PromptSeq2SeqLM

    backbone, preprocessor = t5()
    wrapped = FrozenBackbone(backbone, prompt_length=prompt_length, deep=deep)
    model = PromptSeq2SeqLM(wrapped, preprocessor)
    # No XLA: compiling generation for every tiny test model costs more
    # than it saves. Banks built from these models inherit the setting.
    model.compile(jit_compile=False)
    return random_prompt(model, seed)


def causal_task(prompt_length, seed, prompt_config=None):
    """A GPT-2 `PromptCausalLM` with a random prompt (`prompt_config`
    instead of `prompt_length` where given)."""
    from keras_prompt import PromptCausalLM

    backbone, preprocessor = gpt2()
    if prompt_config is None:
        wrapped = FrozenBackbone(backbone, prompt_length=prompt_length)
    else:
        wrapped = FrozenBackbone(backbone, prompt_config=prompt_config)
    model = PromptCausalLM(wrapped, preprocessor)
    model.compile(jit_compile=False)
    return random_prompt(model, seed, 0.5)


def classifier_task(prompt_length, seed, num_classes=3, pooling="cls"):
    from keras_prompt import PromptClassifier

    backbone, preprocessor = bert()
    wrapped = FrozenBackbone(backbone, prompt_length=prompt_length)
    model = PromptClassifier(
        wrapped,
        num_classes=num_classes,
        preprocessor=preprocessor,
        pooling=pooling,
    )
    return random_prompt(model, seed)


def t5_tasks(deep=False):
    """Three T5 tasks with prompts of lengths 2, 4 and 3 (do not train
    them: tests share them), with deep prompts when `deep`."""
    return _t5_tasks(bool(deep))


def t5_alone(deep=False):
    """What each of `t5_tasks(deep)` generates alone for `TEXTS`."""
    return _t5_alone(bool(deep))


# Cached on the positional `deep` alone, so that `t5_tasks()` and
# `t5_tasks(deep=False)` share their models.
@functools.lru_cache(maxsize=None)
def _t5_tasks(deep):
    return {
        "a": seq2seq_task(2, seed=1, deep=deep),
        "b": seq2seq_task(4, seed=2, deep=deep),
        "c": seq2seq_task(3, seed=3, deep=deep),
    }


@functools.lru_cache(maxsize=None)
def _t5_alone(deep):
    return {n: m.generate(TEXTS) for n, m in _t5_tasks(deep).items()}


@functools.lru_cache(maxsize=None)
def classifier_tasks():
    """Three BERT classifier tasks (prompt length 3, 3 classes)."""
    return {n: classifier_task(3, seed) for n, seed in zip("abc", (1, 2, 3))}


@functools.lru_cache(maxsize=None)
def classifier_alone():
    """What each of `classifier_tasks()` predicts alone for `TEXTS`."""
    tasks = classifier_tasks()
    x = keras.utils.unpack_x_y_sample_weight(
        tasks["a"].preprocess_samples(TEXTS)
    )[0]
    return {
        n: keras.ops.convert_to_numpy(m(x, training=False))
        for n, m in tasks.items()
    }


def causal_texts():
    rng = np.random.default_rng(3)
    return [
        " ".join(rng.choice(CAUSAL_WORDS, size=rng.integers(1, 4)))
        for _ in range(6)
    ]


SERVE_IN_FRESH_PROCESS = """
import json
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops)


def python(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [python(v) for v in value]
    return value


models, results = {}, {}
for call in json.loads(sys.argv[1]):
    if call["path"] not in models:
        models[call["path"]] = tf.saved_model.load(call["path"])
    serve = models[call["path"]].signatures["serving_default"]
    inputs = {"inputs": tf.constant(call["inputs"], tf.string)}
    if call.get("tasks") is not None:
        inputs["tasks"] = tf.constant(call["tasks"], tf.string)
    try:
        outputs = serve(**inputs)
    except tf.errors.InvalidArgumentError as error:
        results[call["name"]] = {"error": error.message}
        continue
    results[call["name"]] = {
        key: python(value.numpy().tolist()) for key, value in outputs.items()
    }
print(json.dumps(results))
"""


def serve_in_fresh_process(calls):
    """Loads exported SavedModels with `tf.saved_model.load` in a new Python
    process (after `import tensorflow_text`) and calls their
    `serving_default` signature.

    Args:
        calls: list of dicts `{"name", "path", "inputs", "tasks"}`
            (`tasks` for banks only).

    Returns:
        `{name: {output name: Python value}}`, or `{name: {"error":
        message}}` for a call the graph rejected.
    """
    return run_fresh_python(SERVE_IN_FRESH_PROCESS, json.dumps(calls))


def run_fresh_python(code, *args, timeout=300):
    """Runs `code` in a new Python process; returns its last stdout line
    parsed as JSON."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"The fresh process failed:\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
