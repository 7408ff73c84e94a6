"""The frozen prefix of a late prompt, and the training cache built on it.

- For every registered family (tiny backbones have 2 layers, so k = 1;
  deep prompts): a backbone given the hidden states entering layer k
  (`FrozenPrefix.states`) computes what it computes from the tokens,
  running only the layers from k on.
- Training on cached frozen prefixes (`Recipe(frozen_prefix_cache=True)`)
  gives the prompt training without them gives, over several epochs, in
  memory and from a file; a resumed run is bit-identical; the run record
  says what was used and why; nothing is left in the run folder.
- The cache turns itself off (auto) or is refused (True) where it cannot
  stand for every epoch: dropout below the prompt, a prompt at the input,
  text batches.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt.data.classification import ClassificationData
from keras_prompt.data.example import TextToTextExample
from keras_prompt.data.registry import get_task
from keras_prompt.layers import frozen_prefix
from keras_prompt.training import Recipe
from keras_prompt.training import frozen_prefix_cache
from keras_prompt.training.splits import ClassificationExamples
from keras_prompt.training.splits import TextToTextExamples
from tests.test_case import TestCase
from tests.test_case import backbone_inputs
from tests.test_case import encoder_inputs
from tests.test_case import get_kind
from tests.test_case import registered_families
from tests.test_case import spread_weights
from tests.test_case import tiny_backbone
from tests.test_case import tiny_preprocessor
from tests.test_case import tiny_task
from tests.test_case import to_numpy

FAMILIES = registered_families()


def prompted_layers(model):
    backbone = model.backbone
    if get_kind(model.family) == "seq2seq":
        return list(backbone.encoder_transformer_layers)
    return list(backbone.transformer_layers)


@pytest.mark.parametrize("family", FAMILIES)
class TestFrozenPrefix(TestCase):
    def test_given_prefix_gives_the_models_outputs(self, family):
        # Deep: the layers above the prefix hold prompts of their own too.
        keras_prompt.set_random_seed(0)
        model = FrozenBackbone(
            spread_weights(tiny_backbone(family)),
            prompt_length=3,
            start_layer=1,
            deep=True,
        )
        prefix = model.frozen_prefix
        assert prefix.start_layer == 1
        first, second = prompted_layers(model)[:2]
        assert first in prefix.layers_below
        assert first not in prefix.layers_above
        assert second in prefix.layers_above
        assert model.prompt_embedding not in prefix.layers_below
        sides = ["right", "left"] if get_kind(family) == "causal" else ["right"]
        for side in sides:
            inputs = backbone_inputs(family, side)
            states = prefix.states(inputs)
            assert tuple(states.shape)[-1] == model.hidden_dim
            with prefix.given(states):
                given = model(inputs)
            expected = model(inputs)
            self.assertAllClose(given, expected, atol=1e-5)
            # The given states are used: other states, other outputs.
            with prefix.given(keras.ops.zeros_like(states)):
                other = model(inputs)
            assert not np.allclose(first_output(other), first_output(expected))


def first_output(outputs):
    outputs = to_numpy(outputs)
    return (
        next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
    )


def test_input_prompts_have_no_frozen_prefix():
    model = PromptClassifier(
        FrozenBackbone(tiny_backbone("bert"), prompt_length=2), num_classes=2
    )
    assert model.backbone.frozen_prefix is None
    x = dict(encoder_inputs("bert"))
    x[frozen_prefix.KEY] = np.zeros((2, 4, 16), "float32")
    with pytest.raises(ValueError, match="start_layer=0"):
        model(x)


def test_dropout_below_the_prompt_is_found():
    backbone = tiny_backbone("bert", dropout=0.1)
    prefix = FrozenBackbone(backbone, prompt_length=2, start_layer=1)
    assert prefix.frozen_prefix.active_dropout()
    from keras_prompt.layers.float32_noise_dropout import set_dropout_rate

    set_dropout_rate(backbone, 0.0)
    assert not prefix.frozen_prefix.active_dropout()


def test_fit_on_given_prefixes_keeps_the_layers_above_in_training():
    """Dropout above the prompt still drops in training when the prefix
    is given (the training flag reaches the layers run from it): `fit` on
    given prefixes equals `fit` on tokens, step for step."""

    def train(given):
        keras_prompt.set_random_seed(0)
        backbone = tiny_backbone("bert", dropout=0.3)
        for layer in frozen_layers_below(backbone):
            layer.rate = 0.0
        model = PromptClassifier(
            FrozenBackbone(backbone, prompt_length=2, start_layer=1),
            num_classes=2,
        )
        assert not model.backbone.frozen_prefix.active_dropout()
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss="sparse_categorical_crossentropy",
            jit_compile=False,
        )
        x = dict(encoder_inputs("bert"))
        if given:
            x[frozen_prefix.KEY] = to_numpy(
                model.backbone.frozen_prefix.states(x)
            )
        y = np.array([0, 1], "int32")
        data = tf.data.Dataset.from_tensors((x, y)).repeat(3)
        keras.Model.fit(model, data, epochs=2, verbose=0)
        return model.backbone.prompt_values()

    plain, given = train(False), train(True)
    np.testing.assert_allclose(given, plain, atol=1e-6)
    # Dropout above drew: without it the prompt would move otherwise.
    assert np.abs(plain).max() > 0


def frozen_layers_below(backbone):
    """The dropout layers of a tiny 2-layer BERT below layer 1."""
    below = [backbone.embeddings_dropout, backbone.transformer_layers[0]]
    return [
        inner
        for layer in below
        for inner in layer._flatten_layers(include_self=True)
        if isinstance(inner, keras.layers.Dropout)
    ]


# -- training on cached frozen prefixes ----------------------------------------
TEXTS = [
    "red cat fish",
    "blue dog",
    "cow bird",
    "green",
    "cow",
    "fish white",
    "red red dog cat bird",
    "white cow",
    "blue",
    "cat",
    "dog bird fish",
    "green red",
]


def split():
    data = ClassificationData(
        texts=list(TEXTS),
        labels=np.array([i % 2 for i in range(len(TEXTS))], "int32"),
        label_strings=("negative", "positive"),
        task_name="glue/sst2",
        split="train",
    )
    return ClassificationExamples(get_task("glue/sst2"), data)


def classifier(deep=True, dropout=0.0):
    keras_prompt.set_random_seed(0)
    backbone = tiny_backbone("bert", dropout=dropout)
    return PromptClassifier(
        FrozenBackbone(backbone, prompt_length=2, start_layer=1, deep=deep),
        num_classes=2,
        preprocessor=tiny_preprocessor("bert", sequence_length=8),
    )


def recipe(cache, **kwargs):
    settings = dict(
        prompt_length=2,
        start_layer=1,
        optimizer_name="adam",
        learning_rate=1e-2,
        batch_size=4,
        steps=9,  # three passes over the 12 examples
        eval_interval=3,
        frozen_dropout=0.0,
        seed=0,
        frozen_prefix_cache=cache,
    )
    settings.update(kwargs)
    return Recipe(**settings)


def fit(cache, folder, model=None, **kwargs):
    model = classifier() if model is None else model
    result = recipe(cache).fit(
        model,
        str(folder),
        train_data=split(),
        evaluate_fn=lambda m: 0.5,
        verbose=0,
        **kwargs,
    )
    return model, result


def run_record(folder):
    with open(os.path.join(str(folder), "run.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uncached")
    model, _ = fit(False, folder)
    return model.backbone.prompt_values(), run_record(folder)


def test_cached_training_gives_the_uncached_prompt(uncached, tmp_path):
    prompt, record = uncached
    assert record["frozen_prefix_cache"] == {
        "used": False,
        "reason": "turned off (frozen_prefix_cache=False)",
    }
    model, result = fit(True, tmp_path)
    assert result.steps == 9
    np.testing.assert_allclose(
        model.backbone.prompt_values(), prompt, atol=1e-6
    )
    # The prompt moved: the comparison could fail.
    assert not np.allclose(prompt, classifier().backbone.prompt_values())
    used = run_record(tmp_path)["frozen_prefix_cache"]
    assert used["used"] and used["storage"] == "memory"
    assert used["examples"] == len(TEXTS)
    assert used["dtype"] == "float32"
    assert "3.0 passes over 12 examples" in used["reason"]
    assert sorted(os.listdir(tmp_path)) == [
        "best.prompt.safetensors",
        "run.json",
    ]


def test_auto_caches_a_multi_epoch_late_prompt(uncached, tmp_path):
    model, _ = fit("auto", tmp_path)
    assert run_record(tmp_path)["frozen_prefix_cache"]["used"]
    np.testing.assert_allclose(
        model.backbone.prompt_values(), uncached[0], atol=1e-6
    )


def test_a_cache_over_the_memory_limit_is_a_file_removed_at_the_end(
    uncached, tmp_path, monkeypatch
):
    monkeypatch.setattr(frozen_prefix_cache, "MEMORY_LIMIT", 0)
    path = os.path.join(str(tmp_path), frozen_prefix_cache.CACHE_FILE)
    # A file a killed run left behind is not read.
    os.makedirs(str(tmp_path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"left by a killed run")
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(os.path.getsize(path) if os.path.exists(path) else 0)

    model, _ = fit(True, tmp_path, callbacks=[Watch()])
    assert seen and min(seen) > 100  # the cache file, while training
    assert not os.path.exists(path)
    assert run_record(tmp_path)["frozen_prefix_cache"]["storage"] == "file"
    np.testing.assert_allclose(
        model.backbone.prompt_values(), uncached[0], atol=1e-6
    )


def test_a_resumed_cached_run_is_bit_identical(tmp_path):
    whole, _ = fit(True, tmp_path / "whole", checkpoint_every=3)

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 5:
                raise KeyboardInterrupt

    folder = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        fit(True, folder, checkpoint_every=3, callbacks=[Stop()])
    assert not os.path.exists(
        os.path.join(str(folder), frozen_prefix_cache.CACHE_FILE)
    )
    resumed, result = fit(True, folder, checkpoint_every=3, resume=True)
    assert [e["step"] for e in result.evaluations] == [3, 6, 9]
    np.testing.assert_array_equal(
        resumed.backbone.prompt_values(), whole.backbone.prompt_values()
    )


def test_auto_skips_a_single_pass_and_says_why(tmp_path):
    fit_ = recipe("auto", steps=3)
    fit_.fit(
        classifier(),
        str(tmp_path),
        train_data=split(),
        evaluate_fn=lambda m: 0.5,
        verbose=0,
    )
    record = run_record(tmp_path)["frozen_prefix_cache"]
    assert record == {
        "used": False,
        "reason": "one pass over the 12 examples (1.00): nothing to reuse",
    }


@pytest.mark.parametrize(
    "model_kwargs, recipe_kwargs, match",
    [
        ({}, {"frozen_dropout": None}, r"dropout layer\(s\) below layer 1"),
        ({"deep": True}, {"start_layer": 0}, r"enters with the tokens"),
    ],
    ids=["dropout", "input-prompt"],
)
def test_true_is_refused_before_any_step(
    model_kwargs, recipe_kwargs, match, tmp_path
):
    model = classifier(dropout=0.1, **model_kwargs)
    if recipe_kwargs.get("start_layer") == 0:
        keras_prompt.set_random_seed(0)
        model = PromptClassifier(
            FrozenBackbone(tiny_backbone("bert"), prompt_length=2),
            num_classes=2,
            preprocessor=tiny_preprocessor("bert", sequence_length=8),
        )
    before = model.backbone.prompt_values().copy()
    with pytest.raises(ValueError, match=match):
        recipe(True, **recipe_kwargs).fit(
            model,
            str(tmp_path),
            train_data=split(),
            evaluate_fn=lambda m: 0.5,
            verbose=0,
        )
    np.testing.assert_array_equal(model.backbone.prompt_values(), before)
    assert "run.json" not in os.listdir(str(tmp_path))


def test_train_data_pairs_carry_no_frozen_prefix():
    plan = frozen_prefix_cache.plan("auto", classifier(), None, 9, 4)
    assert not plan.use and "train_data" in plan.reason
    with pytest.raises(ValueError, match="train_data"):
        frozen_prefix_cache.plan(True, classifier(), None, 9, 4)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_setting_is_refused(value):
    with pytest.raises(ValueError, match="frozen_prefix_cache"):
        Recipe(frozen_prefix_cache=value)


# -- text-to-text tasks: the pairs packed once -------------------------------
# Words the tiny GPT-2 tokenizer knows (`tests.test_case.WORDS[:10]`).
PAIRS = [
    ("red cat fish", "green"),
    ("blue dog", "white"),
    ("cow bird", "green"),
    ("black", "white"),
    ("cow", "green"),
    ("fish white", "white"),
    ("red dog cat", "green"),
    ("white cow", "white"),
]


def text_to_text_task(family):
    keras_prompt.set_random_seed(0)
    if family == "t5":
        from keras_prompt import toy

        preprocessor = toy.toy_t5_preprocessor()
    else:
        preprocessor = tiny_preprocessor(family, sequence_length=12)
    backbone = spread_weights(
        tiny_backbone(
            family, vocabulary_size=preprocessor.tokenizer.vocabulary_size()
        )
    )
    config = keras_prompt.PromptConfig(length=2, start_layer=1, deep=True)
    return tiny_task(backbone, preprocessor=preprocessor, prompt_config=config)


@pytest.mark.parametrize("family", ["t5", "gpt2"])
def test_text_to_text_cached_training_gives_the_uncached_prompt(
    family, tmp_path
):
    examples = [TextToTextExample(i, t) for i, t in PAIRS]
    prompts = {}
    for cache in (False, True):
        model = text_to_text_task(family)
        split = TextToTextExamples(get_task("glue/sst2"), examples)
        recipe(cache, batch_size=4, steps=6).fit(  # three passes
            model,
            str(tmp_path / str(cache)),
            train_data=split,
            evaluate_fn=lambda m: 0.5,
            verbose=0,
        )
        record = run_record(tmp_path / str(cache))["frozen_prefix_cache"]
        assert record["used"] is cache
        prompts[cache] = model.backbone.prompt_values()
    np.testing.assert_allclose(prompts[True], prompts[False], atol=1e-6)
    assert not np.allclose(
        prompts[False], text_to_text_task(family).backbone.prompt_values()
    )
