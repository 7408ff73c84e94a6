"""`keras_prompt.training`: the paper's defaults, overrides, class-label
initialisation, and `fit` keeping the best prompt."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import PromptSeq2SeqLM
from keras_prompt import initializers
from keras_prompt import toy
from keras_prompt import training as recipes
from keras_prompt.data import load_examples
from keras_prompt.optimizers import Adafactor
from keras_prompt.prompt_files import read_prompt_file
from keras_prompt.training import lester2021
from tests.conftest import SHARED_TFDS_DIR

needs_sst2 = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_TFDS_DIR, "glue", "sst2")),
    reason=f"glue/sst2 is not prepared in {SHARED_TFDS_DIR}",
)
LABEL_WORDS = ("negative", "positive")


@pytest.fixture(scope="module")
def parts():
    """A tiny T5 whose word vocabulary knows the toy words, SST-2's labels
    and its `sentence:` field."""
    rng = np.random.default_rng(0)
    corpus = [" ".join(words) for words in toy.sentences(rng, 200)]
    corpus += ["sentence: negative positive"] * 20
    tokenizer = keras_hub.models.T5Tokenizer(
        proto=toy.sentencepiece_proto(corpus, vocab_size=40)
    )
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=4
    )
    backbone = toy.toy_t5(tokenizer.vocabulary_size(), hidden_dim=16)
    return backbone, preprocessor


@pytest.fixture(scope="module")
def tiny_model(parts):
    """One recipe-built model reused by the `fit` tests (tracing is slow);
    `fit` keeps a model's compiled optimiser."""
    backbone, preprocessor = parts
    recipe = lester2021("glue/sst2", prompt_length=4)
    return recipe.build_model(
        backbone=backbone, preprocessor=preprocessor, jit_compile=False
    )


def tiny_recipe(**kwargs):
    settings = dict(
        prompt_length=4,
        batch_size=8,
        steps=4,
        eval_interval=2,
        eval_batch_size=16,
    )
    settings.update(kwargs)
    return lester2021("glue/sst2", **settings)


def table(backbone):
    return keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)


def token_ids(tokenizer, text):
    return keras.ops.convert_to_numpy(tokenizer(text)).tolist()


# -- defaults and overrides -------------------------------------------------
def test_defaults_are_the_papers():
    recipe = lester2021(task="glue/sst2")
    assert recipe.task.name == "glue/sst2"
    assert recipe.prompt_length == 100
    assert recipe.initializer == "class_label"
    assert recipe.label_strings == LABEL_WORDS
    assert recipe.learning_rate == 0.3
    assert recipe.decay_rate == 0.8
    assert recipe.weight_decay_rate == 1e-5
    assert recipe.multiply_by_parameter_scale is False
    assert recipe.clipping_threshold == 1.0
    assert recipe.factored is False
    assert recipe.batch_size == 32
    assert recipe.steps == 30_000
    assert recipe.eval_split == "validation"
    assert recipe.patience is None  # the paper trains all steps
    assert recipe.sampled_vocab_top_k == 5_000
    # Departures, documented in the module docstring.
    assert recipe.eval_interval == 1_000
    assert recipe.encoder_sequence_length == 512
    assert recipe.decoder_sequence_length == 128

    optimizer = recipe.optimizer()
    assert isinstance(optimizer, Adafactor)
    assert float(optimizer.learning_rate) == pytest.approx(0.3)
    assert optimizer.decay_rate == 0.8
    assert optimizer.weight_decay_rate == 1e-5
    assert optimizer.multiply_by_parameter_scale is False
    assert optimizer.clipping_threshold == 1.0
    assert optimizer.factored is False
    assert optimizer.beta1 is None
    # A new optimiser per call (each model gets fresh slots).
    assert recipe.optimizer() is not optimizer
    assert recipes.paper_recipe is lester2021


def test_overrides():
    recipe = lester2021(
        "glue/sst2",
        prompt_length=5,
        steps=20,
        eval_interval=10,
        learning_rate=0.1,
        patience=3,
    )
    assert (recipe.prompt_length, recipe.steps, recipe.eval_interval) == (
        5,
        20,
        10,
    )
    assert float(recipe.optimizer().learning_rate) == pytest.approx(0.1)
    changed = recipe.replace(batch_size=4)
    assert changed.batch_size == 4 and recipe.batch_size == 32
    assert changed.patience == 3
    summary = recipe.to_dict()
    assert summary["task"] == "glue/sst2"
    assert summary["learning_rate"] == 0.1
    json.dumps(summary)
    assert lester2021().task is None


@pytest.mark.parametrize("name", ["adam", "adafactor"])
def test_cosine_schedule_decays_to_zero_over_the_steps(name):
    recipe = lester2021(
        "glue/sst2",
        optimizer_name=name,
        learning_rate=0.2,
        steps=40,
        eval_interval=10,
        schedule="cosine",
    )
    assert lester2021("glue/sst2").schedule == "constant"  # the paper's
    optimizer = recipe.optimizer()
    variable = keras.Variable(np.zeros((3,), "float32"))
    optimizer.build([variable])
    for step in (0, 10, 20, 40):
        optimizer.iterations.assign(step)
        reference = 0.2 * 0.5 * (1 + np.cos(np.pi * step / 40))
        assert float(optimizer.learning_rate) == pytest.approx(
            reference, abs=1e-7
        )
    assert recipe.to_dict()["schedule"] == "cosine"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 25, "eval_interval": 10}, ValueError, "steps=25"),
        ({"prompt_length": 0}, ValueError, "prompt_length=0"),
        ({"batch_size": True}, ValueError, "batch_size=True"),
        ({"learning_rate": -0.3}, ValueError, "learning_rate=-0.3"),
        ({"patience": 0}, ValueError, "patience=0"),
        ({"initializer": "zeros"}, ValueError, "initializer='zeros'"),
        ({"initializer": 3}, TypeError, "initializer=3"),
        ({"labels": "negative"}, TypeError, "labels='negative'"),
        ({"factored": 1}, TypeError, "factored=1"),
        ({"pooling": 3}, ValueError, "pooling=3"),
        ({"pooling": "max"}, ValueError, "pooling='max'"),
        ({"schedule": "linear"}, ValueError, "schedule='linear'"),
        ({"frozen_dropout": 1.0}, ValueError, "frozen_dropout=1.0"),
        ({"frozen_dropout": -0.1}, ValueError, "frozen_dropout=-0.1"),
        ({"promt_length": 5}, TypeError, "promt_length"),
        ({"task": "glue/nope"}, ValueError, "glue/nope"),
    ],
)
def test_bad_settings(kwargs, error, match):
    kwargs = dict(kwargs)
    task = kwargs.pop("task", "glue/sst2")
    with pytest.raises(error, match=match):
        lester2021(task, **kwargs)


# -- initialisation and models ---------------------------------------------
def test_class_label_initialisation_uses_task_labels(parts):
    backbone, preprocessor = parts
    tokenizer = preprocessor.tokenizer
    recipe = lester2021("glue/sst2", prompt_length=6)
    init = recipe.make_initializer(tokenizer)
    assert isinstance(init, initializers.ClassLabel)
    assert init.labels == list(LABEL_WORDS)

    model = recipe.build_model(backbone=backbone, preprocessor=preprocessor)
    assert isinstance(model, PromptSeq2SeqLM)
    assert isinstance(model.optimizer, Adafactor)
    assert model.backbone.prompt_length == 6
    assert len(model.trainable_weights) == 1
    prompt = model.backbone.prompt_values()
    embeddings = table(backbone)
    for row, label in enumerate(LABEL_WORDS):
        ids = token_ids(tokenizer, label)
        assert ids and 2 not in ids  # known words, not <unk>
        np.testing.assert_allclose(
            prompt[row], embeddings[ids].mean(axis=0), rtol=1e-6
        )
    # The other positions are vocabulary embeddings (sampled vocab).
    for row in prompt[2:]:
        assert np.isclose(embeddings, row).all(axis=1).any()


def test_labels_override_averages_multi_token_labels(parts):
    backbone, preprocessor = parts
    tokenizer = preprocessor.tokenizer
    recipe = lester2021(prompt_length=3, labels=["red cat", "blue"])
    model = recipe.build_model(backbone=backbone, preprocessor=preprocessor)
    prompt = model.backbone.prompt_values()
    embeddings = table(backbone)
    red_cat = token_ids(tokenizer, "red cat")
    assert len(red_cat) == 2
    np.testing.assert_allclose(
        prompt[0], embeddings[red_cat].mean(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(
        prompt[1], embeddings[token_ids(tokenizer, "blue")][0], rtol=1e-6
    )


def test_other_initialisers(parts):
    _, preprocessor = parts
    tokenizer = preprocessor.tokenizer
    span = lester2021("super_glue/record").make_initializer(tokenizer)
    assert isinstance(span, initializers.SampledVocab)
    assert span.top_k == 5_000
    vocab = lester2021("glue/sst2", initializer="sampled_vocab")
    assert isinstance(
        vocab.make_initializer(tokenizer), initializers.SampledVocab
    )
    uniform = lester2021("glue/sst2", initializer="random_uniform")
    assert isinstance(
        uniform.make_initializer(tokenizer), initializers.RandomUniform
    )
    given = initializers.FromTokens([3, 4])
    assert lester2021(initializer=given).make_initializer() is given
    with pytest.raises(ValueError, match="tokenizer=None"):
        lester2021("glue/sst2").make_initializer()


def test_build_model_from_preset(parts, tmp_path):
    backbone, preprocessor = parts
    preset = os.path.join(str(tmp_path), "preset")
    backbone.save_to_preset(preset)
    preprocessor.tokenizer.save_to_preset(preset)
    recipe = lester2021(
        "glue/sst2",
        prompt_length=2,
        encoder_sequence_length=12,
        decoder_sequence_length=3,
    )
    model = recipe.build_model(preset)
    assert model.preprocessor.encoder_sequence_length == 12
    assert model.preprocessor.decoder_sequence_length == 3
    assert model.backbone.prompt_length == 2
    assert isinstance(model.optimizer, Adafactor)
    for a, b in zip(backbone.weights, model.backbone.backbone.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_build_model_bad_arguments(parts):
    backbone, preprocessor = parts
    recipe = lester2021("glue/sst2", prompt_length=2)
    with pytest.raises(ValueError, match="exactly one"):
        recipe.build_model()
    with pytest.raises(ValueError, match="preprocessor=None"):
        recipe.build_model(backbone=backbone)
    model = recipe.build_model(backbone=backbone, preprocessor=preprocessor)
    with pytest.raises(TypeError, match="FrozenBackbone"):
        recipe.build_model(backbone=model.backbone, preprocessor=preprocessor)


# -- fit ----------------------------------------------------------------------
@needs_sst2
@pytest.mark.all_backends
def test_fit_on_sst2_keeps_the_best_prompt(tiny_model, tmp_path):
    model = tiny_model
    frozen = [w.numpy().copy() for w in model.backbone.backbone.weights]
    recipe = tiny_recipe()
    output_dir = os.path.join(str(tmp_path), "run")
    result = recipe.fit(
        model,
        output_dir=output_dir,
        data_dir=SHARED_TFDS_DIR,
        max_train_examples=64,
        max_eval_examples=16,
        verbose=0,
    )
    assert result.steps == 4
    assert len(result.evaluations) == 2
    values = [e["value"] for e in result.evaluations]
    assert result.best_value == max(values)
    assert 0.0 <= result.best_value <= 1.0
    assert set(result.best_metrics) == {"val_accuracy", "val_score"}
    assert result.history.history["val_accuracy"] == values

    # The prompt file holds the best prompt, and the model has it back.
    assert os.path.isfile(result.prompt_path)
    assert os.path.getsize(result.prompt_path) < 4096
    tensors, _ = read_prompt_file(result.prompt_path)
    np.testing.assert_array_equal(
        model.backbone.prompt_values(), tensors["prompt"]
    )
    assert sorted(os.listdir(output_dir)) == [
        "best.prompt.safetensors",
        "run.json",
    ]
    with open(os.path.join(output_dir, "run.json")) as f:
        summary = json.load(f)
    assert summary["best_value"] == result.best_value
    assert summary["recipe"]["prompt_length"] == 4
    assert len(summary["evaluations"]) == 2
    # The restored prompt scores what selection recorded: by default the
    # label string of highest log-likelihood (rank classification).
    assert summary["recipe"]["decode"] == "score"
    examples = load_examples(
        "glue/sst2", "validation", data_dir=SHARED_TFDS_DIR, max_examples=16
    )
    best, _ = model.predict_labels([e.inputs for e in examples], LABEL_WORDS)
    hits = [LABEL_WORDS[b] == e.targets for b, e in zip(best, examples)]
    assert np.mean(hits) == result.best_metrics["val_accuracy"]
    for before, weight in zip(frozen, model.backbone.backbone.weights):
        np.testing.assert_array_equal(before, weight.numpy())


def test_fit_early_stopping_on_pairs(tiny_model, tmp_path):
    model = tiny_model
    inputs, targets = toy.task_pairs(np.random.default_rng(3), 32)
    scores = iter([0.5, 0.6, 0.4, 0.3, 0.2, 0.1])
    seen = []

    def evaluate_fn(model):
        seen.append(model.backbone.prompt_values().copy())
        return next(scores)

    recipe = tiny_recipe(steps=12, patience=2)
    start = int(model.optimizer.iterations.numpy())
    result = recipe.fit(
        model,
        output_dir=str(tmp_path),
        train_data=(inputs, targets),
        evaluate_fn=evaluate_fn,
        verbose=0,
    )
    assert result.stopped_early
    assert result.steps == 4 * 2  # four evaluations of two steps
    assert result.best_step == start + 4
    assert result.best_value == 0.6
    np.testing.assert_array_equal(model.backbone.prompt_values(), seen[1])
    tensors, _ = read_prompt_file(result.prompt_path)
    np.testing.assert_array_equal(tensors["prompt"], seen[1])


def test_fit_on_validation_pairs_scores_exact_match(tiny_model, tmp_path):
    model = tiny_model
    inputs, targets = toy.task_pairs(np.random.default_rng(4), 16)
    recipe = tiny_recipe(steps=2)
    result = recipe.fit(
        model,
        output_dir=str(tmp_path),
        train_data=(inputs, targets),
        validation_data=(inputs, targets),
        verbose=0,
    )
    outputs = model.generate(inputs)
    expected = np.mean([o.strip() == t for o, t in zip(outputs, targets)])
    assert result.best_metrics["val_accuracy"] == pytest.approx(expected)


def test_fit_bad_arguments(tiny_model, tmp_path):
    recipe = tiny_recipe()
    with pytest.raises(TypeError, match="model=NoneType"):
        recipe.fit(None, output_dir=str(tmp_path))
    with pytest.raises(TypeError, match="output_dir=3"):
        recipe.fit(tiny_model, output_dir=3)
    with pytest.raises(ValueError, match="train_data=None"):
        lester2021(steps=2, eval_interval=1).fit(
            tiny_model, output_dir=str(tmp_path)
        )
    with pytest.raises(TypeError, match="train_data"):
        recipe.fit(tiny_model, output_dir=str(tmp_path), train_data="abc")
    with pytest.raises(ValueError, match="max_examples=0"):
        recipe.fit(tiny_model, str(tmp_path), max_train_examples=0)


def test_pooling_is_a_classifier_setting(parts):
    """A text-to-text task has no pooling head: asking for one is one
    error naming the setting, not a silently ignored option."""
    backbone, preprocessor = parts
    recipe = lester2021("glue/sst2", prompt_length=2, pooling="mean")
    with pytest.raises(ValueError, match="pooling='mean'"):
        recipe.build_model(backbone=backbone, preprocessor=preprocessor)


def test_task_kinds_are_looked_up_by_class():
    from keras_prompt.training import task_kinds

    class MyLM(PromptSeq2SeqLM):
        pass

    assert task_kinds.find_task_kind(MyLM) is task_kinds.SEQ2SEQ
    assert task_kinds.find_task_kind(dict) is None
    with pytest.raises(ValueError, match="task_class=dict"):
        task_kinds.task_kind(dict)
    lengths = task_kinds.CAUSAL.preprocessor_lengths(64, 16)
    assert lengths == {"sequence_length": 80}
