"""Training and evaluation batches of a task's examples.

`TextToTextExamples` and `ClassificationExamples` hold a split of a
`keras_prompt.data` task in the form a prompt task trains on (the
`TaskKind` of each task class, `keras_prompt.training.task_kinds`, picks
one): they draw the index batches of a run, turn them into a
`tf.data.Dataset` for `fit`, and score a model on them. The
training recipe (`keras_prompt.training`) uses only these methods.

Length-trimmed token batches for text classifiers:

keras-hub's text preprocessors pad every example to `sequence_length`. A
frozen encoder still runs every padded position (and, in prompt tuning, the
backward pass goes through all of them to reach the prompt), so on a CPU
most of a step is spent on padding: SST-2 training sentences average 13
tokens. Here the texts are tokenized once, with the model's own
preprocessor, and every batch is cut to its longest example (rounded up to a
multiple of 8, which bounds the number of distinct shapes the training
function is traced for). The model sees exactly the tokens and masks it
would see at full length: right padding is never attended to, so outputs do
not change.

Training batches are drawn as in ordinary shuffled training and then
"bucketed": each pool of `bucket_batches` consecutive batches is sorted by
length, cut into batches again, and the batches are shuffled, so that a
batch holds examples of similar length. Evaluation batches are sorted by
length and the predictions put back in order.

`benchmarks/minilm_sst2.py` uses these helpers too.
"""

import math

import numpy as np

PAD_MULTIPLE = 8


def tokenize(preprocessor, texts, chunk_size=1024):
    """Runs a keras-hub text preprocessor over `texts` in chunks.

    Args:
        preprocessor: a `keras_hub.models.TextClassifierPreprocessor` (or
            any callable mapping a batch of strings, or a tuple of segment
            batches, to a dict of `(batch, sequence_length)` arrays with a
            `"padding_mask"`).
        texts: list of str, or tuple of lists of str (segment pairs).
        chunk_size: int, examples per preprocessor call.

    Returns:
        A dict of NumPy arrays, each `(len(texts), sequence_length)`.
    """
    import tensorflow as tf

    segments = texts if isinstance(texts, tuple) else (texts,)
    count = len(segments[0])
    parts = []
    for start in range(0, count, chunk_size):
        batch = tuple(
            tf.constant(segment[start : start + chunk_size], dtype=tf.string)
            for segment in segments
        )
        features = preprocessor(batch if len(batch) > 1 else batch[0])
        if isinstance(features, tuple):  # (x, y, sample_weight)
            features = features[0]
        parts.append({k: np.asarray(v) for k, v in features.items()})
    if not parts:
        raise ValueError("No texts to tokenize.")
    return {
        key: np.concatenate([part[key] for part in parts], axis=0)
        for key in parts[0]
    }


def token_lengths(features):
    """The number of real (unpadded) tokens of each example."""
    return np.asarray(features["padding_mask"]).astype("int64").sum(axis=-1)


def padded_length(max_length, sequence_length, multiple=PAD_MULTIPLE):
    """`max_length` rounded up to `multiple`, at most `sequence_length`."""
    rounded = int(math.ceil(max(int(max_length), 1) / multiple) * multiple)
    return min(rounded, int(sequence_length))


def train_batches(
    lengths, batch_size, steps, seed, bucket_batches=20, bucket=True
):
    """Index arrays of `steps` training batches of `batch_size` examples.

    Passes over the data in a new random order each epoch (the last,
    incomplete batch of an epoch is carried into the next one, so every
    batch is full). With `bucket=True`, batches of similar lengths are
    formed inside pools of `bucket_batches` batches (see module docstring).

    Args:
        lengths: int array, token length of each example.
        batch_size: int.
        steps: int, batches to return.
        seed: int, seed of the order.
        bucket_batches: int, batches per length-sorting pool.
        bucket: bool, whether to group similar lengths.

    Returns:
        A list of `steps` int arrays of `batch_size` indices.
    """
    lengths = np.asarray(lengths)
    count = len(lengths)
    if count == 0:
        raise ValueError("No training examples.")
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    order = np.concatenate(
        [rng.permutation(count) for _ in range(math.ceil(needed / count))]
    )[:needed]
    batches = []
    pool_size = bucket_batches * batch_size if bucket else batch_size
    for start in range(0, needed, pool_size):
        pool = order[start : start + pool_size]
        if bucket:
            pool = pool[np.argsort(lengths[pool], kind="stable")]
        pool_batches = [
            pool[i : i + batch_size] for i in range(0, len(pool), batch_size)
        ]
        if bucket:
            pool_batches = [
                pool_batches[i] for i in rng.permutation(len(pool_batches))
            ]
        batches.extend(pool_batches)
    return batches


def eval_batches(lengths, batch_size):
    """Index arrays covering every example once, sorted by length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batch_dataset(
    features,
    batches,
    labels=None,
    multiple=PAD_MULTIPLE,
    sequences=None,
    sample_weight=None,
):
    """A `tf.data.Dataset` of the given batches, each cut to its length.

    Args:
        features: dict of `(N, sequence_length)` arrays from `tokenize`.
        batches: list of index arrays.
        labels: optional array of one label (or row of labels) per
            example; then elements are `(features, labels)`.
        multiple: int, batch lengths are rounded up to this; `None`: the
            batches keep the arrays' full lengths.
        sequences: optional `{key: store}` of further per-example
            sequences `(length, width)` (a store: `gather(indices, size)`
            giving `(batch, size, width)`, `size=None` for its full
            length, `width` and `dtype`; e.g. the frozen prefixes of
            `keras_prompt.training.frozen_prefix_cache`): each batch
            carries its examples', cut to its length, under `key`.
        sample_weight: optional array like `labels`; then elements are
            `(features, labels, sample_weight)`.

    Returns:
        A `tf.data.Dataset` with a known cardinality of `len(batches)`.
    """
    import tensorflow as tf

    if multiple is not None:
        lengths = token_lengths(features)
        sequence_length = next(iter(features.values())).shape[1]
    keys = sorted(features)
    targets = [a for a in (labels, sample_weight) if a is not None]

    def generate():
        for indices in batches:
            if multiple is None:
                size, cut = None, slice(None)
            else:
                size = padded_length(
                    lengths[indices].max(), sequence_length, multiple
                )
                cut = slice(None, size)
            x = {key: features[key][indices, cut] for key in keys}
            for key, store in (sequences or {}).items():
                x[key] = store.gather(indices, size)
            yield (x, *(a[indices] for a in targets)) if targets else x

    def spec_of(array):
        array = np.asarray(array)
        return tf.TensorSpec((None,) * array.ndim, tf.as_dtype(array.dtype))

    x_spec = {key: spec_of(features[key]) for key in keys}
    for key, store in (sequences or {}).items():
        x_spec[key] = tf.TensorSpec(
            (None, None, store.width), tf.as_dtype(store.dtype)
        )
    spec = (x_spec, *map(spec_of, targets)) if targets else x_spec
    dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
    dataset = dataset.apply(
        tf.data.experimental.assert_cardinality(len(batches))
    )
    return dataset.prefetch(2)
