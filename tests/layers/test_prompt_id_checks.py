"""`prompt_ids` of a bank are checked inside graphs too.

A gather out of range silently picks a row under XLA (and returns zeros
on GPU), a float id is truncated by the int32 cast, and `-1` would pick
the last prompt: every entry point (eager calls, `predict`, `fit` on a
`tf.data` pipeline, a user's `tf.function`) must instead fail with a
message naming the valid range and the bad value.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptClassifier
from keras_prompt import PromptEmbedding
from keras_prompt.layers.classification_head import ClassificationHead
from keras_prompt.layers.index_checks import checked_indices
from keras_prompt.serving import PromptBank
from tests.test_case import encoder_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

NUM_PROMPTS = 3
# Each bad id with the error it gives in a graph and its text there.
BAD_IDS = [
    pytest.param([0, -1], "-1", id="negative"),
    pytest.param([NUM_PROMPTS, 0], str(NUM_PROMPTS), id="num_prompts"),
]
RANGE = r"`prompt_ids` must be in \[0, 3\)"
FLOAT = r"`prompt_ids` must hold integers.*Received: prompt_ids of dtype float"


@pytest.fixture(scope="module")
def classifier():
    keras_prompt.set_random_seed(0)
    backbone = FrozenBackbone(
        tiny_backbone("bert"), prompt_length=2, num_prompts=NUM_PROMPTS
    )
    model = PromptClassifier(backbone, num_classes=2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    # Different prompts, so that a wrong pick changes the outputs.
    rng = np.random.default_rng(0)
    prompt = backbone.prompt_embedding.embeddings
    prompt.assign(rng.normal(size=prompt.shape).astype("float32"))
    return model


def inputs(prompt_ids):
    return dict(encoder_inputs("bert"), prompt_ids=np.asarray(prompt_ids))


def dataset(prompt_ids):
    return tf.data.Dataset.from_tensor_slices(
        (inputs(prompt_ids), np.array([0, 1]))
    ).batch(2)


class TestLayer:
    def test_tf_function_checks_range_before_gather(self):
        layer = PromptEmbedding(2, num_prompts=NUM_PROMPTS)
        x = np.zeros((2, 4, 5), "float32")
        call = tf.function(lambda x, ids: layer(x, prompt_ids=ids))
        for ids, shown in [([0, -1], "-1"), ([1, 3], "3")]:
            with pytest.raises(tf.errors.InvalidArgumentError) as info:
                call(x, tf.constant(ids))
            message = str(info.value)
            assert "`prompt_ids` must be in [0, 3)" in message
            assert "prompt_embedding" in message
            assert f"containing] [{shown}]" in message
        ids = tf.constant([2, 0])
        self_eager = to_numpy(layer(x, prompt_ids=ids))
        np.testing.assert_array_equal(to_numpy(call(x, ids)), self_eager)
        np.testing.assert_array_equal(
            self_eager[:, :2], to_numpy(layer.embeddings)[[2, 0]]
        )

    def test_float_ids_are_a_type_error_at_trace_time(self):
        layer = PromptEmbedding(2, num_prompts=NUM_PROMPTS)
        x = np.zeros((2, 4, 5), "float32")
        with pytest.raises(TypeError, match=FLOAT):
            layer(x, prompt_ids=np.array([1.9, 0.0]))
        call = tf.function(lambda x, ids: layer(x, prompt_ids=ids))
        with pytest.raises(TypeError, match=FLOAT):
            call(x, tf.constant([1.0, 0.0]))

    def test_eager_values_raise_value_error(self):
        layer = PromptEmbedding(2, num_prompts=NUM_PROMPTS)
        x = np.zeros((1, 4, 5), "float32")
        with pytest.raises(ValueError, match=r"\[0, 3\).*\[-1\]"):
            layer(x, prompt_ids=tf.constant([-1]))

    def test_variable_length_mask_is_checked_too(self):
        layer = PromptEmbedding(2, num_prompts=2, variable_length=True)
        layer.build((None, None, 4))
        mask = np.ones((1, 3), "int32")
        extend = tf.function(lambda m, ids: layer.extend_mask(m, ids))
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 2\)"):
            extend(mask, tf.constant([2]))

    def test_head_ids_checked_in_graph(self):
        head = ClassificationHead(2, num_heads=2)
        x = np.zeros((1, 4), "float32")
        call = tf.function(lambda x, ids: head(x, head_ids=ids))
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=r"`head_ids` must be in"
        ):
            call(x, tf.constant([2]))
        with pytest.raises(TypeError, match="head_ids"):
            head(x, head_ids=np.array([0.5]))

    def test_xla_compiles_and_valid_ids_unchanged(self):
        # XLA drops in-graph assertions; the check must not break the
        # compiled function.
        layer = PromptEmbedding(2, num_prompts=NUM_PROMPTS)
        x = np.zeros((2, 4, 5), "float32")
        ids = tf.constant([1, 2])
        expected = to_numpy(layer(x, prompt_ids=ids))
        call = tf.function(
            lambda x, ids: layer(x, prompt_ids=ids), jit_compile=True
        )
        np.testing.assert_array_equal(to_numpy(call(x, ids)), expected)

    def test_xla_clamps_out_of_range_ids_as_the_docstring_says(self):
        """Called directly inside an XLA-compiled function, the layer
        cannot refuse a bad id (the assertion is compiled away): a
        negative id counts from the end, as in NumPy, and the gather
        clamps what is still out of range to the nearest prompt.
        `PromptEmbedding`'s docstring says so; the task models check ids
        before their compiled steps (`test_checks_hold_under_xla`)."""
        layer = PromptEmbedding(2, num_prompts=NUM_PROMPTS)
        layer.build((None, 4, 5))
        rng = np.random.default_rng(0)
        layer.embeddings.assign(
            rng.normal(size=layer.embeddings.shape).astype("float32")
        )
        call = tf.function(
            lambda x, ids: layer(x, prompt_ids=ids), jit_compile=True
        )
        ids = [-1, -2, -NUM_PROMPTS - 4, NUM_PROMPTS, NUM_PROMPTS + 50]
        picked = [NUM_PROMPTS - 1, NUM_PROMPTS - 2, 0] + [NUM_PROMPTS - 1] * 2
        x = np.zeros((len(ids), 4, 5), "float32")
        got = to_numpy(call(x, tf.constant(ids)))
        expected = to_numpy(layer(x, prompt_ids=np.array(picked)))
        np.testing.assert_array_equal(got, expected)

    def test_whole_float_labels_option(self):
        values = np.array([1.0, 0.0])
        assert checked_indices(values, 2, "y", allow_whole_floats=True) is (
            values
        )
        with pytest.raises(ValueError, match=r"whole numbers.*\[1\.7\]"):
            checked_indices([1.7, 0.0], 2, "y", allow_whole_floats=True)


class TestTaskModel:
    @pytest.mark.parametrize("ids, shown", BAD_IDS)
    def test_predict(self, classifier, ids, shown):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            classifier.predict(inputs(ids), verbose=0)
        message = str(info.value)
        assert "`prompt_ids` must be in [0, 3)" in message
        assert f"containing] [{shown}]" in message

    @pytest.mark.parametrize("ids, shown", BAD_IDS)
    def test_fit_on_tf_data(self, classifier, ids, shown):
        before = to_numpy(classifier.backbone.prompt_embedding.embeddings)
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            classifier.fit(dataset(ids), verbose=0)
        assert f"containing] [{shown}]" in str(info.value)
        after = to_numpy(classifier.backbone.prompt_embedding.embeddings)
        np.testing.assert_array_equal(before, after)

    @pytest.mark.parametrize("ids, shown", BAD_IDS)
    def test_user_tf_function(self, classifier, ids, shown):
        call = tf.function(lambda x: classifier(x))
        with pytest.raises(tf.errors.InvalidArgumentError, match=RANGE):
            call(inputs(ids))

    @pytest.mark.parametrize("ids, shown", BAD_IDS)
    def test_eager_call(self, classifier, ids, shown):
        with pytest.raises(ValueError, match=rf"{RANGE}.*bad: \[{shown}\]"):
            classifier(inputs(ids))

    def test_float_ids_everywhere(self, classifier):
        ids = [1.9, 0.0]
        with pytest.raises(TypeError, match=FLOAT):
            classifier.predict(inputs(ids), verbose=0)
        with pytest.raises(TypeError, match=FLOAT):
            classifier.fit(dataset(ids), verbose=0)
        with pytest.raises(TypeError, match=FLOAT):
            tf.function(lambda x: classifier(x))(inputs(ids))
        with pytest.raises(TypeError, match=FLOAT):
            classifier(inputs(ids))

    def test_checks_hold_under_xla(self, classifier):
        # The input pipeline checks the ids outside the compiled step.
        model = PromptClassifier(
            classifier.backbone, num_classes=2, dropout=0.0
        )
        model.compile(jit_compile=True)
        with pytest.raises(tf.errors.InvalidArgumentError, match=RANGE):
            model.predict(inputs([0, 3]), verbose=0)

    def test_valid_ids_unchanged(self, classifier):
        x = inputs([2, 0])
        expected = to_numpy(classifier(x))
        np.testing.assert_allclose(
            classifier.predict(x, verbose=0), expected, atol=1e-6
        )
        call = tf.function(lambda x: classifier(x))
        np.testing.assert_allclose(to_numpy(call(x)), expected, atol=1e-6)
        # The prompts differ, so a wrong pick would show.
        other = to_numpy(classifier(inputs([1, 1])))
        assert np.abs(other - expected).max() > 1e-4
        history = classifier.fit(dataset([2, 0]), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


class TestBank:
    def test_bank_messages_name_its_tasks(self, classifier):
        single = PromptClassifier(
            FrozenBackbone(classifier.backbone.backbone, prompt_length=2),
            num_classes=2,
            dropout=0.0,
        )
        bank = PromptBank(single, capacity=2)
        bank.add_task("sentiment", single)
        bank.add_task("topic", single)
        with pytest.raises(ValueError) as info:
            bank.model(inputs([0, 5]))
        message = str(info.value)
        assert "[0, 2)" in message and "[5]" in message
        assert "sentiment (id 0), topic (id 1)" in message
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            bank.model.predict(inputs([0, -1]), verbose=0)
        assert "sentiment (id 0), topic (id 1)" in str(info.value)
        # Names that are not tasks, in a tf.data pipeline.
        features = dict(encoder_inputs("bert"), task=["sentiment", "weather"])
        data = tf.data.Dataset.from_tensor_slices((features, [0, 1])).batch(2)
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            bank.fit(data, verbose=0)
        message = str(info.value)
        assert "Unknown task name(s):" in message and "weather" in message
        assert "Known tasks: sentiment, topic" in message


def test_causal_generate_rejects_float_ids():
    from tests.serving import serving_fixtures as fixtures

    backbone, preprocessor = fixtures.gpt2()
    model = PromptCausalLM(
        FrozenBackbone(backbone, prompt_length=2, num_prompts=2),
        preprocessor,
    )
    with pytest.raises(TypeError, match=FLOAT):
        model.generate({"prompts": ["red", "cat"], "prompt_ids": [1.9, 0.0]})
    with pytest.raises(ValueError, match=r"`prompt_ids` must be in \[0, 2\)"):
        model.generate({"prompts": ["red", "cat"], "prompt_ids": [2, 0]})
