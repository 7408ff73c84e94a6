"""SuperGLUE tasks in T5's text-to-text format, without the task-name prefix.

| task                 | input                                          |
|----------------------|------------------------------------------------|
| `super_glue/boolq`   | `passage: <p> question: <q>`                   |
| `super_glue/cb`      | `hypothesis: <h> premise: <p>`                 |
| `super_glue/copa`    | `choice1: <c1> choice2: <c2> premise: <p>      |
|                      | question: <cause|effect>`                      |
| `super_glue/multirc` | `question: <q> answer: <a> paragraph: <p>`     |
|                      | (HTML `<br>` -> space, `<b>`/`</b>` removed)   |
| `super_glue/record`  | `query: <q> entities: <e1>, <e2>, ...          |
|                      | passage: <p>` (`@highlight` lines joined)      |
| `super_glue/rte`     | `hypothesis: <h> premise: <p>`                 |
| `super_glue/wic`     | `sentence1: <s1> sentence2: <s2> word: <w>`    |
| `super_glue/wsc`     | `<text with the pronoun marked as *he*>`       |

Targets: BoolQ/MultiRC/WiC `False`/`True`; CB `entailment`/`contradiction`/
`neutral`; COPA `choice1`/`choice2`; RTE `entailment`/`not_entailment`;
ReCoRD the first gold answer entity; WSC the candidate referent
(`span1_text`). Field order is T5's (feature names sorted alphabetically
unless T5 fixes them, as for MultiRC and WiC).

WSC follows T5's `wsc_simple` tasks (TFDS `super_glue/wsc.fixed`): the model
generates the referent of the marked pronoun, training keeps only records
whose candidate is the correct referent (label 1), and evaluation turns the
generated text into a label by comparing it with the candidate (see
`keras_prompt.data.metrics.wsc_predicts_referent`) and reports accuracy.
"""

import functools
import re
import string

import numpy as np

from keras_prompt.data import _records
from keras_prompt.data import metrics
from keras_prompt.data._formats import classification_preprocess
from keras_prompt.data._formats import classification_task
from keras_prompt.data.task import TextToTextTask

_BOOL_LABELS = ("False", "True")

BOOLQ = classification_task(
    "super_glue/boolq",
    fields=("passage", "question"),
    label_strings=_BOOL_LABELS,
)
CB = classification_task(
    "super_glue/cb",
    fields=("hypothesis", "premise"),
    label_strings=("entailment", "contradiction", "neutral"),
    f1="macro",
)
COPA = classification_task(
    "super_glue/copa",
    fields=("choice1", "choice2", "premise", "question"),
    label_strings=("choice1", "choice2"),
)
RTE = classification_task(
    "super_glue/rte",
    fields=("hypothesis", "premise"),
    label_strings=("entailment", "not_entailment"),
)
WIC = classification_task(
    "super_glue/wic",
    fields=("sentence1", "sentence2", "word"),
    label_strings=_BOOL_LABELS,
)


# ---------------------------------------------------------------- MultiRC --

_MULTIRC_NAME = "super_glue/multirc"


def _multirc_annotate(record):
    return {
        "label": _records.get_label(record, _MULTIRC_NAME, _BOOL_LABELS),
        "group": _records.get_ints(
            record, _MULTIRC_NAME, ("idx.paragraph", "idx.question")
        ),
    }


def _multirc_metrics(predictions, examples):
    return metrics.multirc_metrics(
        predictions,
        [example.targets for example in examples],
        [example.group for example in examples],
        labels=_BOOL_LABELS,
    )


MULTIRC = TextToTextTask(
    name=_MULTIRC_NAME,
    tfds_name=_MULTIRC_NAME,
    preprocess=functools.partial(
        classification_preprocess,
        task_name=_MULTIRC_NAME,
        fields=("question", "answer", "paragraph"),
        label_strings=_BOOL_LABELS,
        html=True,
    ),
    metric_names=("f1a", "em"),
    compute_metrics=_multirc_metrics,
    label_strings=_BOOL_LABELS,
    annotate=_multirc_annotate,
    description=(
        '"question: ... answer: ... paragraph: ..." -> False / True; '
        "one example per answer option, EM grouped per question"
    ),
)


# ----------------------------------------------------------------- ReCoRD --

_RECORD_NAME = "super_glue/record"


def join_highlights(passage):
    """Joins ReCoRD's `@highlight` lines into sentences, as T5 does.

    A `"\\n@highlight\\n"` after sentence-final punctuation (`. ? ! " '`)
    becomes a space; any other becomes `". "`.

    Args:
        passage: str. A ReCoRD passage.

    Returns:
        The passage as running text.

    Example:

    ```python
    from keras_prompt.data.superglue import join_highlights

    text = "Story.\\n@highlight\\nFirst point\\n@highlight\\nSecond point"
    assert join_highlights(text) == "Story. First point. Second point"
    ```
    """
    passage = re.sub(r"([.?!\"'])\n@highlight\n", r"\1 ", passage)
    return passage.replace("\n@highlight\n", ". ")


def _record_preprocess(record):
    query = _records.get_text(record, _RECORD_NAME, "query")
    entities = _records.get_text_list(record, _RECORD_NAME, "entities")
    passage = join_highlights(
        _records.get_text(record, _RECORD_NAME, "passage")
    )
    answers = _records.get_text_list(record, _RECORD_NAME, "answers")
    inputs = (
        f"query: {query} entities: {', '.join(entities)} passage: {passage}"
    )
    return inputs, (answers[0] if answers else "")


def _record_annotate(record):
    return {
        "answers": tuple(
            _records.get_text_list(record, _RECORD_NAME, "answers")
        ),
        "group": _records.get_ints(
            record, _RECORD_NAME, ("idx.passage", "idx.query")
        ),
    }


def _record_metrics(predictions, examples):
    return metrics.record_metrics(
        predictions, [example.answers for example in examples]
    )


RECORD = TextToTextTask(
    name=_RECORD_NAME,
    tfds_name=_RECORD_NAME,
    preprocess=_record_preprocess,
    metric_names=("em", "f1"),
    compute_metrics=_record_metrics,
    label_strings=None,
    annotate=_record_annotate,
    description=(
        '"query: ... entities: e1, e2 passage: ..." -> first gold answer; '
        "one example per (passage, query); EM/F1 max over gold answers"
    ),
)


# -------------------------------------------------------------------- WSC --

_WSC_NAME = "super_glue/wsc"
_PUNCT = string.punctuation


def _wsc_match(words, start, pronoun_words, loose):
    """Returns the marked replacement if the pronoun sits at `start`."""
    end = start + len(pronoun_words)
    if start < 0 or end > len(words):
        return None
    window = " ".join(words[start:end])
    pronoun = " ".join(pronoun_words)
    if not loose:
        return f"*{window}*" if window == pronoun else None
    prefix = window[: len(window) - len(window.lstrip(_PUNCT))]
    suffix = window[len(window.rstrip(_PUNCT)) :]
    core = window[len(prefix) : len(window) - len(suffix)]
    if core and core.lower() == pronoun.strip(_PUNCT).lower():
        return f"{prefix}*{core}*{suffix}"
    return None


def mark_pronoun(text, pronoun, index, task_name=_WSC_NAME):
    """Marks the pronoun of a WSC text with asterisks, like T5's `wsc_simple`.

    `text` is split on single spaces and the word(s) at `index` replaced by
    `*<pronoun>*`. T5 asserts that the word at `index` is exactly the pronoun
    and special-cases two training texts where it is not; this function
    instead falls back to a match that ignores case and surrounding
    punctuation (`him,"` becomes `*him*,"`), then to the nearest such
    occurrence of the pronoun.

    Args:
        text: str. The WSC text.
        pronoun: str. The pronoun (`span2_text`).
        index: int. Its word index (`span2_index`).
        task_name: str. Used in error messages.

    Returns:
        The text with the pronoun marked.

    Example:

    ```python
    from keras_prompt.data.superglue import mark_pronoun

    marked = mark_pronoun("Mitchell asked Tom if he could lend money.", "he", 4)
    assert marked == "Mitchell asked Tom if *he* could lend money."
    ```
    """
    words = text.split(" ")
    pronoun_words = pronoun.split(" ")
    if pronoun.strip(_PUNCT + " "):
        # T5's case first (exactly the pronoun at `index`), then the same
        # position ignoring case and punctuation, then the nearest occurrence.
        nearby = sorted(range(len(words)), key=lambda i: (abs(i - index), i))
        attempts = [(index, False), (index, True)]
        attempts += [(i, True) for i in nearby if i != index]
        for start, loose in attempts:
            marked = _wsc_match(words, start, pronoun_words, loose)
            if marked is not None:
                end = start + len(pronoun_words)
                return " ".join(words[:start] + [marked] + words[end:])
    raise ValueError(
        f"Task {task_name!r}: field 'span2_text' has value {pronoun!r}, which "
        f"does not occur in field 'text' (span2_index={index}): {text!r}."
    )


def _wsc_preprocess(record):
    text = _records.get_text(record, _WSC_NAME, "text")
    pronoun = _records.get_text(record, _WSC_NAME, "span2_text")
    index = _records.get_int(record, _WSC_NAME, "span2_index")
    referent = _records.get_text(record, _WSC_NAME, "span1_text")
    return mark_pronoun(text, pronoun, index), referent


def _wsc_annotate(record):
    return {"label": _records.get_label(record, _WSC_NAME, _BOOL_LABELS)}


def _wsc_keep_example(record, split):
    if split != "train":
        return True
    return _records.get_label(record, _WSC_NAME, _BOOL_LABELS) == 1


def _wsc_metrics(predictions, examples):
    return {
        "accuracy": metrics.wsc_accuracy(
            predictions,
            [example.targets for example in examples],
            [example.label for example in examples],
        )
    }


WSC = TextToTextTask(
    name=_WSC_NAME,
    tfds_name="super_glue/wsc.fixed",
    preprocess=_wsc_preprocess,
    metric_names=("accuracy",),
    compute_metrics=_wsc_metrics,
    label_strings=None,
    annotate=_wsc_annotate,
    keep_example=_wsc_keep_example,
    description=(
        '"<text with *pronoun* marked>" -> candidate referent; train keeps '
        "label-1 records only; eval compares generation with the candidate"
    ),
)

SUPERGLUE_TASKS = (BOOLQ, CB, COPA, MULTIRC, RECORD, RTE, WIC, WSC)
_SUPERGLUE_BY_NAME = {task.name: task for task in SUPERGLUE_TASKS}


def superglue_average(results):
    """Averages per-task results the way the SuperGLUE leaderboard does.

    Each task's score is the unweighted mean of its metrics (CB: accuracy and
    macro F1; MultiRC: F1a and EM; ReCoRD: EM and F1; the others have one
    metric); the average is the unweighted mean of the task scores. Only the
    tasks present in `results` are averaged (the leaderboard uses all eight;
    the diagnostics AX-b/AX-g are not part of this average).

    Args:
        results: dict mapping a SuperGLUE task name (`"super_glue/cb"` or
            just `"cb"`) to that task's metrics dict, as returned by
            `keras_prompt.data.evaluate_generation`.

    Returns:
        float, on the same scale as the inputs.

    Example:

    ```python
    from keras_prompt.data import superglue_average

    score = superglue_average(
        {
            "super_glue/boolq": {"accuracy": 0.8},
            "super_glue/cb": {"accuracy": 0.9, "macro_f1": 0.7},
        }
    )
    assert abs(score - (0.8 + 0.8) / 2) < 1e-9
    ```
    """
    task_scores = {}
    for name, task_results in results.items():
        task = _SUPERGLUE_BY_NAME.get(name) or _SUPERGLUE_BY_NAME.get(
            f"super_glue/{name}"
        )
        if task is None:
            raise ValueError(
                f"Unknown SuperGLUE task {name!r}. Known tasks: "
                f"{sorted(_SUPERGLUE_BY_NAME)}."
            )
        if task.name in task_scores:
            raise ValueError(f"Task {task.name!r} appears twice in results.")
        missing = [m for m in task.metric_names if m not in task_results]
        if missing:
            raise ValueError(
                f"Task {task.name!r}: results lack metric(s) {missing}; got "
                f"{sorted(task_results)}."
            )
        task_scores[task.name] = float(
            np.mean([task_results[m] for m in task.metric_names])
        )
    if not task_scores:
        raise ValueError("superglue_average needs at least one task result.")
    return float(np.mean(list(task_scores.values())))
