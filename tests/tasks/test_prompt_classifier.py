import os
import string

import keras
import keras_hub
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from tests.test_case import WORDS
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_t5
from tests.test_case import to_numpy
from tests.test_case import wordpiece_vocabulary

SEQUENCE_LENGTH = 8
COLORS, ANIMALS = WORDS[:5], WORDS[5:10]


def tiny_bert(seed=0):
    """A tiny random BERT whose weights are rescaled (unit embeddings,
    1/sqrt(fan-in) kernels) so that, as in a pretrained model, its [CLS]
    state depends on the input; with BERT's 0.02 initialisation it hardly
    does."""
    keras_prompt.set_random_seed(seed)
    vocab = wordpiece_vocabulary()
    bert = tiny_backbone("bert", vocabulary_size=len(vocab))
    rng = np.random.default_rng(seed)
    for weight in bert.weights:
        shape = tuple(weight.shape)
        if len(shape) < 2:
            continue
        if "embedding" in weight.path:
            std = 1.0
        elif "attention_output" in weight.path:
            std = 1 / np.sqrt(np.prod(shape[:-1]))
        else:
            std = 1 / np.sqrt(shape[0])
        weight.assign(rng.normal(0, std, shape).astype("float32"))
    return bert


def bert_preprocessor(sequence_length=SEQUENCE_LENGTH):
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=wordpiece_vocabulary()
    )
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )


def toy_data(rng, count):
    """Colour sentences are class 0, animal sentences class 1."""
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        words = rng.choice((COLORS, ANIMALS)[label], size=rng.integers(2, 5))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels)


def features(model, texts):
    """The preprocessed inputs of `texts`, as NumPy."""
    x = model.preprocess_samples(texts)
    return to_numpy(keras.utils.unpack_x_y_sample_weight(x)[0])


def weights_of(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


def make_classifier(bert, prompt_length=3, num_classes=2, **kwargs):
    backbone_kwargs = {
        key: kwargs.pop(key) for key in ("num_prompts",) if key in kwargs
    }
    backbone = FrozenBackbone(
        bert, prompt_length=prompt_length, **backbone_kwargs
    )
    return PromptClassifier(
        backbone,
        num_classes=num_classes,
        preprocessor=kwargs.pop("preprocessor", bert_preprocessor()),
        **kwargs,
    )


def randomize(classifier, seed):
    """Gives prompt and head random values (as training would)."""
    rng = np.random.default_rng(seed)
    for variable in classifier.trainable_weights:
        shape = tuple(variable.shape)
        variable.assign(rng.normal(0, 0.5, shape).astype("float32"))


def save_preset(bert, tmp_path):
    preset = os.path.join(str(tmp_path), "preset")
    bert.save_to_preset(preset)
    bert_preprocessor().tokenizer.save_to_preset(preset)
    return preset


class TestPromptClassifier(TestCase):
    @pytest.mark.all_backends
    def test_learns_toy_task_and_only_prompt_and_head_change(self, bert):
        model = make_classifier(bert, prompt_length=4)
        model.compile(optimizer=keras.optimizers.Adam(0.1))
        head = model.head
        assert {id(w) for w in model.trainable_weights} == {
            id(model.backbone.prompt_embedding.embeddings),
            id(head.kernel),
            id(head.bias),
        }
        before = weights_of(bert)
        texts, labels = toy_data(np.random.default_rng(0), 64)
        start = np.mean(model.predict(texts, verbose=0).argmax(-1) == labels)
        history = model.fit(texts, labels, batch_size=16, epochs=10, verbose=0)
        losses = history.history["loss"]
        assert losses[-1] < 0.5 * losses[0]
        end = np.mean(model.predict(texts, verbose=0).argmax(-1) == labels)
        assert end >= 0.85 and end >= start + 0.3
        for b, a in zip(before, weights_of(bert)):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.all_backends
    def test_predict_gives_probabilities(self, bert):
        model = make_classifier(bert, num_classes=3)
        randomize(model, 1)
        texts = ["red cat", "blue dog bird", "sun"]
        probs = model.predict(texts, verbose=0)
        assert probs.shape == (3, 3)
        assert np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        # `activation=None` gives the logits behind those probabilities.
        logits_model = make_classifier(bert, num_classes=3, activation=None)
        for a, b in zip(
            logits_model.trainable_weights, model.trainable_weights
        ):
            a.assign(b)
        logits = logits_model.predict(texts, verbose=0)
        expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
        np.testing.assert_allclose(probs, expected, atol=1e-6)
        assert logits_model.loss.get_config()["from_logits"] is True

    def test_compile_defaults(self, bert):
        model = make_classifier(bert)
        assert isinstance(model.optimizer, keras.optimizers.Adam)
        np.testing.assert_allclose(
            float(model.optimizer.learning_rate), 1e-2, rtol=1e-6
        )
        assert isinstance(
            model.loss, keras.losses.SparseCategoricalCrossentropy
        )
        assert model.loss.get_config()["from_logits"] is False
        assert model.head.activation is keras.activations.softmax

    def test_head_reads_cls_state(self, bert):
        model = make_classifier(bert, activation=None, dropout=0.0)
        randomize(model, 2)
        x = features(model, ["red cat dog"])
        cls = to_numpy(model.backbone(x)["sequence_output"])[:, 0]
        kernel, bias = (to_numpy(w) for w in model.head.weights)
        self.assertAllClose(model(x), cls @ kernel + bias)

    def test_mean_pooling_averages_cls_prompt_and_real_tokens(self, bert):
        model = make_classifier(
            bert, prompt_length=3, activation=None, dropout=0.0, pooling="mean"
        )
        randomize(model, 2)
        x = features(model, ["red cat dog", "sun"])
        sequence = to_numpy(model.backbone(x)["sequence_output"])
        # Reference: [CLS], the 3 prompt positions, then the tokens after
        # [CLS] where the padding mask is on.
        mask = np.concatenate(
            [
                x["padding_mask"][:, :1],
                np.ones((2, 3)),
                x["padding_mask"][:, 1:],
            ],
            axis=1,
        ).astype("float32")
        assert mask[1].sum() < mask[0].sum() < mask.shape[1]  # padding
        pooled = (sequence * mask[..., None]).sum(1) / mask.sum(
            1, keepdims=True
        )
        kernel, bias = (to_numpy(w) for w in model.head.weights)
        self.assertAllClose(model(x), pooled @ kernel + bias, atol=1e-5)
        # Padding positions do not count: changing a padded token id
        # changes nothing.
        changed = dict(x)
        changed["token_ids"] = x["token_ids"].copy()
        changed["token_ids"][1, -1] = 7
        self.assertAllClose(model(changed), model(x), atol=1e-6)

    def test_pooling_travels_in_config_and_prompt_file(self, bert, tmp_path):
        model = make_classifier(bert, pooling="mean")
        assert self.run_serialization_test(model).pooling == "mean"
        randomize(model, 8)
        path = os.path.join(str(tmp_path), "mean.prompt.safetensors")
        model.save_prompts(path)
        texts = ["red cat", "blue dog bird"]
        restored = make_classifier(bert, pooling="mean")
        assert restored.load_prompts(path)["pooling"] == "mean"
        np.testing.assert_array_equal(
            restored.predict(texts, verbose=0), model.predict(texts, verbose=0)
        )
        cls_model = make_classifier(bert)
        before = weights_of(cls_model)
        with pytest.raises(ValueError, match="pooling='mean'"):
            cls_model.load_prompts(path)
        for b, a in zip(before, weights_of(cls_model)):
            np.testing.assert_array_equal(a, b)
        with pytest.raises(ValueError, match="pooling"):
            make_classifier(bert, pooling="max")

    @pytest.mark.all_backends
    def test_prompt_file_restores_classifier_via_from_preset(
        self, bert, tmp_path
    ):
        preset = save_preset(bert, tmp_path)
        kwargs = dict(
            num_classes=3, prompt_length=3, sequence_length=SEQUENCE_LENGTH
        )
        model = PromptClassifier.from_preset(preset, **kwargs)
        assert isinstance(
            model.preprocessor, keras_hub.models.BertTextClassifierPreprocessor
        )
        assert model.preprocessor.sequence_length == SEQUENCE_LENGTH
        for a, b in zip(bert.weights, model.backbone.backbone.weights):
            self.assertAllEqual(a, b)
        randomize(model, 3)
        path = os.path.join(str(tmp_path), "cls.prompt.safetensors")
        model.save_prompts(path)

        texts = ["red cat", "blue dog bird", "sun moon"]
        expected = model.predict(texts, verbose=0)
        restored = PromptClassifier.from_preset(preset, **kwargs)
        assert not np.allclose(restored.predict(texts, verbose=0), expected)
        metadata = restored.load_prompts(path)
        assert metadata["task_class"] == "PromptClassifier"
        np.testing.assert_array_equal(
            restored.predict(texts, verbose=0), expected
        )

    def test_prompt_file_checks(self, bert, tmp_path):
        model = make_classifier(bert, num_classes=3)
        randomize(model, 4)
        path = os.path.join(str(tmp_path), "cls.prompt.safetensors")
        model.save_prompts(path)
        # Another backbone of the same shape (other weights).
        other = make_classifier(tiny_bert(seed=7), num_classes=3)
        with pytest.raises(ValueError, match="another backbone"):
            other.load_prompts(path)
        # Same backbone, other head: rejected, model unchanged.
        two_classes = make_classifier(bert, num_classes=2)
        before = weights_of(two_classes)
        with pytest.raises(ValueError, match="num_classes=2"):
            two_classes.load_prompts(path)
        for b, a in zip(before, weights_of(two_classes)):
            np.testing.assert_array_equal(a, b)
        # Same backbone, other prompt length.
        longer = make_classifier(bert, prompt_length=5, num_classes=3)
        with pytest.raises(ValueError, match="prompt_length=5"):
            longer.load_prompts(path)
        # A bare FrozenBackbone prompt file has no head.
        bare = os.path.join(str(tmp_path), "bare.prompt.safetensors")
        model.backbone.save_prompts(bare)
        with pytest.raises(ValueError, match="no classification head"):
            model.load_prompts(bare)

    def test_keras_saving_round_trip(self, bert, tmp_path):
        model = make_classifier(bert)
        randomize(model, 5)
        x = features(model, ["red cat", "dog"])
        restored = self.run_model_saving_test(model, x, tmp_path)
        texts = ["red blue cat", "sun"]
        np.testing.assert_array_equal(
            restored.predict(texts, verbose=0), model.predict(texts, verbose=0)
        )
        assert len(restored.trainable_weights) == 3

    def test_config_round_trip(self, bert):
        model = make_classifier(bert, num_classes=4, dropout=0.2)
        revived = self.run_serialization_test(model)
        assert revived.num_classes == 4 and revived.dropout == 0.2
        assert isinstance(revived.backbone, FrozenBackbone)

    def test_bank_has_one_head_per_prompt(self, bert):
        bank = make_classifier(bert, prompt_length=2, num_prompts=2)
        randomize(bank, 6)
        assert tuple(bank.head.kernel.shape) == (2, 16, 2)
        texts = ["red cat", "blue dog bird", "sun moon"]
        ids = np.array([1, 0, 1], "int32")
        mixed = bank.predict({"text": texts, "prompt_ids": ids}, verbose=0)
        x = features(bank, {"text": texts, "prompt_ids": ids})
        self.assertAllEqual(x.pop("prompt_ids"), ids)
        for pid in (0, 1):
            single = make_classifier(bert, prompt_length=2)
            single.backbone.assign_prompts(bank.backbone.prompt_values()[pid])
            single.head.kernel.assign(bank.head.kernel[pid])
            single.head.bias.assign(bank.head.bias[pid])
            rows = ids == pid
            self.assertAllClose(mixed[rows], to_numpy(single(x))[rows])
        labels = np.array([0, 1, 0])
        bank.fit({"text": texts, "prompt_ids": ids}, labels, verbose=0)
        with pytest.raises(ValueError, match="prompt_ids"):
            bank.predict(texts, verbose=0)

    def test_too_long_prompt_and_sequence_raise_before_compute(self, bert):
        backbone = FrozenBackbone(bert, prompt_length=9)
        with pytest.raises(ValueError, match="exceeds the 16 positions"):
            PromptClassifier(backbone, 2, preprocessor=bert_preprocessor())
        # Fits exactly: 8 + 8 = 16.
        fits = FrozenBackbone(bert, prompt_length=8)
        PromptClassifier(fits, 2, preprocessor=bert_preprocessor())

    def test_from_preset_too_long_raises(self, bert, tmp_path):
        preset = save_preset(bert, tmp_path)
        # The default prompt (20) fills all 16 positions by itself.
        with pytest.raises(ValueError, match=r"prompt_length \(20\) leaves"):
            PromptClassifier.from_preset(preset, num_classes=2)
        # A shorter prompt fits, but not with the default 128 text tokens.
        with pytest.raises(ValueError, match=r"\(10\) \+ sequence_length"):
            PromptClassifier.from_preset(
                preset, num_classes=2, prompt_length=10
            )

    def test_bad_arguments(self, bert):
        backbone = FrozenBackbone(bert, prompt_length=2)
        with pytest.raises(TypeError, match="FrozenBackbone"):
            PromptClassifier(bert, 2)
        with pytest.raises(ValueError, match="num_classes"):
            PromptClassifier(backbone, 1)
        with pytest.raises(TypeError, match="num_classes"):
            PromptClassifier(backbone, "2")
        with pytest.raises(ValueError, match="dropout"):
            PromptClassifier(backbone, 2, dropout=1.0)
        with pytest.raises(ValueError, match="encoder backbone"):
            PromptClassifier(FrozenBackbone(tiny_t5(), prompt_length=2), 2)
        model = make_classifier(bert)
        with pytest.raises(ValueError, match="extra keys"):
            model.predict({"text": ["red"], "label": [0]}, verbose=0)


def roberta_tokenizer():
    """Character-level BPE (words become characters; `Ġ` marks spaces)."""
    letters = string.ascii_lowercase
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + list(letters)
    tokens += ["Ġ" + c for c in letters] + ["Ġ"]
    vocabulary = {token: i for i, token in enumerate(tokens)}
    merges = ["Ġ " + c for c in letters]
    return keras_hub.models.RobertaTokenizer(
        vocabulary=vocabulary, merges=merges
    )


class TestOtherFamilies(TestCase):
    @pytest.mark.parametrize("family", ["roberta", "distil_bert"])
    def test_fit_and_predict_on_strings(self, family):
        if family == "roberta":
            tokenizer = roberta_tokenizer()
            preprocessor_cls = (
                keras_hub.models.RobertaTextClassifierPreprocessor
            )
        else:
            tokenizer = keras_hub.models.DistilBertTokenizer(
                vocabulary=wordpiece_vocabulary()
            )
            preprocessor_cls = (
                keras_hub.models.DistilBertTextClassifierPreprocessor
            )
        encoder = tiny_backbone(
            family, vocabulary_size=tokenizer.vocabulary_size()
        )
        model = PromptClassifier(
            FrozenBackbone(encoder, prompt_length=3),
            num_classes=2,
            preprocessor=preprocessor_cls(tokenizer, sequence_length=12),
        )
        before = weights_of(encoder)
        prompt = model.backbone.prompt_values().copy()
        texts, labels = toy_data(np.random.default_rng(1), 8)
        model.fit(texts, labels, batch_size=4, epochs=1, verbose=0)
        assert not np.allclose(model.backbone.prompt_values(), prompt)
        for b, a in zip(before, weights_of(encoder)):
            np.testing.assert_array_equal(a, b)
        # (Eager call on preprocessed strings: `predict` would trace the
        # preprocessing again, slow for BPE.)
        probs = to_numpy(model(features(model, texts[:3])))
        assert probs.shape == (3, 2)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.slow
class TestMiniLM(TestCase):
    def test_prompt_classifier_on_pretrained_minilm(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from keras_prompt.pretrained import minilm_preset_dir

        model = PromptClassifier.from_preset(
            minilm_preset_dir(),
            num_classes=2,
            prompt_length=20,
            sequence_length=32,
        )
        assert isinstance(
            model.backbone.backbone, keras_hub.models.BertBackbone
        )
        assert isinstance(
            model.preprocessor, keras_hub.models.BertTextClassifierPreprocessor
        )
        hidden = model.backbone.hidden_dim
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == 20 * hidden + hidden * 2 + 2
        total = model.count_params()
        assert trainable / total < 1e-3
        before = weights_of(model.backbone.backbone)
        texts = [
            "a wonderful, moving film",
            "i loved every minute",
            "dull and far too long",
            "a complete waste of time",
        ]
        labels = np.array([1, 1, 0, 0])
        model.fit(texts, labels, batch_size=4, epochs=3, verbose=0)
        probs = model.predict(texts, verbose=0)
        assert probs.shape == (4, 2)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        for b, a in zip(before, weights_of(model.backbone.backbone)):
            np.testing.assert_array_equal(a, b)
        assert keras_prompt.PromptClassifier is PromptClassifier
