"""Examples of a task split, trained on and scored through a task model.

`TextToTextExamples` (pairs of strings, scored on the label string of
highest log-likelihood or on generations, see `resolve_decode`) and
`ClassificationExamples` (sentences and class indices, scored on the argmax
class) run a task model on the length-trimmed batches of
`keras_prompt.data.batching`; the task classes pick theirs in
`TaskKind.read_examples` (`keras_prompt.training.task_kinds`).
"""

import keras
import numpy as np

from keras_prompt.data.batching import PAD_MULTIPLE  # noqa: F401
from keras_prompt.data.batching import batch_dataset
from keras_prompt.data.batching import eval_batches
from keras_prompt.data.batching import padded_length  # noqa: F401
from keras_prompt.data.batching import token_lengths
from keras_prompt.data.batching import tokenize
from keras_prompt.data.batching import train_batches
from keras_prompt.data.classification import load_classification
from keras_prompt.data.evaluation import generate_in_batches
from keras_prompt.data.example import TextToTextExample
from keras_prompt.data.loading import load_examples
from keras_prompt.layers import frozen_prefix


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


#: How a text-generating task model is scored on a split: `"score"` ranks
#: the task's label strings by their log-likelihood (rank classification,
#: `score_labels`), `"generate"` decodes greedily and compares the text.
DECODES = ("score", "generate")


def resolve_decode(decode, task, model=None):
    """The decoding that scores `task` (a `TextToTextTask`): `decode`, or
    for `None` `"score"` when the task has label strings (and `model`,
    when given, can score them), `"generate"` otherwise.

    An unknown `decode`, or `"score"` for a task without label strings
    (span tasks: ReCoRD, WSC), is a `ValueError` naming it.
    """
    if decode is not None and decode not in DECODES:
        raise ValueError(
            f"`decode` must be None (the task's default) or one of "
            f"{DECODES}. Received: decode={decode!r}"
        )
    labelled = task is not None and bool(task.label_strings)
    if decode == "score" and task is not None and not labelled:
        raise ValueError(
            f"Task {task.name!r} has no label strings to score (it "
            "generates free text); use decode='generate'. "
            "Received: decode='score'"
        )
    if decode is None and task is not None:
        can_score = model is None or hasattr(model, "score_labels")
        decode = "score" if labelled and can_score else "generate"
    return decode


def _fit_plain(model, dataset, **kwargs):
    """`keras.Model.fit` without the task's string preprocessing."""
    import keras

    return keras.Model.fit(model, dataset, **kwargs)


class ExampleSplit:
    """A split of a data task in the form a task model trains on and is
    scored on (`keras_prompt.training.task_kinds` picks the form).

    Subclasses set `load`, the reader of a split, and add `train_dataset`
    and `score`.

    Args:
        task: the `keras_prompt.data.TextToTextTask`.
        rows: what `load` read.
    """

    #: `fn(task, split, data_dir=..., max_examples=...)` reading a split.
    load = None

    def __init__(self, task, rows):
        self.task = task
        self.rows = rows

    @classmethod
    def read(cls, task, split, data_dir=None, max_examples=None):
        """Reads a split with the subclass's `load`."""
        return cls(
            task,
            cls.load(task, split, data_dir=data_dir, max_examples=max_examples),
        )

    def __len__(self):
        return len(self.rows)

    def fit(self, model, dataset, **kwargs):
        """Trains `model` on `dataset` with its own `fit`."""
        return model.fit(dataset, **kwargs)


class TextToTextExamples(ExampleSplit):
    """Text-to-text pairs: trained on as strings (the model preprocesses
    them) in reshuffled passes, scored on the model's generations with the
    task's metrics.

    Args:
        task: the `keras_prompt.data.TextToTextTask`.
        examples: list of `TextToTextExample`.
    """

    load = staticmethod(load_examples)

    def __init__(self, task, examples):
        super().__init__(task, list(examples))

    @property
    def examples(self):
        """The `TextToTextExample`s, in order."""
        return self.rows

    def train_dataset(
        self, model, batch_size, steps, seed, frozen_prefixes=None
    ):
        """`steps` batches of `(inputs, targets)` strings for `model.fit`,
        drawn in reshuffled passes (`train_batches`).

        `frozen_prefixes`: optional `fn(features)` returning the
        `FrozenPrefixCache` of the packed pairs (or `None`); the batches
        are then the pairs as the model trains on them (`packed`, full
        length), with their frozen prefixes.
        """
        import tensorflow as tf

        batches = train_batches(
            np.zeros(len(self)), batch_size, steps, seed=seed, bucket=False
        )
        cache = None
        if frozen_prefixes is not None:
            x, y, weights = self.packed(model)
            cache = frozen_prefixes(x)
        if cache is not None:
            return batch_dataset(
                x,
                batches,
                y,
                multiple=None,
                sequences={frozen_prefix.KEY: cache},
                sample_weight=weights,
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

    def packed(self, model, chunk_size=1024):
        """`(x, y, sample_weight)`: every pair as `model.fit` packs string
        pairs (`model.preprocess_samples`), as NumPy arrays."""
        import tensorflow as tf

        to_numpy = keras.ops.convert_to_numpy
        parts = []
        for start in range(0, len(self), chunk_size):
            chunk = self.examples[start : start + chunk_size]
            x, y, weights = keras.utils.unpack_x_y_sample_weight(
                model.preprocess_samples(
                    tf.constant([e.inputs for e in chunk]),
                    tf.constant([e.targets for e in chunk]),
                )
            )
            x = {key: to_numpy(value) for key, value in x.items()}
            parts.append((x, to_numpy(y), to_numpy(weights)))
        x = {
            key: np.concatenate([part[0][key] for part in parts])
            for key in parts[0][0]
        }
        y, weights = (
            np.concatenate([part[i] for part in parts]) for i in (1, 2)
        )
        return x, y, weights

    def fit(self, model, dataset, **kwargs):
        """Trains `model` on `dataset`: string batches through its own
        `fit`; packed batches (with frozen prefixes) through
        `keras.Model.fit`."""
        if isinstance(dataset.element_spec[0], dict):
            return _fit_plain(model, dataset, **kwargs)
        return model.fit(dataset, **kwargs)

    def score(self, model, batch_size=32, decode=None):
        """The task's metrics of the model's predictions, in order.

        Args:
            model: a text-generating task model.
            batch_size: int, inputs per forward pass or `generate` call.
            decode: `"score"`: the label string of highest log-likelihood
                (`model.predict_labels`, summed over its tokens and the
                end token); `"generate"`: the greedy generations
                (`model.generate_targets`); `None` (default): `"score"`
                for a task with label strings, else `"generate"` (see
                `resolve_decode`).
        """
        decode = resolve_decode(decode, self.task, model)
        if not all(example.is_labeled for example in self.examples):
            raise ValueError(
                f"Task {self.task.name!r}: the split is unlabeled (TFDS test "
                "splits have label -1); evaluate on a labeled split."
            )
        inputs = [example.inputs for example in self.examples]
        if decode == "score":
            labels = self.task.label_strings
            best, _ = model.predict_labels(
                inputs, labels, batch_size=batch_size
            )
            predictions = [labels[int(index)] for index in best]
        else:
            predictions = generate_in_batches(
                model, inputs, batch_size, generate_fn=model.generate_targets
            )
        return self.task.score(predictions, self.examples)


class ClassificationExamples(ExampleSplit):
    """Raw sentences (or segment pairs) and class indices: trained on as
    length-trimmed, length-bucketed token batches (tokenized once, with the
    model's preprocessor), scored on the argmax of the class
    probabilities.

    Args:
        task: the `keras_prompt.data.TextToTextTask`.
        data: a `keras_prompt.data.classification.ClassificationData`.
    """

    load = staticmethod(load_classification)

    def __init__(self, task, data):
        super().__init__(task, data)
        self._features = None

    @property
    def data(self):
        """The `ClassificationData` of the split."""
        return self.rows

    def features(self, model):
        """The token features of every example (tokenized once)."""
        if self._features is None:
            self._features = tokenize(model.preprocessor, self.data.texts)
        return self._features

    def train_dataset(
        self, model, batch_size, steps, seed, frozen_prefixes=None
    ):
        """`steps` length-bucketed token batches with their labels, each
        cut to its longest example.

        Only the examples the run sees are tokenized: a random subset of
        `steps * batch_size` when the run is shorter than a pass.

        `frozen_prefixes`: optional `fn(features)` returning the
        `FrozenPrefixCache` of the tokenized examples (or `None`); the
        batches then carry their frozen prefixes.
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
        cache = None if frozen_prefixes is None else frozen_prefixes(features)
        return batch_dataset(
            features,
            batches,
            data.labels,
            sequences=None if cache is None else {frozen_prefix.KEY: cache},
        )

    def fit(self, model, dataset, **kwargs):
        """Trains on token batches: `keras.Model.fit`, without the task's
        string preprocessing."""
        return _fit_plain(model, dataset, **kwargs)

    def score(self, model, batch_size=64, decode=None):
        """Accuracy of the argmax class, plus the task's other metrics
        (e.g. F1) of the predicted label strings when the task scores
        examples one by one. A classifier scores its classes: `decode`
        may be `None` or `"score"`."""
        if decode not in (None, "score"):
            raise ValueError(
                "A classifier scores its classes and generates no text: "
                f"`decode` must be None or 'score'. Received: decode={decode!r}"
            )
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
