"""Raw sentences and integer labels of GLUE/SuperGLUE classification tasks.

The text-to-text tasks (`keras_prompt.data.get_task`) turn a record into
`"sentence: ..." -> "positive"`; an encoder classifier (e.g.
`keras_prompt.PromptClassifier`) wants the raw text segments and the class
index instead. `load_classification` reads the same TFDS records, with the
same data-dir resolution and the same `DatasetNotPreparedError`, and returns
them in that form.

Every task built from named text fields and class labels is supported:
`glue/sst2`, `glue/mrpc`, `glue/qqp`, `glue/rte`, `glue/mnli`,
`super_glue/boolq`, `super_glue/cb`, `super_glue/copa`, `super_glue/rte`,
`super_glue/wic` and `super_glue/multirc` (one example per answer option).
One text field gives one segment; two fields give a segment pair (in the
task's field order); with more fields, all but the last are joined as
`"field: text field: text"` into the first segment and the last field is the
second (COPA: choices and premise, then `cause`/`effect`; WiC: both
sentences, then the word).
"""

import dataclasses
import functools
from typing import Tuple
from typing import Union

import numpy as np

from keras_prompt.data import _records
from keras_prompt.data._formats import classification_preprocess
from keras_prompt.data._formats import join_fields
from keras_prompt.data._formats import remove_html
from keras_prompt.data.loading import _check_count
from keras_prompt.data.loading import _convert_records
from keras_prompt.data.registry import get_task


@dataclasses.dataclass(frozen=True)
class ClassificationData:
    """One split of a classification task as raw text and class indices.

    Attributes:
        texts: a list of `str` (one text field), or a tuple of two lists of
            `str` (a segment pair), as `keras_prompt.PromptClassifier` and
            keras-hub's `TextClassifier` take them.
        labels: int32 NumPy array of class indices, `(num_examples,)`.
        label_strings: tuple of str, the class names in index order.
        task_name: str, the task's registry name.
        split: str, the TFDS split that was read.
    """

    texts: Union[list, Tuple[list, list]]
    labels: np.ndarray
    label_strings: Tuple[str, ...]
    task_name: str
    split: str

    def __post_init__(self):
        _check_labels(self)

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self):
        return len(self.label_strings)

    @property
    def num_segments(self):
        return len(self.texts) if isinstance(self.texts, tuple) else 1

    def select(self, indices):
        """A new `ClassificationData` holding the examples at `indices`."""
        indices = np.asarray(indices, dtype="int64")
        if isinstance(self.texts, tuple):
            texts = tuple(
                [segment[i] for i in indices] for segment in self.texts
            )
        else:
            texts = [self.texts[i] for i in indices]
        return dataclasses.replace(
            self, texts=texts, labels=self.labels[indices]
        )


def _check_labels(data):
    """Raises unless every label of `data` is an integer class index in
    `[0, num_classes)`, naming the task, the split and the first bad
    example (its row in the split as read)."""
    labels = np.asarray(data.labels)
    where = f"Task {data.task_name!r}, split {data.split!r}"
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{where}: `labels` must be integer class indices. Received: "
            f"labels of dtype {labels.dtype}"
        )
    count = len(data.label_strings)
    bad = np.flatnonzero((labels < 0) | (labels >= count))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{where}: example {row} has label {int(labels[row])}, out of "
            f"range; expected a class index in [0, {count}) for labels "
            f"{list(data.label_strings)} ({bad.size} bad label(s) in all)."
        )


def classification_fields(task):
    """The text fields and HTML flag of a field-joined classification task.

    Args:
        task: str or `TextToTextTask`.

    Returns:
        `(fields, html)`: the task's text field names in its order, and
        whether MultiRC-style HTML markup is removed.

    Raises:
        ValueError: if the task is not built from text fields and class
            labels (ReCoRD, WSC); the message names the supported tasks.
    """
    task = get_task(task)
    preprocess = task.preprocess
    keywords = getattr(preprocess, "keywords", None) or {}
    if (
        not isinstance(preprocess, functools.partial)
        or preprocess.func is not classification_preprocess
        or task.label_strings is None
        or "fields" not in keywords
    ):
        raise ValueError(
            f"Task {task.name!r} is not a text classification task (it has no "
            "fixed text fields and class labels), so it cannot be read as "
            "sentences and labels. Supported tasks: "
            f"{', '.join(list_classification_tasks())}."
        )
    return tuple(keywords["fields"]), bool(keywords.get("html", False))


def list_classification_tasks():
    """The registered tasks `load_classification` can read, sorted."""
    from keras_prompt.data.registry import list_tasks

    names = []
    for name in list_tasks():
        task = get_task(name)
        preprocess = task.preprocess
        if (
            isinstance(preprocess, functools.partial)
            and preprocess.func is classification_preprocess
            and task.label_strings is not None
        ):
            names.append(name)
    return names


def _segments(record, task_name, fields, html):
    texts = [_records.get_text(record, task_name, field) for field in fields]
    if len(fields) > 2:
        texts = [join_fields(record, task_name, fields[:-1]), texts[-1]]
    if html:
        texts = [remove_html(text) for text in texts]
    return texts


def load_classification(
    task,
    split,
    data_dir=None,
    max_examples=None,
    download=None,
):
    """Reads a classification task's split as raw text and class indices.

    Records are read in TFDS order, like `keras_prompt.data.load_examples`.
    Only labeled splits can be read (TFDS test splits have label `-1`).

    Args:
        task: str or `TextToTextTask`, e.g. `"glue/sst2"`.
        split: str. A split of the task, optionally a TFDS slice such as
            `"train[:1000]"`; MNLI's `"validation"` means
            `"validation_matched"`.
        data_dir: str or None. The TFDS data dir; `None` uses
            `TFDS_DATA_DIR` or the TFDS default.
        max_examples: int or None. Stop after this many examples.
        download: bool or None. Whether to download and prepare a missing
            dataset; `None` downloads only when neither `data_dir` nor
            `TFDS_DATA_DIR` is set (see `keras_prompt.data.load_examples`).

    Returns:
        A `ClassificationData`.

    Raises:
        DatasetNotPreparedError: if the dataset is not in the data dir and
            no download is allowed.
        ValueError: for an unknown or non-classification task, an unknown
            split, an unlabeled split or a bad record.

    Example:

    ```python
    import os

    from keras_prompt.data.classification import load_classification

    data = load_classification(
        "glue/sst2",
        "validation",
        data_dir=os.environ.get("TFDS_DATA_DIR"),
        max_examples=4,
    )
    print(data.texts[0], "->", data.label_strings[data.labels[0]])
    ```
    """
    task = get_task(task)
    fields, html = classification_fields(task)
    _check_count(max_examples, "max_examples", allow_zero=True)
    resolved = task.resolve_split(split)

    def labeled_texts(record):
        label = _records.get_label(record, task.name, task.label_strings)
        if label is None:
            raise ValueError(
                f"Task {task.name!r}: split {resolved!r} is unlabeled "
                "(TFDS test splits have no labels); use a labeled split "
                "such as 'train' or 'validation'."
            )
        return label, _segments(record, task.name, fields, html)

    rows = _convert_records(
        task, resolved, data_dir, download, max_examples, labeled_texts
    )
    labels = [label for label, _ in rows]
    segments = [[] for _ in range(min(len(fields), 2))]
    for _, texts in rows:
        for segment, text in zip(segments, texts):
            segment.append(text)
    texts = segments[0] if len(segments) == 1 else tuple(segments)
    return ClassificationData(
        texts=texts,
        labels=np.asarray(labels, dtype="int32"),
        label_strings=tuple(task.label_strings),
        task_name=task.name,
        split=resolved,
    )


__all__ = [
    "ClassificationData",
    "classification_fields",
    "list_classification_tasks",
    "load_classification",
]
