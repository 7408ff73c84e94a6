import io
import os

import keras
import keras_hub
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import initializers
from keras_prompt.optimizers import Adafactor
from tests.test_case import WORDS
from tests.test_case import TestCase
from tests.test_case import tiny_backbone
from tests.test_case import tiny_t5
from tests.test_case import to_numpy

CONTENT = WORDS[:10]
PROMPT_TOKENS = [2, 5, 7]


def gpt2_tokenizer(words=CONTENT):
    """A word-level GPT-2 BPE: every word (with and without the leading
    space marker) is one token, built by explicit merges."""
    forms = [f for w in words for f in ("\u0120" + w, w)]
    vocabulary = {"<|endoftext|>": 0}
    for form in forms:
        vocabulary.setdefault(form, len(vocabulary))
    merges = []
    for form in forms:
        merged = form[0]
        vocabulary.setdefault(merged, len(vocabulary))
        for char in form[1:]:
            vocabulary.setdefault(char, len(vocabulary))
            rule = f"{merged} {char}"
            if rule not in merges:
                merges.append(rule)
            merged += char
            vocabulary.setdefault(merged, len(vocabulary))
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)


def llama_proto(words=CONTENT):
    """A word-level SentencePiece model with Llama's special pieces."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(words)] * 4),
        model_writer=model,
        vocab_size=len(words) + 3,
        model_type="word",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def spread_weights(backbone, stddev, seed=0):
    """Re-draws kernels and embeddings with a larger scale, so that a
    random tiny model is far from uniform and reacts to its prompt."""
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        if "kernel" in weight.path or "embeddings" in weight.path:
            weight.assign(rng.normal(0.0, stddev, weight.shape))


@pytest.fixture(scope="module")
def seeded():
    # Seed once, before any tokenizer of this module exists: resetting TF's
    # global seed later drops the SentencePiece resource that the tf.data
    # pipeline of `fit` uses.
    keras_prompt.set_random_seed(0)


@pytest.fixture(scope="module")
def gpt2(seeded):
    """`(backbone, preprocessor)`: GPT-2 with 16 positions, 8 tokens."""
    tokenizer = gpt2_tokenizer()
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
        tokenizer, sequence_length=8
    )
    backbone = tiny_backbone(
        "gpt2", vocabulary_size=tokenizer.vocabulary_size()
    )
    spread_weights(backbone, 0.3)
    return backbone, preprocessor


@pytest.fixture(scope="module")
def llama(seeded):
    """`(backbone, preprocessor)`: Llama, 8 tokens."""
    tokenizer = keras_hub.models.LlamaTokenizer(proto=llama_proto())
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer, sequence_length=8
    )
    backbone = tiny_backbone(
        "llama", vocabulary_size=tokenizer.vocabulary_size()
    )
    spread_weights(backbone, 0.3, seed=1)
    return backbone, preprocessor


def make_task(pair, prompt_length=3, **kwargs):
    backbone, preprocessor = pair
    wrapped = FrozenBackbone(backbone, prompt_length=prompt_length, **kwargs)
    return PromptCausalLM(wrapped, preprocessor)


def weights_of(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def greedy_uncached(task, x):
    """Greedy decoding re-running the whole prompted model every step."""
    x = to_numpy(x)
    tokens = x["token_ids"].copy()
    given = x["padding_mask"].astype(bool)
    for i in range(given.sum(1).min(), tokens.shape[1]):
        inputs = dict(x, token_ids=tokens, padding_mask=np.ones_like(tokens))
        logits = to_numpy(task(inputs))
        tokens[:, i] = np.where(
            given[:, i], tokens[:, i], logits[:, i - 1].argmax(-1)
        )
    return tokens


INPUTS = ["red blue cat", "dog", "fish cow bird white", "green"]


class TestPromptCausalLM(TestCase):
    @pytest.mark.parametrize("family", ["gpt2", "llama"])
    @pytest.mark.all_backends
    def test_cached_generation_equals_uncached_greedy(self, family, request):
        task = make_task(request.getfixturevalue(family))
        x = task.preprocessor.generate_preprocess(INPUTS, sequence_length=8)
        cached = to_numpy(task.generate_step(x, stop_token_ids=None))
        expected = greedy_uncached(task, x)
        self.assertAllEqual(cached["token_ids"], expected)
        # Something was generated after the shortest input.
        assert (expected != to_numpy(x["token_ids"])).any()

    @pytest.mark.parametrize("side", ["right", "left"])
    def test_logits_are_the_plain_models_on_inserted_tokens(self, gpt2, side):
        backbone, _ = gpt2
        task = make_task(
            gpt2, initializer=initializers.FromTokens(token_ids=PROMPT_TOKENS)
        )
        token_ids = np.array([[0, 2, 5, 7, 0, 0], [0, 9, 11, 2, 4, 6]])
        lengths = [4, 6]
        mask = np.arange(6)[None] < np.array(lengths)[:, None]
        if side == "left":
            token_ids = np.stack(
                [np.roll(r, 6 - n) for r, n in zip(token_ids, lengths)]
            )
            mask = mask[:, ::-1]
        x = {"token_ids": token_ids.astype("int32"), "padding_mask": mask}
        logits = to_numpy(task(x))
        assert logits.shape == (2, 6, backbone.vocabulary_size)
        for row in range(2):
            k = 0 if side == "right" else 6 - lengths[row]
            ids = np.concatenate(
                [token_ids[row, :k], PROMPT_TOKENS, token_ids[row, k:]]
            )[None].astype("int32")
            ids_mask = np.concatenate([mask[row, :k], [1] * 3, mask[row, k:]])
            reference = backbone.token_embedding(
                backbone({"token_ids": ids, "padding_mask": ids_mask[None]}),
                reverse=True,
            )
            reference = np.delete(to_numpy(reference)[0], range(k, k + 3), 0)
            real = mask[row]
            self.assertAllClose(logits[row][real], reference[real], atol=1e-4)

    def test_loss_masks_padding_and_prompt_positions(self, gpt2):
        task = make_task(gpt2)
        x, y, weights = task.preprocess_samples(["red blue", "cat dog fish"])
        x, y, weights = to_numpy(x), to_numpy(y), to_numpy(weights)
        logits = to_numpy(task(x))
        # No prompt position reaches the loss: the logits are exactly the
        # preprocessor's label positions.
        assert logits.shape[:2] == y.shape == weights.shape == (2, 8)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
        # Keras' default reduction divides by the number of label positions.
        expected = (nll * weights).sum() / weights.size
        loss = task.compute_loss(x=x, y=y, y_pred=logits, sample_weight=weights)
        np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
        changed = y.copy()
        changed[weights == 0] = 7
        loss2 = task.compute_loss(
            x=x, y=changed, y_pred=logits, sample_weight=weights
        )
        np.testing.assert_allclose(float(loss), float(loss2), rtol=1e-6)

    @pytest.mark.all_backends
    def test_fit_on_strings_trains_only_the_prompt(self, llama):
        # The sampled init and the shuffling draw from the global seed: fixed
        # here, so the outcome does not depend on the tests run before.
        keras_prompt.set_random_seed(0)
        backbone, _ = llama
        task = make_task(llama, prompt_length=4, initializer="sampled_vocab")
        task.compile(jit_compile=False)
        assert isinstance(task.optimizer, Adafactor)
        before = weights_of(backbone)
        prompt_before = task.backbone.prompt_values()
        texts = ["red blue cat dog", "fish cow bird"] * 8
        history = task.fit(texts, batch_size=8, epochs=3, verbose=0)
        losses = history.history["loss"]
        assert losses[-1] < 0.9 * losses[0]
        assert not np.allclose(prompt_before, task.backbone.prompt_values())
        for b, a in zip(before, weights_of(backbone)):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.all_backends
    def test_generate_strings(self, llama):
        task = make_task(llama)
        task.compile(run_eagerly=True)
        outputs = task.generate(["red blue", "cat"], max_length=6)
        assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
        assert outputs[0].startswith("red blue")
        stripped = task.generate(
            ["red blue", "cat"], max_length=6, strip_prompt=True
        )
        assert outputs[0].endswith(stripped[0])
        assert not stripped[0].startswith("red blue")

    @pytest.mark.all_backends
    def test_bank(self, gpt2):
        bank = make_task(gpt2, prompt_length=2, num_prompts=2)
        bank.compile(jit_compile=False)
        x = bank.preprocessor.generate_preprocess(INPUTS, sequence_length=8)
        ids = np.array([1, 0, 1, 0], "int32")
        mixed = to_numpy(bank.generate_step(dict(x, prompt_ids=ids)))
        for pid in (0, 1):
            single = make_task(gpt2, prompt_length=2)
            single.backbone.assign_prompts(bank.backbone.prompt_values()[pid])
            alone = to_numpy(single.generate_step(x))["token_ids"]
            rows = ids == pid
            self.assertAllEqual(mixed["token_ids"][rows], alone[rows])
        # prompt_ids flow through preprocessing and `generate`.
        samples = bank.preprocess_samples(
            {"prompts": INPUTS, "prompt_ids": ids}
        )
        self.assertAllEqual(samples[0]["prompt_ids"], ids)
        outputs = bank.generate(
            {"prompts": INPUTS, "prompt_ids": ids}, stop_token_ids=None
        )
        expected = bank.preprocessor.generate_postprocess(mixed)
        assert outputs == list(expected)
        with pytest.raises(ValueError, match=r"prompt_ids=\[0, 2\]"):
            bank.generate({"prompts": ["red", "cat"], "prompt_ids": [0, 2]})

    def test_gpt2_prompt_plus_sequence_too_long(self, gpt2):
        backbone, _ = gpt2
        preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
            gpt2[1].tokenizer, sequence_length=13
        )
        wrapped = FrozenBackbone(backbone, prompt_length=4)
        with pytest.raises(ValueError, match=r"\(4\) \+ sequence_length \(13"):
            PromptCausalLM(wrapped, preprocessor)
        task = make_task(gpt2, prompt_length=4)
        with pytest.raises(ValueError, match="exceeds the 16 positions"):
            task.generate(["red"], max_length=13)

    @pytest.mark.all_backends
    def test_prompt_file_round_trip(self, gpt2, tmp_path):
        task = make_task(gpt2)
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        task.save_prompts(path)
        other = make_task(gpt2)
        metadata = other.load_prompts(path)
        self.assertAllEqual(
            other.backbone.prompt_values(), task.backbone.prompt_values()
        )
        assert metadata["task_class"] == "PromptCausalLM"
        assert metadata["family"] == "gpt2"

    def test_keras_saving(self, gpt2, tmp_path):
        task = make_task(gpt2)
        x = to_numpy(task.preprocessor.generate_preprocess(INPUTS))
        restored = self.run_model_saving_test(task, x, tmp_path)
        self.assertAllClose(
            restored.backbone.prompt_values(), task.backbone.prompt_values()
        )
        assert len(restored.trainable_weights) == 1
        assert restored.backbone.family == "gpt2"

    def test_from_preset(self, gpt2, tmp_path):
        backbone, preprocessor = gpt2
        preset = os.path.join(str(tmp_path), "preset")
        backbone.save_to_preset(preset)
        keras_hub.models.GPT2CausalLMPreprocessor(
            preprocessor.tokenizer, sequence_length=16
        ).save_to_preset(preset)
        task = PromptCausalLM.from_preset(preset, prompt_length=4)
        assert isinstance(
            task.preprocessor, keras_hub.models.GPT2CausalLMPreprocessor
        )
        # The preset's 16 tokens are shortened so that the prompt fits.
        assert task.preprocessor.sequence_length == 12
        for saved, loaded in zip(
            backbone.weights, task.backbone.backbone.weights
        ):
            self.assertAllEqual(saved, loaded)
        task = PromptCausalLM.from_preset(
            preset, prompt_length=4, sequence_length=6
        )
        assert task.preprocessor.sequence_length == 6
        with pytest.raises(ValueError, match="exceeds the 16 positions"):
            PromptCausalLM.from_preset(
                preset, prompt_length=4, sequence_length=14
            )

    def test_compile_defaults_and_wrong_backbones(self, gpt2):
        task = make_task(gpt2)
        assert isinstance(task.optimizer, Adafactor)
        assert isinstance(task.sampler, keras_hub.samplers.GreedySampler)
        with pytest.raises(ValueError, match="causal backbone"):
            PromptCausalLM(FrozenBackbone(tiny_t5(), prompt_length=2))
        with pytest.raises(TypeError, match="FrozenBackbone"):
            PromptCausalLM(gpt2[0], gpt2[1])
