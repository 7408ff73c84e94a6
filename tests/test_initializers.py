import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import initializers
from tests.test_case import WORDS
from tests.test_case import TestCase
from tests.test_case import sentencepiece_proto
from tests.test_case import tiny_t5


@pytest.fixture(scope="module")
def backbone():
    return tiny_t5(vocabulary_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    sentences = [" ".join(WORDS[i : i + 5]) for i in range(len(WORDS))]
    return keras_hub.models.T5Tokenizer(proto=sentencepiece_proto(sentences))


def table_of(backbone):
    return keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)


class TestInitializers(TestCase):
    def test_random_uniform_range_and_seed(self):
        init = initializers.RandomUniform(seed=4)
        values = keras.ops.convert_to_numpy(init((100, 30)))
        assert -0.5 <= values.min() < -0.45 and 0.45 < values.max() <= 0.5
        again = keras.ops.convert_to_numpy(
            initializers.RandomUniform(seed=4)((100, 30))
        )
        np.testing.assert_array_equal(values, again)

    def test_sampled_vocab_rows_from_top_k(self, backbone):
        table = table_of(backbone)
        init = initializers.SampledVocab(backbone, top_k=10, seed=0)
        values = keras.ops.convert_to_numpy(init((6, 16)))
        matches = [
            int(np.argmin(np.abs(table - row).sum(-1))) for row in values
        ]
        assert all(m < 10 for m in matches)
        assert len(set(matches)) == 6  # without replacement
        for row, m in zip(values, matches):
            np.testing.assert_allclose(row, table[m], rtol=1e-6)

    def test_sampled_vocab_bank_differs_per_prompt(self, backbone):
        init = initializers.SampledVocab(backbone, top_k=50, seed=1)
        values = keras.ops.convert_to_numpy(init((2, 5, 16)))
        assert not np.allclose(values[0], values[1])

    def test_sampled_vocab_too_long(self, backbone):
        init = initializers.SampledVocab(backbone, top_k=4)
        with pytest.raises(ValueError, match="top_k=4, length=5"):
            init((5, 16))

    def test_unbound_needs_table(self):
        with pytest.raises(ValueError, match="needs the frozen token"):
            initializers.SampledVocab()((2, 16))

    def test_class_label_averages_multi_token_labels(self, backbone, tokenizer):
        labels = ["red", "green blue", "black"]
        ids = [
            np.asarray(keras.ops.convert_to_numpy(tokenizer(label))).tolist()
            for label in labels
        ]
        assert len(ids[1]) > 1  # a multi-token label
        init = initializers.ClassLabel(
            labels, tokenizer, embeddings=backbone, top_k=20, seed=0
        )
        values = keras.ops.convert_to_numpy(init((5, 16)))
        table = table_of(backbone)
        for i, label_ids in enumerate(ids):
            np.testing.assert_allclose(
                values[i], table[label_ids].mean(0), rtol=1e-5
            )
        for row in values[3:]:
            nearest = int(np.argmin(np.abs(table - row).sum(-1)))
            assert nearest < 20
            np.testing.assert_allclose(row, table[nearest], rtol=1e-6)

    def test_class_label_config_round_trip(self, backbone, tokenizer):
        init = initializers.ClassLabel(
            ["red", "blue"], tokenizer, embeddings=backbone, seed=2
        )
        config = init.get_config()
        revived = initializers.ClassLabel.from_config(config).bind(backbone)
        self.assertAllClose(init((3, 16)), revived((3, 16)))
        assert "embeddings" not in config

    def test_class_label_needs_tokenizer(self):
        with pytest.raises(ValueError, match="tokenizer"):
            initializers.ClassLabel(["a", "b"])

    def test_from_tokens_and_text(self, backbone, tokenizer):
        ids = np.asarray(
            keras.ops.convert_to_numpy(tokenizer("red green blue"))
        ).tolist()
        by_text = initializers.FromTokens(
            text="red green blue", tokenizer=tokenizer, embeddings=backbone
        )
        by_ids = initializers.FromTokens(ids, embeddings=backbone)
        table = table_of(backbone)
        self.assertAllClose(by_text((3, 16)), table[ids])
        self.assertAllClose(by_ids((3, 16)), table[ids])
        with pytest.raises(ValueError, match="holds 3 tokens.*length 4"):
            by_ids((4, 16))

    def test_width_mismatch(self, backbone):
        init = initializers.FromTokens([1, 2], embeddings=backbone)
        with pytest.raises(ValueError, match="width 8 differs"):
            init((2, 8))

    def test_frozen_backbone_binds_table(self, backbone):
        wrapped = FrozenBackbone(
            backbone, prompt_length=4, initializer="sampled_vocab"
        )
        values = wrapped.prompt_values()
        table = table_of(backbone)
        for row in values:
            assert np.abs(table - row).sum(-1).min() < 1e-5

    def test_get(self):
        assert isinstance(
            initializers.get("random_uniform"), initializers.RandomUniform
        )
        with pytest.raises(ValueError, match="needs arguments"):
            initializers.get("class_label")
        with pytest.raises(ValueError, match="Unknown prompt initializer"):
            initializers.get("nope")

    @pytest.mark.parametrize(
        "init",
        [
            initializers.RandomUniform(seed=1),
            initializers.SampledVocab(top_k=100, seed=3),
            initializers.FromTokens([1, 2, 3]),
            initializers.ClassLabel(label_token_ids=[[4], [5, 6]], seed=1),
        ],
    )
    def test_serialization(self, init):
        revived = keras.initializers.deserialize(
            keras.initializers.serialize(init)
        )
        assert type(revived) is type(init)
        assert revived.get_config() == init.get_config()
