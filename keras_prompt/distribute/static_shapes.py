"""Fixed shapes for compiled (TPU / XLA) training.

A TPU, and XLA in general, compiles one program per input shape. keras-hub
preprocessors already pad every feature to their `sequence_length`
(`T5Seq2SeqLMPreprocessor`: `encoder_sequence_length` /
`decoder_sequence_length`; causal LM preprocessors: `sequence_length`), so
the only varying dimension left is the last, smaller batch of an epoch.
`make_static` batches with `drop_remainder=True` (always under a
`TPUStrategy`) and checks that nothing is left unknown; `TraceCounter`
counts how often the train step is traced, i.e. compiled.
"""

import weakref

import keras
import tensorflow as tf

from keras_prompt.distribute.strategy import is_tpu_strategy
from keras_prompt.validation import check_positive_int


def _unknown_dims(dataset):
    """`(path, shape)` of every component with an unknown dimension."""
    found = []
    for path, spec in keras.tree.flatten_with_path(dataset.element_spec):
        path = "/".join(str(p) for p in path)
        shape = getattr(spec, "shape", None)
        if shape is None:
            continue
        if shape.rank is None or any(d is None for d in shape.as_list()):
            found.append((path or "<element>", shape))
    return found


def check_static(dataset):
    """Raises a `ValueError` unless every component's shape is fully known.

    Args:
        dataset: a batched `tf.data.Dataset`.

    Returns:
        The dataset, unchanged.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be a tf.data.Dataset. "
            f"Received: dataset={type(dataset).__name__}"
        )
    unknown = _unknown_dims(dataset)
    if unknown:
        listing = ", ".join(f"{path}: {shape}" for path, shape in unknown)
        raise ValueError(
            "Every feature needs a static shape for compiled (TPU/XLA) "
            f"training, but these are not: {listing}. Pad features to a "
            "fixed length (the keras-hub preprocessor's `sequence_length`, "
            "or `padded_shapes=`) and batch with `drop_remainder=True`."
        )
    return dataset


def make_static(
    dataset,
    batch_size,
    drop_remainder=None,
    strategy=None,
    padded_shapes=None,
    padding_values=None,
    preprocess=None,
):
    """Batches an unbatched `tf.data.Dataset` into fixed shapes.

    Works on raw examples (e.g. `(input_text, target_text)` pairs that a
    task's preprocessor will pad to `sequence_length` inside `fit`) and on
    already-tokenised examples. Features whose length varies are padded to
    `padded_shapes`. With `drop_remainder` the last, smaller batch is
    dropped so that every batch has the same shape and a compiled step is
    traced once.

    Args:
        dataset: an unbatched `tf.data.Dataset`.
        batch_size: int, the global batch (split across replicas; must be
            a multiple of `strategy.num_replicas_in_sync`).
        drop_remainder: bool or `None`. `None` (default) drops the
            remainder under a `TPUStrategy` (the given or current
            strategy) and keeps it otherwise.
        strategy: optional `tf.distribute.Strategy`; defaults to the
            current one.
        padded_shapes: optional structure like the elements' (or one
            shape for a single-tensor element) with the length to pad each
            feature to; uses `padded_batch`.
        padding_values: optional padding values for `padded_batch`.
        preprocess: optional function applied to each batch after
            batching (e.g. a keras-hub preprocessor, or
            `task.preprocess_samples` for a task built with
            `preprocessor=None`).

    Returns:
        The batched, prefetched dataset. When `drop_remainder` is on, every
        shape is checked to be static (`ValueError` otherwise).

    Example:

    ```python
    import tensorflow as tf
    from keras_prompt.distribute import make_static

    pairs = tf.data.Dataset.from_tensor_slices(
        (["red cat", "blue dog sun", "green cow"], ["red", "blue", "green"])
    )
    train = make_static(pairs, batch_size=2, drop_remainder=True)
    # model.fit(train): the preprocessor pads to sequence_length and
    # every batch holds 2 examples.
    ```
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            "`dataset` must be an unbatched tf.data.Dataset. "
            f"Received: dataset={type(dataset).__name__}"
        )
    check_positive_int("batch_size", batch_size)
    if drop_remainder not in (None, True, False):
        raise ValueError(
            "`drop_remainder` must be True, False or None. "
            f"Received: drop_remainder={drop_remainder!r}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {replicas} replicas "
            f"so that each gets the same number of examples. Received: "
            f"batch_size={batch_size}"
        )
    if drop_remainder is None:
        drop_remainder = is_tpu_strategy(strategy)
    if padded_shapes is None:
        unknown = _unknown_dims(dataset)
        if unknown:
            listing = ", ".join(f"{p}: {s}" for p, s in unknown)
            raise ValueError(
                f"Examples have features of varying length ({listing}); "
                "pass `padded_shapes=` with a length for each (or pad in "
                "the preprocessor). Received: padded_shapes=None"
            )
        batched = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:
        batched = dataset.padded_batch(
            batch_size,
            padded_shapes=padded_shapes,
            padding_values=padding_values,
            drop_remainder=drop_remainder,
        )
    if preprocess is not None:
        batched = batched.map(
            lambda *args: preprocess(*args),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if drop_remainder:
        check_static(batched)
    return batched.prefetch(tf.data.AUTOTUNE)


class TraceCounter:
    """Counts the traces (compilations) of a model's train and test step.

    Wraps `model.train_step` / `model.test_step` on this model instance and
    resets its compiled functions, so the next `fit` / `evaluate` traces
    afresh. Each new TensorFlow graph the step is traced into counts once,
    so under `MirroredStrategy` the replicas of one trace count once.
    `shapes["train"]` holds the input shapes of each trace: a `None`
    (e.g. the batch of a dataset batched without `drop_remainder`) is a
    shape a TPU cannot compile as is, and XLA on CPU/GPU compiles again for
    every concrete size it meets. With
    `run_eagerly=True` nothing is traced and the counts stay at one.

    A model built outside any strategy scope may create optimizer slots or
    metric variables inside the first trace, and `tf.function` then traces
    that first call twice. Under a strategy's scope (even
    `OneDeviceStrategy`, and always under `TPUStrategy`) Keras creates that
    state beforehand, and one shape means one trace.

    Args:
        model: a compiled Keras model (TensorFlow backend).

    Example:

    ```python
    counter = TraceCounter(model)
    model.fit(make_static(data, 8, drop_remainder=True), epochs=2)
    counter.train  # 1: one shape, one compiled program
    ```
    """

    def __init__(self, model):
        self.model = model
        self.train = 0
        self.test = 0
        self.shapes = {"train": [], "test": []}
        self._graphs = {"train": weakref.WeakSet(), "test": weakref.WeakSet()}
        for mode in ("train", "test"):
            step = getattr(model, f"{mode}_step")
            setattr(model, f"{mode}_step", self._wrap(mode, step))
            setattr(model, f"{mode}_function", None)

    def _wrap(self, mode, step):
        def counted(data):
            graph = tf.compat.v1.get_default_graph()
            seen = self._graphs[mode]
            if graph not in seen:
                seen.add(graph)
                setattr(self, mode, getattr(self, mode) + 1)
                self.shapes[mode].append(
                    keras.tree.map_structure(
                        lambda t: tuple(t.shape) if t is not None else None,
                        data,
                    )
                )
            return step(data)

        return counted
