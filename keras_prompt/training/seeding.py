"""A random seed that does not break SentencePiece tokenizers.

`keras.utils.set_random_seed` calls `tf.random.set_seed`, which on the
TensorFlow backend clears the eager kernel cache. TensorFlow Text keeps each
SentencePiece model in a resource owned by a cached kernel, so every T5 (or
other SentencePiece) tokenizer made *before* the call fails afterwards with
`NotFoundError: Resource .../SentencepieceOp ... does not exist` as soon as
it runs inside `tf.data` or a `tf.function`. `set_random_seed` below seeds
the same generators without clearing that cache, so it is safe to call at
any time.
"""

import random

import keras
import numpy as np

__all__ = ["set_random_seed"]


def set_random_seed(seed):
    """Seed Python, NumPy, Keras and TensorFlow; safe after tokenizers exist.

    Does what `keras.utils.set_random_seed` does (Python's `random`, NumPy,
    the global Keras `SeedGenerator` used by `keras.random` and by layers'
    initializers and dropout, and TensorFlow's global seed used by `tf.data`
    shuffling), but never clears TensorFlow's kernel cache, so SentencePiece
    tokenizers built earlier keep working.

    Args:
        seed: int. The seed.

    Example:

    >>> import keras
    >>> import keras_prompt
    >>> keras_prompt.set_random_seed(7)
    >>> a = keras.ops.convert_to_numpy(keras.random.uniform((2,)))
    >>> keras_prompt.set_random_seed(7)
    >>> b = keras.ops.convert_to_numpy(keras.random.uniform((2,)))
    >>> bool((a == b).all())
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            "`seed` must be an integer. "
            f"Received: seed={seed!r} (of type {type(seed).__name__})"
        )
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    _set_keras_seed(seed)
    # TensorFlow's seed on every backend, as Keras does: keras-hub's
    # preprocessing and `fit` on strings shuffle in `tf.data` on JAX too.
    _set_tensorflow_seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _set_keras_seed(seed):
    # What `keras.utils.set_random_seed` does for Keras itself: remember the
    # seed and drop the global SeedGenerator so it is recreated from it.
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(
        seed_generator.GLOBAL_SEED_GENERATOR, None
    )


def _set_tensorflow_seed(seed):
    import tensorflow as tf
    from tensorflow.python.eager import context

    if not tf.executing_eagerly():
        tf.random.set_seed(seed)  # Graph mode: sets the graph seed only.
        return
    ctx = context.context()
    # `tf.random.set_seed` in eager mode sets these two and then clears the
    # kernel cache, which destroys SentencePiece resources.
    ctx._seed = seed
    ctx._rng = random.Random(seed)
