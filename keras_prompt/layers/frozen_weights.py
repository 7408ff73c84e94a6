"""Frozen weights kept out of TensorFlow's gradient tapes."""

import contextlib

import keras


@contextlib.contextmanager
def frozen_weights_unwatched(variables):
    """Keeps frozen weights out of TensorFlow gradient computations.

    Keras freezes a weight by flagging its Keras variable, but the
    TensorFlow variable underneath stays `trainable=True`, and a
    `tf.GradientTape` (Keras' `train_step` included) watches every
    trainable TensorFlow variable read under it: the traced train step
    then builds a weight-gradient matmul for every frozen kernel (pruned
    before a compiled step runs, but run by eager steps). Inside this
    context the TensorFlow flag of each frozen weight is off, so tapes skip
    reading it; on exit the flags are restored, so the wrapped backbone
    used on its own (and unfrozen) still trains.
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    switched = []
    for variable in variables:
        if variable.trainable:
            continue
        value = getattr(variable, "_value", None)
        # Distributed variables hold one TensorFlow variable per replica.
        for component in getattr(value, "_values", None) or (value,):
            if getattr(component, "_trainable", False):
                component._trainable = False
                switched.append(component)
    try:
        yield
    finally:
        for component in switched:
            component._trainable = True
