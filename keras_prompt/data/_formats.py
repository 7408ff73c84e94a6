"""Private building blocks shared by the GLUE and SuperGLUE task modules.

The formats follow T5's `glue` preprocessor (`"<field>: <text> <field>: ..."`
joined by single spaces, label index -> label string) minus the leading task
name, as the Prompt Tuning paper does ("taskless" tasks).
"""

import functools
import re

from keras_prompt.data import _records
from keras_prompt.data import metrics
from keras_prompt.data.task import TextToTextTask


def join_fields(record, task_name, fields):
    """Returns `"f1: <text1> f2: <text2> ..."` for the given text fields."""
    parts = []
    for field in fields:
        parts.append(f"{field}:")
        parts.append(_records.get_text(record, task_name, field))
    return " ".join(parts)


def remove_html(text):
    """Removes MultiRC's HTML markup: `<br>` -> space, drops `<b>`/`</b>`."""
    text = text.replace("<br>", " ")
    return re.sub(r"</?b>", "", text)


def classification_preprocess(
    record, *, task_name, fields, label_strings, html=False
):
    """`record -> (inputs, targets)` for a field-joined classification task."""
    inputs = join_fields(record, task_name, fields)
    if html:
        inputs = remove_html(inputs)
    label = _records.get_label(record, task_name, label_strings)
    targets = "" if label is None else label_strings[label]
    return inputs, targets


def classification_metrics(predictions, examples, *, label_strings, f1=None):
    """Accuracy, plus binary F1 (`f1="binary"`) or macro F1 (`"macro"`)."""
    targets = [example.targets for example in examples]
    results = {"accuracy": metrics.accuracy(predictions, targets)}
    if f1 == "binary":
        results["f1"] = metrics.binary_f1(
            predictions, targets, label_strings[1], labels=label_strings
        )
    elif f1 == "macro":
        results["macro_f1"] = metrics.macro_f1(
            predictions, targets, label_strings
        )
    return results


def classification_task(
    name,
    fields,
    label_strings,
    tfds_name=None,
    f1=None,
    splits=("train", "validation", "test"),
    split_aliases=None,
):
    """Builds a `TextToTextTask` for a field-joined classification dataset."""
    label_strings = tuple(label_strings)
    metric_names = ("accuracy",)
    if f1 == "binary":
        metric_names += ("f1",)
    elif f1 == "macro":
        metric_names += ("macro_f1",)
    fields_text = " ".join(f"{field}: ..." for field in fields)
    return TextToTextTask(
        name=name,
        tfds_name=tfds_name or name,
        preprocess=functools.partial(
            classification_preprocess,
            task_name=name,
            fields=tuple(fields),
            label_strings=label_strings,
        ),
        metric_names=metric_names,
        compute_metrics=functools.partial(
            classification_metrics, label_strings=label_strings, f1=f1
        ),
        label_strings=label_strings,
        splits=splits,
        split_aliases=split_aliases,
        description=f'"{fields_text}" -> {" / ".join(label_strings)}',
    )
