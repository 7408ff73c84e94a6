"""Dropout masks that do not depend on the frozen weights' dtype."""

import keras
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt.layers.float32_noise_dropout import Float32NoiseDropout
from tests.test_case import backbone_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

INPUTS = np.random.default_rng(0).uniform(1, 2, (4, 16, 24)).astype("float32")


def dropped(layer_class, dtype, noise_shape=None, seed=3):
    """`(training output as float32, which positions were dropped)`."""
    keras_prompt.set_random_seed(seed)
    layer = layer_class(0.1, noise_shape=noise_shape, dtype=dtype)
    out = layer(keras.ops.cast(INPUTS, dtype), training=True)
    out = to_numpy(keras.ops.cast(out, "float32"))
    return out, out == 0


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="Keras' own masks are compared on the TensorFlow backend",
)
def test_float32_keeps_keras_masks_and_values():
    expected, _ = dropped(keras.layers.Dropout, "float32")
    actual, _ = dropped(Float32NoiseDropout, "float32")
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("noise_shape", [None, (None, 1, 24)])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_gets_the_float32_masks(dtype, noise_shape):
    _, reference = dropped(Float32NoiseDropout, "float32", noise_shape)
    out, mask = dropped(Float32NoiseDropout, dtype, noise_shape)
    np.testing.assert_array_equal(mask, reference)
    assert 0.02 < mask.mean() < 0.25
    # Kept values are scaled by 1 / (1 - rate), in the input dtype.
    np.testing.assert_allclose(out[~mask], INPUTS[~mask] / 0.9, rtol=1e-2)
    # Keras' own Dropout draws bfloat16 noise: other masks.
    if dtype == "bfloat16" and noise_shape is None:
        _, keras_mask = dropped(keras.layers.Dropout, dtype, noise_shape)
        assert (keras_mask != reference).mean() > 0.05


def test_inference_is_the_identity():
    layer = Float32NoiseDropout(0.5, dtype="bfloat16")
    x = keras.ops.cast(INPUTS, "bfloat16")
    np.testing.assert_array_equal(
        to_numpy(keras.ops.cast(layer(x, training=False), "float32")),
        to_numpy(keras.ops.cast(x, "float32")),
    )


def training_outputs(family, dtype, layer_class=None):
    """The family's wrapped tiny backbone (dropout 0.3) in `dtype`, with
    the float32 model's weights (same seed), in training mode."""
    keras_prompt.set_random_seed(0)
    reference = tiny_backbone(family, dropout=0.3)
    keras_prompt.set_random_seed(0)
    backbone = tiny_backbone(family, dropout=0.3, dtype=dtype)
    backbone.set_weights(reference.get_weights())
    wrapped = FrozenBackbone(backbone, prompt_length=2)
    layers = [
        layer
        for layer in wrapped._flatten_layers()
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert layers and all(type(x) is Float32NoiseDropout for x in layers)
    if layer_class is not None:
        for layer in layers:
            layer.__class__ = layer_class
    out = wrapped(backbone_inputs(family), training=True)
    if isinstance(out, dict):
        out = out.get("encoder_sequence_output", out.get("sequence_output"))
    return to_numpy(keras.ops.cast(out, "float32"))


@pytest.mark.parametrize("family", ["bert", "t5", "llama"])
def test_frozen_backbone_masks_agree_across_dtypes(family):
    # The wrapped backbone's dropout layers draw float32 noise, so in
    # training mode a bfloat16 model drops the positions the float32 one
    # drops (same seed) and the outputs differ by bfloat16 rounding only;
    # with Keras' own dropout (bfloat16 noise) they differ far more.
    expected = training_outputs(family, "float32")
    scale = np.abs(expected).max()
    same = np.abs(training_outputs(family, "bfloat16") - expected).max()
    other = np.abs(
        training_outputs(family, "bfloat16", keras.layers.Dropout) - expected
    ).max()
    assert same < 0.05 * scale, (same, scale)
    assert other > 3 * same, (other, same)
