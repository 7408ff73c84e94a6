"""Dropout whose masks do not depend on the activations' dtype.

Keras' TensorFlow backend draws dropout noise in the dtype of the
activations, so a frozen backbone computing in bfloat16 gets other dropout
masks than the same backbone in float32 for the same seed (they agree on
about 82% of the positions at rate 0.1, what independent masks give). Then
switching the frozen weights' dtype changes the whole random trajectory of
a training run, not only its arithmetic, and the two cannot be compared
seed for seed. `FrozenBackbone` turns the wrapped backbone's dropout layers
into `Float32NoiseDropout`, which always draws its noise in float32: in a
float32 model it keeps exactly the masks of Keras' `Dropout` on TensorFlow
(same seed stream, same uniform numbers, same `>= rate` test), and a
bfloat16 or float16 model gets those very masks too.
"""

import keras
from keras import ops


class Float32NoiseDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` drawing its noise in float32 whatever the
    dtype of its inputs (see the module docstring). Not built directly:
    `use_float32_noise` converts the `Dropout` layers of a model."""

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        shape = ops.shape(inputs)
        if self.noise_shape is not None:
            shape = tuple(
                shape[i] if size is None else size
                for i, size in enumerate(self.noise_shape)
            )
        noise = keras.random.uniform(
            shape, dtype="float32", seed=self.seed_generator
        )
        scaled = inputs * ops.cast(1.0 / (1.0 - self.rate), inputs.dtype)
        return ops.where(noise >= self.rate, scaled, ops.zeros_like(inputs))


def use_float32_noise(model):
    """Makes every `keras.layers.Dropout` inside `model` (a layer or
    model, searched recursively) a `Float32NoiseDropout`, in place: its
    weights, seed generator, rate and name stay. Subclasses of `Dropout`
    with their own behaviour are left alone."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if type(layer) is keras.layers.Dropout:
            layer.__class__ = Float32NoiseDropout


def set_dropout_rate(model, rate):
    """Sets the rate of every `keras.layers.Dropout` inside `model` (a
    layer or model, searched recursively) to `rate`, in place; `0.0` turns
    the model's dropout off. Takes effect in calls traced afterwards.

    A rate above 0 needs dropout layers that were built to drop (Keras
    gives a layer built with rate 0 no random state): a `ValueError`
    naming `frozen_dropout` otherwise, before anything changes.
    Returns the number of dropout layers changed."""
    layers = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, keras.layers.Dropout)
    ]
    if rate > 0 and any(
        getattr(layer, "seed_generator", None) is None for layer in layers
    ):
        raise ValueError(
            f"`frozen_dropout` can turn the frozen model's dropout off or "
            f"change its rate, but {model.name!r} was built without "
            f"dropout (rate 0), so it cannot add any. Received: "
            f"frozen_dropout={rate!r}"
        )
    for layer in layers:
        layer.rate = float(rate)
    return len(layers)
