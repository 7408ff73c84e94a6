"""Label scoring (rank classification) of the text-generating tasks, for
every registered generative family: the scores are the log-likelihoods a
plain teacher-forced forward pass gives one label at a time, one-token
labels rank as greedy generation's first token, prompt banks pick each
input's prompt, bad arguments are one clear error, and
`TextToTextExamples.score` / the `Recipe` use scoring for labelled tasks.

The causal families all read a word-level GPT-2 tokenizer (the packing is
the task's, whatever the tokenizer): its padding id 0 is not its end
token, so greedy generation is not stopped by the padding.
"""

import functools
import itertools

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptSeq2SeqLM
from keras_prompt import toy
from keras_prompt.data.task import TextToTextTask
from keras_prompt.training import lester2021
from keras_prompt.training.splits import TextToTextExamples
from keras_prompt.training.splits import resolve_decode
from tests.test_case import STRING_FAMILIES
from tests.test_case import WORDS
from tests.test_case import TestCase
from tests.test_case import get_kind
from tests.test_case import random_prompt
from tests.test_case import registered_families
from tests.test_case import spread_weights
from tests.test_case import tiny_backbone
from tests.test_case import word_bpe

GENERATIVE = [f for f in registered_families() if get_kind(f) != "encoder"]
# Words both tiny tokenizers hold as single tokens.
LABEL_WORDS = WORDS[:10]
TEXTS = ["red cat fish", "blue", "cow bird dog green", "white black"]
# Labels of one and of several tokens.
LABELS = ["red cat", "blue", "dog fish cow"]


@functools.lru_cache(maxsize=None)
def tokenizer(kind):
    """The toy T5 SentencePiece tokenizer, or a word-level GPT-2 one whose
    padding id 0 is not its end token."""
    if kind == "seq2seq":
        return toy.toy_t5_preprocessor().tokenizer
    vocabulary, merges = word_bpe(LABEL_WORDS, ["!", "<|endoftext|>"])
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)


@functools.lru_cache(maxsize=None)
def backbone(family):
    """The tiny random `family` backbone for `tokenizer`, built once (a
    T5 takes seconds)."""
    extra = {"max_sequence_length": 32} if family == "gpt2" else {}
    vocabulary_size = tokenizer(get_kind(family)).vocabulary_size()
    return spread_weights(
        tiny_backbone(family, vocabulary_size=vocabulary_size, **extra)
    )


def make_model(
    family,
    sequence_length=12,
    target_length=None,
    prompt_seed=1,
    compiled=False,
):
    """A tiny prompted `family` task on `backbone(family)` with a random
    prompt drawn from `prompt_seed`, compiled to run eagerly unless
    `compiled` (tracing costs more than it saves on tiny models).
    T5 reads `sequence_length` input tokens and decodes `target_length`
    tokens after its start token (3 when `None`)."""
    kind = get_kind(family)
    if kind == "seq2seq":
        preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
            tokenizer(kind),
            encoder_sequence_length=sequence_length,
            decoder_sequence_length=(target_length or 3) + 1,
        )
    else:
        preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(
            tokenizer(kind), sequence_length=sequence_length
        )
    wrapped = FrozenBackbone(backbone(family), prompt_length=3)
    if get_kind(family) == "seq2seq":
        model = PromptSeq2SeqLM(wrapped, preprocessor)
    else:
        model = PromptCausalLM(wrapped, preprocessor, target_length)
    model.compile(run_eagerly=not compiled)
    return random_prompt(model, prompt_seed)


def reference_log_probs(model, text, label):
    """The log-probabilities of `label`'s target tokens (and the end token)
    after `text`: one plain forward pass of the task on the sequence built
    by hand."""
    tokenizer = model.preprocessor.tokenizer

    def ids(string):
        return [int(i) for i in np.asarray(tokenizer(string))]

    end = tokenizer.end_token_id
    if isinstance(model, PromptSeq2SeqLM):
        encoder = ids(text) + [end]
        targets = ids(label) + [end]
        decoder = [tokenizer.pad_token_id] + targets[:-1]
        logits = model(
            {
                "encoder_token_ids": np.array([encoder], "int32"),
                "encoder_padding_mask": np.ones((1, len(encoder)), bool),
                "decoder_token_ids": np.array([decoder], "int32"),
                "decoder_padding_mask": np.ones((1, len(decoder)), bool),
            }
        )[0]
        positions = np.arange(len(targets))
    else:
        assert model.preprocessor.add_start_token
        prefix = [tokenizer.start_token_id] + ids(text)
        targets = ids(model.target_separator + label) + [end]
        sequence = prefix + targets
        logits = model(
            {
                "token_ids": np.array([sequence[:-1]], "int32"),
                "padding_mask": np.ones((1, len(sequence) - 1), bool),
            }
        )[0]
        positions = len(prefix) - 1 + np.arange(len(targets))
    logits = np.asarray(keras.ops.convert_to_numpy(logits), "float64")
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return log_probs[positions, targets]


@pytest.mark.parametrize("family", GENERATIVE)
class TestLabelScoring(TestCase):
    def test_scores_are_the_teacher_forced_log_likelihoods(self, family):
        # The traced function for one family of each kind.
        model = make_model(family, compiled=family in STRING_FAMILIES.values())
        reference = [
            [reference_log_probs(model, text, label) for label in LABELS]
            for text in TEXTS
        ]
        # Several-token labels: the reference sums over more than one.
        assert {len(r) for r in reference[0]} >= {2, 4}
        # Two batches of unequal lengths.
        scores = model.score_labels(TEXTS, LABELS, batch_size=3)
        expected = np.array([[r.sum() for r in row] for row in reference])
        self.assertAllClose(scores, expected, atol=1e-5)
        means = model.score_labels(TEXTS, LABELS, normalization="mean")
        expected = np.array([[r.mean() for r in row] for row in reference])
        self.assertAllClose(means, expected, atol=1e-5)
        without_end = model.score_labels(TEXTS, LABELS, include_end_token=False)
        expected = np.array([[r[:-1].sum() for r in row] for row in reference])
        self.assertAllClose(without_end, expected, atol=1e-5)
        best, probability = model.predict_labels(TEXTS, LABELS)
        self.assertAllEqual(best, np.argmax(scores, axis=-1))
        softmax = np.exp(scores - scores.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        self.assertAllClose(probability, softmax.max(-1), atol=1e-6)

    def test_one_token_labels_rank_as_greedy_generation(self, family):
        """Greedy generation of one token, and scoring of one-token labels
        without the end token, read the same distribution: where the
        generated token is a label, scoring picks it. (With the end token,
        as by default, `p(end | label)` counts too: on these random models
        it changes the choice of some such rows in every family.)"""
        # Two-word inputs and room for one generated token.
        model = make_model(family, sequence_length=4, target_length=1)
        texts = [
            f"{a} {b}" for a, b in itertools.product(LABEL_WORDS, LABEL_WORDS)
        ]
        separator = "" if get_kind(family) == "seq2seq" else " "
        generated = [
            o.decode("utf-8") if isinstance(o, bytes) else str(o)
            for o in np.asarray(model.generate_targets(texts))
        ]
        # The labels: the words, and the generated pieces, that are one
        # token after the separator (a tokenizer may split a word it has).
        tokenizer = model.preprocessor.tokenizer
        candidates = set(LABEL_WORDS) | {
            output[len(separator) :]
            for output in generated
            if output.startswith(separator)
        }
        labels = sorted(
            label
            for label in candidates
            if label.strip()
            and np.asarray(tokenizer(separator + label)).shape == (1,)
        )
        rows = [
            i
            for i, output in enumerate(generated)
            if output.startswith(separator)
            and output[len(separator) :] in labels
        ]
        assert len(rows) >= 20, generated
        best, _ = model.predict_labels(
            [texts[i] for i in rows], labels, include_end_token=False
        )
        assert [separator + labels[b] for b in best] == [
            generated[i] for i in rows
        ]


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_bank_scores_each_input_with_its_prompt(family):
    from keras_prompt.serving import PromptBank

    tasks = {"a": make_model(family), "b": make_model(family, prompt_seed=2)}
    bank = PromptBank(tasks["a"], capacity=2)
    for name, model in tasks.items():
        bank.add_task(name, model)
    names = ["a", "b", "b", "a"]
    mixed = bank.model.score_labels(
        TEXTS, LABELS, prompt_ids=bank.task_ids(names)
    )
    alone = {n: m.score_labels(TEXTS, LABELS) for n, m in tasks.items()}
    # The prompts answer differently: the check means something.
    assert np.abs(alone["a"] - alone["b"]).max() > 1e-2
    for row, name in enumerate(names):
        np.testing.assert_allclose(mixed[row], alone[name][row], atol=1e-5)
    with pytest.raises(ValueError, match="prompt_ids=None"):
        bank.model.score_labels(TEXTS, LABELS)
    with pytest.raises(ValueError, match="one id per text"):
        bank.model.score_labels(TEXTS, LABELS, prompt_ids=[0, 1])
    with pytest.raises(ValueError, match="prompt_ids"):
        bank.model.score_labels(TEXTS, LABELS, prompt_ids=[0, 1, 2, 0])


def test_bad_arguments_are_one_error_naming_them():
    model = make_model("gpt2")
    for kwargs, error, message in [
        ({"label_strings": []}, ValueError, "`label_strings` must not be"),
        (
            {"label_strings": ["red", "blue", "red"]},
            ValueError,
            r"repeated: \['red'\]",
        ),
        ({"label_strings": ["red", 1]}, TypeError, "label_strings=.*1"),
        ({"label_strings": "red"}, TypeError, "label_strings='red'"),
        ({"normalization": "max"}, ValueError, "normalization='max'"),
        ({"texts": "red cat"}, TypeError, "texts='red cat'"),
        ({"texts": ["red", 3]}, TypeError, "texts="),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"include_end_token": "yes"}, TypeError, "include_end_token='yes'"),
        ({"prompt_ids": [0, 0, 0, 1]}, ValueError, "prompt_ids"),
    ]:
        arguments = {"texts": TEXTS, "label_strings": LABELS, **kwargs}
        with pytest.raises(error, match=message):
            model.score_labels(**arguments)
    bare = PromptCausalLM(model.backbone, None)
    with pytest.raises(ValueError, match="preprocessor=None"):
        bare.predict_labels(TEXTS, LABELS)


# -- evaluation: labelled tasks are scored, others generate --------------------
def color_task(label_strings=("red", "blue")):
    """A tiny task: `"<words>"` -> the first of `label_strings` it names
    (its label), or free text when `label_strings` is `None`."""

    def preprocess(record):
        if label_strings is None:
            return record["text"], record["target"]
        return record["text"], label_strings[record["label"]]

    def accuracy(predictions, examples):
        hits = [p == e.targets for p, e in zip(predictions, examples)]
        return {"accuracy": float(np.mean(hits))}

    return TextToTextTask(
        name="test/colors",
        tfds_name="test/colors",
        preprocess=preprocess,
        metric_names=("accuracy",),
        compute_metrics=accuracy,
        label_strings=label_strings,
        annotate=(
            None
            if label_strings
            else lambda record: {"answers": (record["target"],)}
        ),
    )


@pytest.mark.all_backends
def test_examples_are_scored_by_labels_unless_asked_to_generate():
    model = make_model("gpt2")
    task = color_task()
    # Each text twice, once per label: scoring is right on half of them.
    records = [
        {"text": text, "label": i // len(TEXTS), "target": "cat"}
        for i, text in enumerate(TEXTS * 2)
    ]
    examples = TextToTextExamples(task, [task.to_example(r) for r in records])
    texts = [e.inputs for e in examples.examples]
    best, _ = model.predict_labels(texts, task.label_strings)
    scored = task.score([task.label_strings[b] for b in best], examples.rows)
    generated = task.score(model.generate_targets(texts), examples.rows)
    assert scored == {"accuracy": 0.5}
    # The two decodings disagree here, so each check below can fail.
    assert scored != generated
    assert examples.score(model, batch_size=3) == scored
    assert examples.score(model, decode="score") == scored
    assert examples.score(model, decode="generate") == generated
    with pytest.raises(ValueError, match="decode='beam'"):
        examples.score(model, decode="beam")

    span = color_task(None)
    spans = TextToTextExamples(span, [span.to_example(r) for r in records])
    assert resolve_decode(None, span) == "generate"
    assert spans.score(model) == span.score(
        model.generate_targets(texts), spans.rows
    )
    with pytest.raises(ValueError, match="no label strings"):
        spans.score(model, decode="score")


def test_recipe_records_its_decoding():
    assert lester2021("glue/sst2").to_dict()["decode"] == "score"
    recipe = lester2021("glue/sst2", decode="generate")
    assert recipe.to_dict()["decode"] == "generate"
    assert lester2021("super_glue/record").to_dict()["decode"] == "generate"
    # The default follows the task.
    replaced = lester2021("glue/sst2").replace(task="super_glue/wsc")
    assert replaced.to_dict()["decode"] == "generate"
    with pytest.raises(ValueError, match="decode='greedy'"):
        lester2021("glue/sst2", decode="greedy")
    with pytest.raises(ValueError, match="'super_glue/record' has no label"):
        lester2021("super_glue/record", decode="score")
