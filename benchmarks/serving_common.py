"""What the serving benchmarks share: a small-but-not-toy T5 and timers.

The model is a random keras-hub T5 shaped like T5-small with fewer layers
(d_model 512, 8 heads, gated-GELU FFN 1024, 4 encoder + 4 decoder layers,
a 32,128-row vocabulary like T5's), so embedding lookups, attention and
the LM head cost what they cost in a real model. Its tokenizer is a word
SentencePiece model over 32,125 made-up words, trained on the spot, so
that every generated id decodes; inputs are 24-40 such words (padded to
64 tokens). Nothing is downloaded. Timings are interleaved repeats (so
that the load of a shared machine hits every variant alike), reported as
median and best wall time and median CPU time of the process.
"""

import os

import _measure
import _models

_measure.setup_environment()

import numpy as np  # noqa: E402

# T5 1.1-small's layer shape with 4 layers a stack and 8 heads, no dropout.
CONFIG = dict(_models.T5_SMALL, num_layers=4, num_heads=8, dropout=0.0)
# 32,125 made-up words + pad, end and unknown: T5's 32,128 vocabulary rows.
WORDS = [f"w{i}" for i in range(32125)]
ENCODER_LENGTH = 64
DECODER_LENGTH = 8
PROMPT_LENGTH = 20


def texts(count, seed=0):
    rng = np.random.default_rng(seed)
    words = WORDS[:2000]
    return [
        " ".join(rng.choice(words, size=rng.integers(24, 41)))
        for _ in range(count)
    ]


def build_t5(seed=0):
    """`(backbone, preprocessor)`: the random T5 and its tokenizer."""
    import keras_hub

    import keras_prompt
    from keras_prompt.toy import sentencepiece_proto

    keras_prompt.set_random_seed(seed)
    corpus = [" ".join(WORDS[i : i + 100]) for i in range(0, len(WORDS), 100)]
    proto = sentencepiece_proto(corpus, vocab_size=len(WORDS) + 3)
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    if tokenizer.vocabulary_size() != CONFIG["vocabulary_size"]:
        raise RuntimeError(
            f"The tokenizer has {tokenizer.vocabulary_size()} pieces, the "
            f"model {CONFIG['vocabulary_size']} rows."
        )
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=ENCODER_LENGTH,
        decoder_sequence_length=DECODER_LENGTH,
    )
    backbone = keras_hub.models.T5Backbone(**CONFIG)
    return backbone, preprocessor


def t5_task(backbone, preprocessor, prompt_length=PROMPT_LENGTH, seed=0):
    """A `PromptSeq2SeqLM` with a random prompt (as if trained)."""
    from keras_prompt import FrozenBackbone
    from keras_prompt import PromptSeq2SeqLM

    wrapped = FrozenBackbone(backbone, prompt_length=prompt_length)
    rng = np.random.default_rng(seed)
    wrapped.assign_prompts(
        rng.uniform(-0.5, 0.5, (prompt_length, backbone.hidden_dim))
    )
    return PromptSeq2SeqLM(wrapped, preprocessor)


def interleaved(functions, repeats=5, warmup=1):
    """Runs the functions in turns (`_measure.interleaved_times`); returns
    `{"median", "best", "cpu"}`, each a dict `name -> seconds`: the median
    and best wall time, and the median CPU time of this process (all its
    threads). On a shared machine the CPU time is the figure least
    disturbed by other processes."""
    wall, cpu = _measure.interleaved_times(functions, repeats, warmup)
    return _measure.summary(wall, cpu)


def bank(backbone, preprocessor, names):
    """`(template, bank)`: a `PromptBank` holding a random prompt (seed i)
    for each of `names`, its template the seed-0 task."""
    from keras_prompt.serving import PromptBank

    template = t5_task(backbone, preprocessor, seed=0)
    prompts = PromptBank(template, capacity=len(names))
    for i, name in enumerate(names):
        prompts.add_task(name, t5_task(backbone, preprocessor, seed=i))
    return template, prompts


def report(stats, count, unit):
    """Prints each variant's times (ms) and its median rate."""
    names = list(stats["median"])
    width = max(len(n) for n in names) + 2
    print(f"  {'':{width}s}{'median':>10s}{'best':>10s}{'CPU':>10s}  {unit}")
    for name in names:
        row = "".join(
            f"{stats[key][name] * 1000:8.1f}ms"
            for key in ("median", "best", "cpu")
        )
        print(f"  {name:{width}s}{row}  {count / stats['median'][name]:7.1f}")


def ratios(stats, reference, other):
    """`reference / other` for each statistic: `other`'s throughput (or
    `reference`'s latency) relative to the other one."""
    return ", ".join(
        f"{key} {stats[key][reference] / stats[key][other]:.3f}"
        for key in ("median", "best", "cpu")
    )


def header(title):
    import keras
    import keras_hub
    import tensorflow as tf

    print(title)
    print(
        f"  tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"keras-hub {keras_hub.__version__}, CPU threads "
        f"{os.cpu_count()}, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    config = ", ".join(f"{k}={v}" for k, v in CONFIG.items())
    print(f"  model: random T5 ({config})")
    print(
        f"  inputs: {ENCODER_LENGTH} encoder tokens, {DECODER_LENGTH} "
        f"generated tokens, prompt length {PROMPT_LENGTH}"
    )
