import keras
import numpy as np
import pytest

from keras_prompt import PromptEmbedding
from keras_prompt import initializers
from tests.test_case import TestCase


@pytest.mark.all_backends
class TestPromptEmbedding(TestCase):
    def test_prepends_prompt(self):
        layer = PromptEmbedding(3)
        x = np.random.rand(2, 5, 4).astype("float32")
        y = keras.ops.convert_to_numpy(layer(x))
        prompt = keras.ops.convert_to_numpy(layer.embeddings)
        assert y.shape == (2, 8, 4)
        np.testing.assert_array_equal(y[:, :3], np.stack([prompt, prompt]))
        np.testing.assert_array_equal(y[:, 3:], x)
        assert layer.embeddings.shape == (3, 4)
        assert layer.trainable_weights == [layer.embeddings]

    def test_default_init_is_uniform_half(self):
        layer = PromptEmbedding(200)
        layer.build((None, None, 50))
        values = keras.ops.convert_to_numpy(layer.embeddings)
        assert values.min() >= -0.5 and values.max() <= 0.5
        assert values.min() < -0.45 and values.max() > 0.45

    def test_bank_picks_prompt_per_example(self):
        layer = PromptEmbedding(2, num_prompts=3)
        x = np.zeros((4, 3, 5), "float32")
        ids = np.array([2, 0, 1, 2])
        y = keras.ops.convert_to_numpy(layer(x, prompt_ids=ids))
        bank = keras.ops.convert_to_numpy(layer.embeddings)
        assert bank.shape == (3, 2, 5)
        for row, pid in enumerate(ids):
            np.testing.assert_array_equal(y[row, :2], bank[pid])

    def test_bank_needs_ids_and_checks_range(self):
        layer = PromptEmbedding(2, num_prompts=3)
        x = np.zeros((2, 3, 5), "float32")
        with pytest.raises(ValueError, match="prompt_ids"):
            layer(x)
        with pytest.raises(ValueError, match=r"\[0, 3\).*\[0, 3\]"):
            layer(x, prompt_ids=np.array([0, 3]))

    def test_extend_mask(self):
        layer = PromptEmbedding(2)
        mask = np.array([[1, 1, 0], [1, 0, 0]], "int32")
        ext = keras.ops.convert_to_numpy(layer.extend_mask(mask))
        np.testing.assert_array_equal(ext, [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
        assert ext.dtype == np.int32
        bool_mask = keras.ops.convert_to_numpy(
            layer.extend_mask(mask.astype(bool))
        )
        assert bool_mask.dtype == bool and bool_mask[:, :2].all()

    def test_keras_mask_propagation(self):
        inputs = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
        x = PromptEmbedding(2)(x)
        outputs = keras.layers.GlobalAveragePooling1D()(x)
        model = keras.Model(inputs, outputs)
        ids = np.array([[3, 4, 0, 0]])
        prompt = keras.ops.convert_to_numpy(model.layers[2].embeddings)
        table = keras.ops.convert_to_numpy(model.layers[1].embeddings)
        expected = np.concatenate([prompt, table[[3, 4]]]).mean(0)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(ids))[0], expected, rtol=1e-5
        )

    def test_compute_output_shape_keeps_unknown(self):
        layer = PromptEmbedding(4)
        assert layer.compute_output_shape((None, None, 8)) == (None, None, 8)
        assert layer.compute_output_shape((2, 5, 8)) == (2, 9, 8)
        symbolic = layer(keras.Input((None, 8)))
        assert tuple(symbolic.shape) == (None, None, 8)

    def test_width_mismatch(self):
        layer = PromptEmbedding(2)
        layer(np.zeros((1, 3, 4), "float32"))
        with pytest.raises(ValueError, match="width 4.*width 6"):
            layer(np.zeros((1, 3, 6), "float32"))

    @pytest.mark.parametrize(
        "kwargs, error",
        [
            ({"length": 0}, ValueError),
            ({"length": 2.5}, TypeError),
            ({"length": 2, "num_prompts": 0}, ValueError),
        ],
    )
    def test_bad_arguments(self, kwargs, error):
        with pytest.raises(error, match="Received"):
            PromptEmbedding(**kwargs)

    def test_mixed_bfloat16(self):
        layer = PromptEmbedding(3, dtype="mixed_bfloat16")
        x = keras.ops.cast(np.random.rand(2, 4, 8), "bfloat16")
        y = layer(x)
        assert layer.embeddings.dtype == "float32"
        assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"

    def test_jit_compile_training(self):
        inputs = keras.Input((5, 4))
        x = PromptEmbedding(3, initializer=initializers.RandomUniform(seed=1))(
            inputs
        )
        outputs = keras.layers.Dense(1)(keras.layers.Flatten()(x))
        model = keras.Model(inputs, outputs)
        model.layers[-1].trainable = False
        model.compile("adam", "mse", jit_compile=True)
        x = np.random.rand(8, 5, 4).astype("float32")
        y = np.random.rand(8, 1).astype("float32")
        before = keras.ops.convert_to_numpy(model.layers[1].embeddings)
        history = model.fit(x, y, epochs=5, verbose=0)
        after = keras.ops.convert_to_numpy(model.layers[1].embeddings)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert not np.allclose(before, after)

    def test_config_round_trip(self):
        layer = PromptEmbedding(
            5, initializer=initializers.RandomUniform(seed=3), num_prompts=2
        )
        revived = self.run_serialization_test(layer)
        assert revived.length == 5 and revived.num_prompts == 2
        assert isinstance(revived.initializer, initializers.RandomUniform)

    def test_keras_saving(self, tmp_path):
        inputs = keras.Input((None, 4))
        ids = keras.Input((), dtype="int32")
        outputs = PromptEmbedding(2, num_prompts=3)(inputs, prompt_ids=ids)
        model = keras.Model([inputs, ids], outputs)
        data = [np.random.rand(2, 3, 4).astype("float32"), np.array([1, 2])]
        self.run_model_saving_test(model, data, tmp_path)

    def test_export(self, tmp_path):
        inputs = keras.Input((3, 4))
        model = keras.Model(inputs, PromptEmbedding(2)(inputs))
        data = np.random.rand(2, 3, 4).astype("float32")
        self.run_export_test(model, data, tmp_path)
