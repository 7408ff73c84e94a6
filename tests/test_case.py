"""Shared helpers for keras_prompt's tests.

`TestCase` holds the round-trip helpers every layer and model test uses
(config, `.keras` saving, SavedModel export) and the reference test that
anchors every model family: a prompt set to the embeddings of tokens
`t1..tP` must give exactly what the plain backbone gives on `[t1..tP] + x`.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_prompt.toy import sentencepiece_proto  # noqa: F401

WORDS = (
    "red green blue black white cat dog bird fish cow tree rock sun moon "
    "star rain snow wind fire lake hill road boat ship car bus book pen cup "
    "box hat"
).split()


def wordpiece_vocabulary(words=WORDS):
    """A tiny BERT-style WordPiece vocabulary list."""
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(words)


def to_numpy(tree):
    return tf.nest.map_structure(
        lambda t: None if t is None else keras.ops.convert_to_numpy(t), tree
    )


class TestCase:
    """Base class: assertions and round-trip helpers (pytest style)."""

    atol = 1e-5

    def assertAllClose(self, a, b, atol=None, rtol=1e-5):
        a, b = to_numpy(a), to_numpy(b)
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
            np.testing.assert_allclose(
                np.asarray(x, dtype="float64"),
                np.asarray(y, dtype="float64"),
                atol=self.atol if atol is None else atol,
                rtol=rtol,
            )

    def assertAllEqual(self, a, b):
        a, b = to_numpy(a), to_numpy(b)
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
            np.testing.assert_array_equal(x, y)

    # -- round trips --------------------------------------------------------
    def run_serialization_test(self, instance):
        """`get_config` -> `from_config` -> same config, and Keras'
        `serialize`/`deserialize` round trip."""
        config = instance.get_config()
        revived = type(instance).from_config(config)
        assert revived.get_config() == config
        serialized = keras.saving.serialize_keras_object(instance)
        revived = keras.saving.deserialize_keras_object(serialized)
        assert type(revived) is type(instance)
        assert revived.get_config() == config
        return revived

    def run_model_saving_test(self, model, input_data, tmp_path, atol=None):
        """Whole-model `.keras` save and load gives identical outputs."""
        expected = model(input_data)
        path = os.path.join(str(tmp_path), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        assert type(restored) is type(model)
        self.assertAllClose(expected, restored(input_data), atol=atol)
        return restored

    def run_export_test(self, model, input_data, tmp_path, atol=None):
        """`model.export` to a TF SavedModel; the reloaded graph's outputs
        equal the in-memory model's."""
        path = os.path.join(str(tmp_path), "exported")
        model.export(path, format="tf_saved_model", verbose=False)
        restored = tf.saved_model.load(path)
        expected = model(input_data)
        actual = restored.serve(input_data)
        self.assertAllClose(expected, actual, atol=atol)
        return restored

    # -- the anchor of every family -------------------------------------------
    def run_prompt_reference_test(
        self,
        plain_backbone,
        frozen_backbone,
        inputs,
        prompt_token_ids,
        prompted_key,
        compare,
        atol=1e-4,
    ):
        """A prompt equal to the embeddings of `prompt_token_ids` gives the
        plain backbone's outputs on those tokens prepended.

        Args:
            plain_backbone: the keras-hub backbone.
            frozen_backbone: a `FrozenBackbone` around it whose prompt holds
                the embeddings of `prompt_token_ids`.
            inputs: dict of the backbone's inputs (with padding).
            prompt_token_ids: list of P ints.
            prompted_key: a function `inputs -> reference inputs` that
                prepends the tokens (and ones to the masks) where the
                family puts the prompt.
            compare: dict `output name -> slice function` giving, from an
                output, the positions to compare (e.g. skip padding).
        """
        table = keras.ops.convert_to_numpy(
            plain_backbone.token_embedding.embeddings
        )
        prompt = table[np.asarray(prompt_token_ids)]
        frozen_backbone.assign_prompts(prompt)
        actual = to_numpy(frozen_backbone(inputs, training=False))
        expected = to_numpy(
            plain_backbone(prompted_key(inputs), training=False)
        )
        for name, select in compare.items():
            np.testing.assert_allclose(
                select(actual[name]),
                select(expected[name]),
                atol=atol,
                err_msg=f"output {name!r} differs from the reference",
            )


def tiny_t5(vocabulary_size=64, hidden_dim=16, num_layers=2, **kwargs):
    """A tiny randomly initialised keras-hub T5 (T5 1.1 style)."""
    from keras_prompt.toy import toy_t5

    return toy_t5(vocabulary_size, hidden_dim, num_layers, **kwargs)


def tiny_t5_preprocessor(proto, encoder_length=12, decoder_length=8):
    import keras_hub

    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=encoder_length,
        decoder_sequence_length=decoder_length,
    )
