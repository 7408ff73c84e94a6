"""The training data of `Recipe.fit`: the endless, shuffled, batched stream
of `(input, target)` string pairs (`train_dataset`), from the recipe's task
or from pairs the caller gives."""

import numpy as np

from keras_prompt.validation import check_count


def to_text(value):
    """`value` as a str (bytes decoded as UTF-8)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def is_examples(data):
    """Whether `data` is a split read by `Recipe.examples`."""
    return all(
        callable(getattr(data, name, None))
        for name in ("train_dataset", "fit", "score")
    )


def string_pairs(data, name):
    """`(inputs, targets)` lists of str from a pair of sequences."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"`{name}` must be a `(inputs, targets)` pair of string lists "
            f"or a tf.data.Dataset. Received: {name}={type(data).__name__}"
        )
    inputs, targets = ([to_text(v) for v in np.asarray(d)] for d in data)
    if len(inputs) != len(targets) or not inputs:
        raise ValueError(
            f"`{name}` needs as many targets as inputs, and at least one. "
            f"Received: {len(inputs)} inputs, {len(targets)} targets"
        )
    return inputs, targets


def pairs_dataset(dataset):
    """An unbatched dataset of `(input, target)` string scalars."""
    import tensorflow as tf

    spec = dataset.element_spec
    ok = (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(s.dtype == tf.string for s in spec)
        and all(s.shape.rank in (0, 1) for s in spec)
    )
    if not ok:
        raise ValueError(
            "`train_data` must yield `(input, target)` string pairs. "
            f"Received: element_spec={spec!r}"
        )
    if spec[0].shape.rank == 1:
        dataset = dataset.unbatch()
    return dataset


def check_train_source(recipe, train_data):
    """Raises unless there is training data: `train_data`, or the
    recipe's task."""
    if train_data is None and recipe.task is None:
        raise ValueError(
            "The recipe has no `task`; pass `train_data`. "
            "Received: task=None, train_data=None"
        )


def train_dataset(recipe, data_dir=None, train_data=None, max_examples=None):
    """The endless, shuffled, batched training stream of a recipe;
    called as `Recipe.train_dataset(data_dir, train_data, max_examples)`.

    Args:
        recipe: the `Recipe` (`self` of `Recipe.train_dataset`): its task,
            `batch_size` and `seed`.
        data_dir: the TFDS data dir of the task's `"train"` split.
        train_data: instead of the task's split: a `(inputs, targets)`
            pair of string lists, or a `tf.data.Dataset` of
            `(input, target)` string pairs (batched or not).
        max_examples: optional int, read only the first this many
            training examples (TFDS order).

    Returns:
        A `tf.data.Dataset` of `(inputs, targets)` batches of
        `recipe.batch_size` strings, repeated forever.
    """
    import tensorflow as tf

    check_count("max_examples", max_examples, allow_none=True)
    check_train_source(recipe, train_data)
    if train_data is None:
        from keras_prompt.data import load_text_to_text

        dataset = load_text_to_text(
            recipe.task,
            "train",
            data_dir=data_dir,
            shuffle=True,
            seed=recipe.seed,
            max_examples=max_examples,
        )
    elif isinstance(train_data, tf.data.Dataset):
        dataset = pairs_dataset(train_data)
        if max_examples is not None:
            dataset = dataset.take(max_examples)
        dataset = dataset.shuffle(
            10_000, seed=recipe.seed, reshuffle_each_iteration=True
        )
    else:
        inputs, targets = string_pairs(train_data, "train_data")
        if max_examples is not None:
            inputs, targets = inputs[:max_examples], targets[:max_examples]
        dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
        dataset = dataset.shuffle(
            len(inputs), seed=recipe.seed, reshuffle_each_iteration=True
        )
    dataset = dataset.repeat().batch(recipe.batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
