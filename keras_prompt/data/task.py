"""`TextToTextTask`: how to turn TFDS records into text pairs and score them."""

import dataclasses
from typing import Any
from typing import Callable
from typing import Mapping
from typing import Optional
from typing import Sequence

from keras_prompt.data import _records
from keras_prompt.data.example import TextToTextExample


def strip_text(text):
    """Default postprocessor: strips surrounding whitespace."""
    return text.strip()


def split_base_name(split):
    """Returns the split name without a TFDS slice (`train[:9]` -> `train`)."""
    return split.split("[", 1)[0].strip()


@dataclasses.dataclass(frozen=True, eq=False)
class TextToTextTask:
    """A text-to-text task backed by a TFDS dataset.

    The task knows how to turn one raw TFDS record (a dict of features, as
    produced by `tfds.as_numpy`, or written by hand) into an
    `(input_string, target_string)` pair, which class-label strings it uses,
    and how to score generated predictions. It knows nothing about models.

    Args:
        name: str. Registry name, e.g. `"glue/sst2"`.
        tfds_name: str. TFDS dataset name, e.g. `"glue/sst2"`.
        preprocess: callable. `preprocess(record) -> (inputs, targets)`.
            Raises `ValueError` naming the task, field and value for bad
            records. Unlabeled records (TFDS test splits, label `-1`) get the
            empty target `""`.
        metric_names: sequence of str. Keys of the dict returned by
            `compute_metrics` (and `keras_prompt.data.evaluate_generation`).
        compute_metrics: callable.
            `compute_metrics(predictions, examples) -> dict` where
            `predictions` are postprocessed strings and `examples` the
            matching `TextToTextExample`s. Scores are fractions in `[0, 1]`.
        label_strings: sequence of str or None. The verbalizers of the class
            labels, in class-index order (used e.g. to initialise prompts from
            class labels). `None` for span-generation tasks (ReCoRD, WSC).
        splits: sequence of str. The TFDS split names of the dataset.
        postprocess: callable. Applied to each generated string before
            scoring. Defaults to stripping whitespace.
        annotate: callable or None. `annotate(record) -> dict` of extra
            `TextToTextExample` fields (`label`, `group`, `answers`). Defaults
            to `{"label": class index or None}` when `label_strings` is set.
        keep_example: callable or None. `keep_example(record, split) -> bool`;
            records for which it returns `False` are dropped (WSC keeps only
            correct referents in training, as T5 does).
        split_aliases: mapping or None. Extra split names, e.g. MNLI maps
            `"validation"` to `"validation_matched"`.
        description: str. A one-line description of the formats.

    Example:

    ```python
    from keras_prompt.data import get_task

    task = get_task("glue/sst2")
    inputs, targets = task.preprocess(
        {"sentence": "a gem of a movie .", "label": 1, "idx": 0}
    )
    assert inputs == "sentence: a gem of a movie ."
    assert targets == "positive"
    assert task.label_strings == ("negative", "positive")
    example = task.to_example({"sentence": "dull .", "label": 0, "idx": 1})
    assert task.score(["negative"], [example]) == {"accuracy": 1.0}
    ```
    """

    name: str
    tfds_name: str
    preprocess: Callable[[Mapping[str, Any]], tuple]
    metric_names: Sequence[str]
    compute_metrics: Callable[..., dict]
    label_strings: Optional[Sequence[str]] = None
    splits: Sequence[str] = ("train", "validation", "test")
    postprocess: Callable[[str], str] = strip_text
    annotate: Optional[Callable[[Mapping[str, Any]], dict]] = None
    keep_example: Optional[Callable[[Mapping[str, Any], str], bool]] = None
    split_aliases: Optional[Mapping[str, str]] = None
    description: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        if self.label_strings is not None:
            set_(self, "label_strings", tuple(self.label_strings))
        set_(self, "metric_names", tuple(self.metric_names))
        set_(self, "splits", tuple(self.splits))
        set_(self, "split_aliases", dict(self.split_aliases or {}))

    def __repr__(self):
        return (
            f"TextToTextTask(name={self.name!r}, tfds_name={self.tfds_name!r}"
            f", label_strings={self.label_strings!r}, "
            f"metric_names={self.metric_names!r}, splits={self.splits!r})"
        )

    def resolve_split(self, split):
        """Validates `split` and returns the TFDS split string to read.

        Aliases are applied to the base name; a TFDS slice such as
        `"validation[:100]"` is kept.

        Args:
            split: str. A split name of this task, optionally sliced.

        Returns:
            The TFDS split string.
        """
        if not isinstance(split, str) or not split.strip():
            raise ValueError(
                f"Task {self.name!r}: split must be a non-empty string, got "
                f"{split!r}."
            )
        base = split_base_name(split)
        resolved = self.split_aliases.get(base, base)
        if resolved not in self.splits:
            known = sorted(set(self.splits) | set(self.split_aliases))
            raise ValueError(
                f"Task {self.name!r}: unknown split {base!r}. Known splits: "
                f"{known}."
            )
        return resolved + split.strip()[len(base) :]

    def to_example(self, record, split="validation"):
        """Converts one raw record into a `TextToTextExample`.

        Args:
            record: dict. One TFDS record.
            split: str. The split the record comes from (WSC drops wrong
                referents from `"train"`).

        Returns:
            A `TextToTextExample`, or `None` if the record is filtered out.
        """
        base = split_base_name(split)
        base = self.split_aliases.get(base, base)
        if self.keep_example is not None and not self.keep_example(
            record, base
        ):
            return None
        inputs, targets = self.preprocess(record)
        if self.annotate is not None:
            extra = self.annotate(record)
        elif self.label_strings is not None:
            extra = {
                "label": _records.get_label(
                    record, self.name, self.label_strings
                )
            }
        else:
            extra = {}
        return TextToTextExample(inputs=inputs, targets=targets, **extra)

    def score(self, predictions, examples):
        """Postprocesses `predictions` and computes the task's metrics.

        Args:
            predictions: list of str. Generated text, one per example.
            examples: list of `TextToTextExample`, all labeled.

        Returns:
            A dict mapping each of `metric_names` to a float in `[0, 1]`.
        """
        predictions = list(predictions)
        examples = list(examples)
        if len(predictions) != len(examples):
            raise ValueError(
                f"Task {self.name!r}: got {len(predictions)} predictions for "
                f"{len(examples)} examples."
            )
        if not examples:
            raise ValueError(f"Task {self.name!r}: no examples to score.")
        unlabeled = sum(not e.is_labeled for e in examples)
        if unlabeled:
            raise ValueError(
                f"Task {self.name!r}: {unlabeled} of {len(examples)} examples "
                "have no label (TFDS test splits are unlabeled); cannot score "
                "them."
            )
        predictions = [self.postprocess(p) for p in predictions]
        results = self.compute_metrics(predictions, examples)
        return {name: float(results[name]) for name in self.metric_names}
