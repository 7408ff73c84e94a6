"""The toy pretrained T5 the seq2seq tests steer (see `keras_prompt.toy`)."""

import functools

from keras_prompt import toy


@functools.lru_cache(maxsize=None)
def build_pretrained_t5():
    """`(backbone, preprocessor)`, trained once per test process."""
    return toy.pretrained_toy_t5()


def color_pairs(rng, count):
    return toy.task_pairs(rng, count, prefix="color:")


pretraining_pairs = toy.prefixed_pairs
