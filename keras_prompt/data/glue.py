"""GLUE tasks in T5's text-to-text format, without the task-name prefix.

| task        | input                                   | targets            |
|-------------|-----------------------------------------|--------------------|
| `glue/sst2` | `sentence: <s>`                         | negative, positive |
| `glue/mrpc` | `sentence1: <s1> sentence2: <s2>`       | not_equivalent,    |
|             |                                         | equivalent         |
| `glue/qqp`  | `question1: <q1> question2: <q2>`       | not_duplicate,     |
|             |                                         | duplicate          |
| `glue/rte`  | `sentence1: <s1> sentence2: <s2>`       | entailment,        |
|             |                                         | not_entailment     |
| `glue/mnli` | `hypothesis: <h> premise: <p>`          | entailment,        |
|             |                                         | neutral,           |
|             |                                         | contradiction      |

Field order is T5's (feature names sorted alphabetically, so MNLI puts the
hypothesis first). Metrics: accuracy; MRPC and QQP also binary F1 of label 1.
MNLI's `"validation"`/`"test"` are aliases of the `_matched` splits.
"""

from keras_prompt.data._formats import classification_task

SST2 = classification_task(
    "glue/sst2",
    fields=("sentence",),
    label_strings=("negative", "positive"),
)
MRPC = classification_task(
    "glue/mrpc",
    fields=("sentence1", "sentence2"),
    label_strings=("not_equivalent", "equivalent"),
    f1="binary",
)
QQP = classification_task(
    "glue/qqp",
    fields=("question1", "question2"),
    label_strings=("not_duplicate", "duplicate"),
    f1="binary",
)
RTE = classification_task(
    "glue/rte",
    fields=("sentence1", "sentence2"),
    label_strings=("entailment", "not_entailment"),
)
MNLI = classification_task(
    "glue/mnli",
    fields=("hypothesis", "premise"),
    label_strings=("entailment", "neutral", "contradiction"),
    splits=(
        "train",
        "validation_matched",
        "validation_mismatched",
        "test_matched",
        "test_mismatched",
    ),
    split_aliases={"validation": "validation_matched", "test": "test_matched"},
)

GLUE_TASKS = (SST2, MRPC, QQP, RTE, MNLI)
