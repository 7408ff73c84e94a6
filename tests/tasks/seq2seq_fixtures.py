"""A tiny T5 pretrained in the test on a small multi-task mixture.

The mixture has two T5-style prefixed tasks over sentences holding one
color, one animal and fillers (`"color: sun red cat" -> "red"`,
`"animal: sun red cat" -> "cat"`). After freezing it, a prompt alone must
find the "color" behaviour for unprefixed inputs: the frozen model never
saw an unprefixed input, so the prompt has to learn what the prefix did.
"""

import keras
import numpy as np

from tests.test_case import WORDS
from tests.test_case import sentencepiece_proto
from tests.test_case import tiny_t5
from tests.test_case import tiny_t5_preprocessor

COLORS = WORDS[0:5]
ANIMALS = WORDS[5:10]
FILLERS = WORDS[10:16]
CONTENT = COLORS + ANIMALS + FILLERS
PREFIXES = {"color:": 0, "animal:": 1}


def sentences(rng, count):
    """Each sentence holds one color, one animal and 1-2 filler words."""
    data = []
    for _ in range(count):
        words = [rng.choice(COLORS), rng.choice(ANIMALS)]
        words += list(rng.choice(FILLERS, size=rng.integers(1, 3)))
        rng.shuffle(words)
        data.append([str(w) for w in words])
    return data


def answer(words, kind):
    pool = ANIMALS if kind == "animal:" else COLORS
    return next(w for w in words if w in pool)


def pretraining_pairs(rng, count):
    inputs, targets = [], []
    for words in sentences(rng, count):
        prefix = str(rng.choice(list(PREFIXES)))
        inputs.append(f"{prefix} {' '.join(words)}")
        targets.append(answer(words, prefix))
    return inputs, targets


def color_pairs(rng, count):
    """The new task: no prefix, answer with the color."""
    data = sentences(rng, count)
    return [" ".join(w) for w in data], [answer(w, "color:") for w in data]


def build_pretrained_t5(seed=0, steps=400, batch_size=64, epochs=2):
    """Returns `(backbone, preprocessor)` after multi-task pretraining."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = [" ".join(CONTENT)] * 4 + [" ".join(PREFIXES)] * 4
    proto = sentencepiece_proto(corpus, vocab_size=len(CONTENT) + 3 + 3)
    preprocessor = tiny_t5_preprocessor(proto, encoder_length=8, decoder_length=3)
    backbone = tiny_t5(
        vocabulary_size=preprocessor.tokenizer.vocabulary_size(),
        hidden_dim=32,
        num_layers=2,
    )
    lm = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor)
    lm.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    inputs, targets = pretraining_pairs(rng, steps * batch_size // epochs)
    lm.fit(
        {"encoder_text": inputs, "decoder_text": targets},
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
    )
    return backbone, preprocessor
