"""The real `glue/sst2` end to end: TFDS -> `PromptSeq2SeqLM.fit` with the
paper's optimiser and class-label prompt -> `evaluate_generation`.

A tiny T5 (the toy architecture, with a word vocabulary trained here on
SST-2 sentences) can't learn much sentiment in a few dozen steps, so the
test checks the pipeline: only the prompt moves, and the generation metric
equals accuracy computed by hand from `model.generate`.
"""

import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import toy
from keras_prompt.data import evaluate_generation
from keras_prompt.data import load_examples
from keras_prompt.data import load_text_to_text
from keras_prompt.training import lester2021
from tests.conftest import SHARED_TFDS_DIR

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_TFDS_DIR, "glue", "sst2")),
    reason=f"glue/sst2 is not prepared in {SHARED_TFDS_DIR}",
)
TRAIN_EXAMPLES = 2000
EVAL_EXAMPLES = 64
BATCH_SIZE = 32


def numpy_weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


@pytest.fixture(scope="module")
def tiny_t5():
    """A tiny T5 with a SentencePiece vocabulary of SST-2's words, briefly
    trained on SST-2 pairs so that it answers with label words (otherwise
    every prediction is wrong and the accuracy check says little)."""
    examples = load_examples(
        "glue/sst2",
        "train",
        data_dir=SHARED_TFDS_DIR,
        max_examples=TRAIN_EXAMPLES,
    )
    inputs = [e.inputs for e in examples]
    targets = [e.targets for e in examples]
    proto = toy.sentencepiece_proto(inputs + targets, vocab_size=800)
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=32, decoder_sequence_length=4
    )
    backbone = toy.toy_t5(tokenizer.vocabulary_size(), hidden_dim=32)
    pretraining = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor)
    pretraining.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,  # XLA compiles slower than this tiny model runs
    )
    pretraining.fit(
        {"encoder_text": inputs, "decoder_text": targets},
        batch_size=BATCH_SIZE,
        epochs=1,
        verbose=0,
    )
    return backbone, preprocessor


@pytest.mark.slow
def test_sst2_prompt_tuning_end_to_end(tiny_t5):
    backbone, preprocessor = tiny_t5
    tokenizer = preprocessor.tokenizer
    recipe = lester2021("glue/sst2", prompt_length=8, batch_size=BATCH_SIZE)
    model = recipe.build_model(
        backbone=backbone, preprocessor=preprocessor, jit_compile=False
    )

    # Class-label initialisation from the task's labels.
    table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    prompt_before = model.backbone.prompt_values().copy()
    for row, label in enumerate(("negative", "positive")):
        ids = keras.ops.convert_to_numpy(tokenizer(label)).tolist()
        assert ids and 2 not in ids  # known words, not <unk> (id 2)
        np.testing.assert_allclose(
            prompt_before[row], table[ids].mean(axis=0), rtol=1e-6
        )

    backbone_before = numpy_weights(backbone)
    train = load_text_to_text(
        "glue/sst2",
        "train",
        data_dir=SHARED_TFDS_DIR,
        seed=0,
        max_examples=TRAIN_EXAMPLES,
    )
    train = train.repeat().batch(BATCH_SIZE, drop_remainder=True)
    history = model.fit(train, steps_per_epoch=30, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert int(model.optimizer.iterations.numpy()) == 30

    # Only the prompt trained.
    assert not np.allclose(prompt_before, model.backbone.prompt_values())
    for before, after in zip(backbone_before, numpy_weights(backbone)):
        np.testing.assert_array_equal(before, after)

    results = evaluate_generation(
        model,
        "glue/sst2",
        "validation",
        data_dir=SHARED_TFDS_DIR,
        batch_size=BATCH_SIZE,
        max_examples=EVAL_EXAMPLES,
    )
    assert set(results) == {"accuracy"}
    assert 0.0 <= results["accuracy"] <= 1.0

    # The same accuracy by hand from `model.generate`.
    examples = load_examples(
        "glue/sst2",
        "validation",
        data_dir=SHARED_TFDS_DIR,
        max_examples=EVAL_EXAMPLES,
    )
    outputs = []
    for start in range(0, EVAL_EXAMPLES, BATCH_SIZE):
        batch = examples[start : start + BATCH_SIZE]
        outputs += model.generate([e.inputs for e in batch])
    correct = [o.strip() == e.targets for o, e in zip(outputs, examples)]
    assert results["accuracy"] == pytest.approx(np.mean(correct))
    # The tiny model answers with label words, so the check is not vacuous.
    assert {o.strip() for o in outputs} & {"negative", "positive"}
