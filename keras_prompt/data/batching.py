"""Training and evaluation batches of a task's examples.

`TextToTextExamples` and `ClassificationExamples` hold a split of a
`keras_prompt.data` task in the form a prompt task trains on (each task's
`read_examples` picks one): they draw the index batches of a run, turn
them into a `tf.data.Dataset` for `fit`, and score a model on them. The
training recipe (`keras_prompt.recipes`) uses only these methods.

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

from keras_prompt.data.classification import load_classification
from keras_prompt.data.evaluation import _generate
from keras_prompt.data.example import TextToTextExample
from keras_prompt.data.loading import load_examples

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
    import keras
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
        features = keras.utils.unpack_x_y_sample_weight(features)[0]
        parts.append(
            {k: keras.ops.convert_to_numpy(v) for k, v in features.items()}
        )
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


def batch_dataset(features, batches, labels=None, multiple=PAD_MULTIPLE):
    """A `tf.data.Dataset` of the given batches, each cut to its length.

    Args:
        features: dict of `(N, sequence_length)` arrays from `tokenize`.
        batches: list of index arrays.
        labels: optional `(N,)` int array; then elements are
            `(features, labels)`.
        multiple: int, batch lengths are rounded up to this.

    Returns:
        A `tf.data.Dataset` with a known cardinality of `len(batches)`.
    """
    import tensorflow as tf

    lengths = token_lengths(features)
    sequence_length = next(iter(features.values())).shape[1]
    keys = sorted(features)

    def generate():
        for indices in batches:
            size = padded_length(
                lengths[indices].max(), sequence_length, multiple
            )
            x = {key: features[key][indices, :size] for key in keys}
            if labels is None:
                yield x
            else:
                yield x, labels[indices]

    x_spec = {
        key: tf.TensorSpec((None, None), tf.as_dtype(features[key].dtype))
        for key in keys
    }
    spec = x_spec
    if labels is not None:
        label_dtype = tf.as_dtype(np.asarray(labels).dtype)
        spec = (x_spec, tf.TensorSpec((None,), label_dtype))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
    dataset = dataset.apply(
        tf.data.experimental.assert_cardinality(len(batches))
    )
    return dataset.prefetch(2)


def predict_sorted(model, features, batch_size=64, predict_fn=None):
    """Predictions for every example, computed on length-sorted batches.

    Args:
        model: a Keras model taking the token features (no preprocessor is
            applied: `keras.Model.predict` is called).
        features: dict of arrays from `tokenize`.
        batch_size: int.
        predict_fn: optional `fn(model, dataset) -> array`, defaults to
            `keras.Model.predict(model, dataset, verbose=0)`.

    Returns:
        A NumPy array of outputs in the original example order.
    """
    import keras

    batches = eval_batches(token_lengths(features), batch_size)
    dataset = batch_dataset(features, batches)
    if predict_fn is None:
        outputs = keras.Model.predict(model, dataset, verbose=0)
    else:
        outputs = predict_fn(model, dataset)
    outputs = np.asarray(outputs)
    order = np.concatenate(batches)
    result = np.empty_like(outputs)
    result[order] = outputs
    return result


def _fit_plain(model, dataset, **kwargs):
    """`keras.Model.fit` without the task's string preprocessing."""
    import keras

    return keras.Model.fit(model, dataset, **kwargs)


class TextToTextExamples:
    """Text-to-text pairs: trained on as strings (the model preprocesses
    them) in reshuffled passes, scored on the model's generations with the
    task's metrics.

    Args:
        task: the `keras_prompt.data.TextToTextTask`.
        examples: list of `TextToTextExample`.
    """

    def __init__(self, task, examples):
        self.task = task
        self.examples = list(examples)

    @classmethod
    def read(cls, task, split, data_dir=None, max_examples=None):
        """Reads a split with `keras_prompt.data.load_examples`."""
        examples = load_examples(
            task, split, data_dir=data_dir, max_examples=max_examples
        )
        return cls(task, examples)

    def __len__(self):
        return len(self.examples)

    def train_dataset(self, model, batch_size, steps, seed):
        """`steps` batches of `(inputs, targets)` strings for `model.fit`,
        drawn in reshuffled passes (`train_batches`)."""
        import tensorflow as tf

        batches = train_batches(
            np.zeros(len(self)), batch_size, steps, seed=seed, bucket=False
        )

        def generate():
            for indices in batches:
                pairs = [self.examples[i] for i in indices]
                yield (
                    np.asarray([e.inputs for e in pairs], dtype=object),
                    np.asarray([e.targets for e in pairs], dtype=object),
                )

        spec = tf.TensorSpec((None,), tf.string)
        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=(spec, spec)
        )
        return dataset.apply(
            tf.data.experimental.assert_cardinality(len(batches))
        )

    def fit(self, model, dataset, **kwargs):
        """Trains `model` on `dataset` with its own `fit`."""
        return model.fit(dataset, **kwargs)

    def score(self, model, batch_size=32):
        """The task's metrics of `model.generate`'s outputs, in order."""
        if not all(example.is_labeled for example in self.examples):
            raise ValueError(
                f"Task {self.task.name!r}: the split is unlabeled (TFDS test "
                "splits have label -1); evaluate on a labeled split."
            )
        inputs = [example.inputs for example in self.examples]
        predictions = _generate(model, inputs, batch_size)
        return self.task.score(predictions, self.examples)


class ClassificationExamples:
    """Raw sentences (or segment pairs) and class indices: trained on as
    length-trimmed, length-bucketed token batches (tokenized once, with the
    model's preprocessor), scored on the argmax of the class
    probabilities.

    Args:
        task: the `keras_prompt.data.TextToTextTask`.
        data: a `keras_prompt.data.classification.ClassificationData`.
    """

    def __init__(self, task, data):
        self.task = task
        self.data = data
        self._features = None

    @classmethod
    def read(cls, task, split, data_dir=None, max_examples=None):
        """Reads a split with `load_classification`."""
        data = load_classification(
            task, split, data_dir=data_dir, max_examples=max_examples
        )
        return cls(task, data)

    def __len__(self):
        return len(self.data)

    def features(self, model):
        """The token features of every example (tokenized once)."""
        if self._features is None:
            self._features = tokenize(model.preprocessor, self.data.texts)
        return self._features

    def train_dataset(self, model, batch_size, steps, seed):
        """`steps` length-bucketed token batches with their labels, each
        cut to its longest example.

        Only the examples the run sees are tokenized: a random subset of
        `steps * batch_size` when the run is shorter than a pass.
        """
        data = self.data
        needed = steps * batch_size
        if needed < len(data):
            rng = np.random.default_rng(seed)
            data = data.select(np.sort(rng.permutation(len(data))[:needed]))
        features = tokenize(model.preprocessor, data.texts)
        batches = train_batches(
            token_lengths(features), batch_size, steps, seed=seed
        )
        return batch_dataset(features, batches, data.labels)

    def fit(self, model, dataset, **kwargs):
        """Trains on token batches: `keras.Model.fit`, without the task's
        string preprocessing."""
        return _fit_plain(model, dataset, **kwargs)

    def score(self, model, batch_size=64):
        """Accuracy of the argmax class, plus the task's other metrics
        (e.g. F1) of the predicted label strings when the task scores
        examples one by one."""
        probabilities = predict_sorted(
            model, self.features(model), batch_size=batch_size
        )
        predicted = probabilities.argmax(axis=-1)
        labels = self.data.labels
        metrics = {"accuracy": float((predicted == labels).mean())}
        if self.task.annotate is None:
            names = self.data.label_strings
            examples = [
                TextToTextExample("", names[int(label)], label=int(label))
                for label in labels
            ]
            metrics.update(
                self.task.score([names[int(p)] for p in predicted], examples)
            )
        return metrics
