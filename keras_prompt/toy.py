"""A toy world for demos and tests: a tiny vocabulary and a tiny T5.

`pretrained_toy_t5()` trains a tiny T5 on T5-style prefixed tasks over
sentences holding one color, one animal and filler words
(`"color: sun red cat" -> "red"`, `"animal: sun red cat" -> "cat"`), and
to answer unprefixed sentences with the animal. Frozen, it answers a plain
sentence with its animal; a prompt trained on plain sentences labelled with
their color must steer it to the color task: it has to learn what the
`color:` prefix did. Everything is made on the spot; nothing is
downloaded.
"""

import io
import random

import keras
import numpy as np

COLORS = ("red", "green", "blue", "black", "white")
ANIMALS = ("cat", "dog", "bird", "fish", "cow")
FILLERS = ("tree", "rock", "sun", "moon", "star", "rain")
CONTENT = COLORS + ANIMALS + FILLERS
PREFIXES = ("color:", "animal:", "")


def sentencepiece_proto(sentences, vocab_size=64):
    """A tiny SentencePiece word model trained in memory on `sentences`.

    Ids follow T5: pad 0, eos 1, unk 2.
    """
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="word",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def sentences(rng, count):
    """Each sentence holds one color, one animal and 1-2 filler words."""
    data = []
    for _ in range(count):
        words = [rng.choice(COLORS), rng.choice(ANIMALS)]
        words += list(rng.choice(FILLERS, size=rng.integers(1, 3)))
        rng.shuffle(words)
        data.append([str(w) for w in words])
    return data


def answer(words, prefix):
    """The word `prefix` asks for: the color for `"color:"`, else (for
    `"animal:"` and for a plain sentence) the animal."""
    pool = COLORS if prefix == "color:" else ANIMALS
    return next(w for w in words if w in pool)


def prefixed_pairs(rng, count):
    """The pretraining mixture: `(prefix + sentence, answer)` pairs."""
    inputs, targets = [], []
    for words in sentences(rng, count):
        prefix = str(rng.choice(PREFIXES))
        inputs.append(f"{prefix} {' '.join(words)}".strip())
        targets.append(answer(words, prefix))
    return inputs, targets


def task_pairs(rng, count, prefix="color:"):
    """A new task: unprefixed sentences answered as `prefix` would."""
    data = sentences(rng, count)
    return [" ".join(w) for w in data], [answer(w, prefix) for w in data]


def toy_t5_preprocessor(encoder_sequence_length=8, decoder_sequence_length=3):
    import keras_hub

    corpus = [" ".join(CONTENT + PREFIXES[:2])] * 4
    proto = sentencepiece_proto(corpus, vocab_size=len(CONTENT) + 2 + 3)
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=encoder_sequence_length,
        decoder_sequence_length=decoder_sequence_length,
    )


def toy_t5(vocabulary_size, hidden_dim=32, num_layers=2, **kwargs):
    """A tiny randomly initialised T5 1.1-style backbone."""
    import keras_hub

    config = dict(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=False,
    )
    config.update(kwargs)
    return keras_hub.models.T5Backbone(**config)


def pretrained_toy_t5(seed=0, steps=800, batch_size=64, epochs=2, verbose=0):
    """Returns `(backbone, preprocessor)` after multi-task pretraining."""
    import keras_hub

    # Keras draws unseeded initialiser seeds from Python's `random`, so
    # seeding Python and NumPy is enough here (and leaves TF's kernel cache
    # alone, see `keras_prompt.set_random_seed`).
    random.seed(seed)
    np.random.seed(seed)
    rng = np.random.default_rng(seed)
    preprocessor = toy_t5_preprocessor()
    backbone = toy_t5(preprocessor.tokenizer.vocabulary_size())
    lm = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor)
    lm.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    inputs, targets = prefixed_pairs(rng, steps * batch_size // epochs)
    lm.fit(
        {"encoder_text": inputs, "decoder_text": targets},
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
    )
    return backbone, preprocessor
