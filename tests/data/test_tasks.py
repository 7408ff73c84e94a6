"""Task formats, registry and bad-record handling on hand-written records."""

import ast
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_prompt.data import GLUE_TASKS
from keras_prompt.data import SUPERGLUE_TASKS
from keras_prompt.data import TextToTextExample
from keras_prompt.data import get_task
from keras_prompt.data import list_tasks
from keras_prompt.data import superglue_average
from keras_prompt.data.superglue import join_highlights
from keras_prompt.data.superglue import mark_pronoun

DATA_PACKAGE = (
    pathlib.Path(__file__).resolve().parents[2] / "keras_prompt" / "data"
)

# (task, record, expected inputs, expected targets)
FORMAT_CASES = [
    (
        "glue/sst2",
        {"sentence": "a gem .", "label": 1, "idx": 0},
        "sentence: a gem .",
        "positive",
    ),
    (
        "glue/mrpc",
        {"sentence1": "A b.", "sentence2": "C d.", "label": 0, "idx": 0},
        "sentence1: A b. sentence2: C d.",
        "not_equivalent",
    ),
    (
        "glue/qqp",
        {"question1": "Why?", "question2": "How?", "label": 1, "idx": 0},
        "question1: Why? question2: How?",
        "duplicate",
    ),
    (
        "glue/rte",
        {"sentence1": "P.", "sentence2": "H.", "label": 1, "idx": 0},
        "sentence1: P. sentence2: H.",
        "not_entailment",
    ),
    (
        "glue/mnli",
        {"premise": "P.", "hypothesis": "H.", "label": 2, "idx": 0},
        "hypothesis: H. premise: P.",
        "contradiction",
    ),
    (
        "super_glue/boolq",
        {"question": "is it?", "passage": "It is.", "label": 1, "idx": 0},
        "passage: It is. question: is it?",
        "True",
    ),
    (
        "super_glue/cb",
        {"premise": "P.", "hypothesis": "H.", "label": 2, "idx": 0},
        "hypothesis: H. premise: P.",
        "neutral",
    ),
    (
        "super_glue/copa",
        {
            "premise": "The man broke his toe.",
            "choice1": "He dropped a hammer.",
            "choice2": "He got a hole in his sock.",
            "question": "cause",
            "label": 0,
            "idx": 0,
        },
        "choice1: He dropped a hammer. choice2: He got a hole in his sock. "
        "premise: The man broke his toe. question: cause",
        "choice1",
    ),
    (
        "super_glue/multirc",
        {
            "paragraph": "<b>Sent 1: </b>Bob ran.<br><b>Sent 2: </b>Al sat.",
            "question": "Who ran?",
            "answer": "Bob",
            "idx": {"paragraph": 0, "question": 0, "answer": 0},
            "label": 1,
        },
        "question: Who ran? answer: Bob paragraph: Sent 1: Bob ran. "
        "Sent 2: Al sat.",
        "True",
    ),
    (
        "super_glue/record",
        {
            "passage": "Obama visited Paris.\n@highlight\nHe met Macron"
            "\n@highlight\nThey ate.",
            "query": "@placeholder met Macron.",
            "entities": ["Obama", "Paris", "Macron"],
            "answers": ["Obama", "Barack Obama"],
            "idx": {"passage": 3, "query": 7},
        },
        "query: @placeholder met Macron. entities: Obama, Paris, Macron "
        "passage: Obama visited Paris. He met Macron. They ate.",
        "Obama",
    ),
    (
        "super_glue/rte",
        {"premise": "P.", "hypothesis": "H.", "label": 0, "idx": 0},
        "hypothesis: H. premise: P.",
        "entailment",
    ),
    (
        "super_glue/wic",
        {
            "sentence1": "Bank of a river.",
            "sentence2": "A bank account.",
            "word": "bank",
            "start1": 0,
            "end1": 4,
            "start2": 2,
            "end2": 6,
            "label": 0,
            "idx": 0,
        },
        "sentence1: Bank of a river. sentence2: A bank account. word: bank",
        "False",
    ),
    (
        "super_glue/wsc",
        {
            "text": "Mark told Pete many lies about himself , which Pete "
            "included in his book .",
            "span1_text": "Mark",
            "span1_index": 0,
            "span2_text": "his",
            "span2_index": 12,
            "label": 0,
            "idx": 0,
        },
        "Mark told Pete many lies about himself , which Pete included in "
        "*his* book .",
        "Mark",
    ),
]


@pytest.mark.parametrize(
    "name,record,inputs,targets",
    FORMAT_CASES,
    ids=[case[0] for case in FORMAT_CASES],
)
def test_formats(name, record, inputs, targets):
    assert get_task(name).preprocess(record) == (inputs, targets)


def test_every_task_has_a_format_case():
    assert sorted({case[0] for case in FORMAT_CASES}) == list_tasks()


def test_numpy_records_as_from_tfds():
    record = {
        "question": np.bytes_(b"is it?"),
        "passage": b"It is caf\xc3\xa9.",
        "label": np.int64(0),
        "idx": np.int32(4),
    }
    assert get_task("super_glue/boolq").preprocess(record) == (
        "passage: It is café. question: is it?",
        "False",
    )
    record = {
        "passage": b"P.",
        "query": b"Q @placeholder",
        "entities": np.array([b"A", b"B"], dtype=object),
        "answers": np.array([b"B"], dtype=object),
        "idx": {"passage": np.int32(1), "query": np.int32(2)},
    }
    example = get_task("super_glue/record").to_example(record)
    assert example.inputs == "query: Q @placeholder entities: A, B passage: P."
    assert example.answers == ("B",)
    assert example.group == (1, 2)


def test_registry():
    names = list_tasks()
    assert names == sorted(names)
    assert len(names) == 13
    assert [t.name for t in GLUE_TASKS + SUPERGLUE_TASKS] == [
        "glue/sst2",
        "glue/mrpc",
        "glue/qqp",
        "glue/rte",
        "glue/mnli",
        "super_glue/boolq",
        "super_glue/cb",
        "super_glue/copa",
        "super_glue/multirc",
        "super_glue/record",
        "super_glue/rte",
        "super_glue/wic",
        "super_glue/wsc",
    ]
    task = get_task("glue/sst2")
    assert get_task(task) is task
    with pytest.raises(ValueError, match="Unknown task 'glue/nope'") as info:
        get_task("glue/nope")
    assert "glue/sst2" in str(info.value)
    assert "super_glue/wsc" in str(info.value)


def test_label_strings_and_metric_names():
    expected = {
        "glue/sst2": (("negative", "positive"), ("accuracy",)),
        "glue/mrpc": (("not_equivalent", "equivalent"), ("accuracy", "f1")),
        "glue/qqp": (("not_duplicate", "duplicate"), ("accuracy", "f1")),
        "glue/rte": (("entailment", "not_entailment"), ("accuracy",)),
        "glue/mnli": (
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
        ),
        "super_glue/boolq": (("False", "True"), ("accuracy",)),
        "super_glue/cb": (
            ("entailment", "contradiction", "neutral"),
            ("accuracy", "macro_f1"),
        ),
        "super_glue/copa": (("choice1", "choice2"), ("accuracy",)),
        "super_glue/multirc": (("False", "True"), ("f1a", "em")),
        "super_glue/record": (None, ("em", "f1")),
        "super_glue/rte": (("entailment", "not_entailment"), ("accuracy",)),
        "super_glue/wic": (("False", "True"), ("accuracy",)),
        "super_glue/wsc": (None, ("accuracy",)),
    }
    for name, (labels, metric_names) in expected.items():
        task = get_task(name)
        assert task.label_strings == labels, name
        assert task.metric_names == metric_names, name


@pytest.mark.parametrize(
    "name",
    [t.name for t in GLUE_TASKS + SUPERGLUE_TASKS if t.label_strings],
)
def test_label_strings_match_tfds_class_labels(name, tmp_path):
    # The TFDS builder code (no data needed) defines the label names.
    task = get_task(name)
    builder = tfds.builder(task.tfds_name, data_dir=str(tmp_path))
    assert tuple(builder.info.features["label"].names) == task.label_strings


def test_mnli_splits():
    mnli = get_task("glue/mnli")
    assert mnli.resolve_split("validation") == "validation_matched"
    assert mnli.resolve_split("test") == "test_matched"
    assert mnli.resolve_split("validation_mismatched[:10]") == (
        "validation_mismatched[:10]"
    )
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        mnli.resolve_split("dev")
    assert get_task("glue/sst2").resolve_split("train[:5%]") == "train[:5%]"


def test_unlabeled_records_get_empty_targets():
    inputs, targets = get_task("glue/sst2").preprocess(
        {"sentence": "x", "label": -1, "idx": 0}
    )
    assert (inputs, targets) == ("sentence: x", "")
    example = get_task("super_glue/cb").to_example(
        {"premise": "p", "hypothesis": "h", "label": -1, "idx": 0}, "test"
    )
    assert example.targets == "" and example.label is None
    assert not example.is_labeled
    record = {
        "passage": "p",
        "query": "q",
        "entities": ["e"],
        "answers": [],
        "idx": {"passage": 0, "query": 0},
    }
    example = get_task("super_glue/record").to_example(record, "test")
    assert example.targets == "" and not example.is_labeled


@pytest.mark.parametrize(
    "name,record,pattern",
    [
        (
            "glue/sst2",
            {"sentence": "x", "idx": 0},
            r"'glue/sst2'.*missing field 'label'",
        ),
        (
            "glue/sst2",
            {"label": 1, "idx": 0},
            r"'glue/sst2'.*missing field 'sentence'",
        ),
        (
            "glue/sst2",
            {"sentence": "x", "label": 2, "idx": 0},
            r"'glue/sst2'.*field 'label' has value 2.*out of range",
        ),
        (
            "glue/mnli",
            {"premise": "p", "hypothesis": "h", "label": -2, "idx": 0},
            r"'glue/mnli'.*field 'label' has value -2",
        ),
        (
            "super_glue/cb",
            {"premise": "p", "hypothesis": "h", "label": "maybe", "idx": 0},
            r"'super_glue/cb'.*field 'label' has value 'maybe'.*known labels",
        ),
        (
            "super_glue/boolq",
            {"passage": 3, "question": "q", "label": 0, "idx": 0},
            r"'super_glue/boolq'.*field 'passage' must be a string.*int 3",
        ),
        (
            "super_glue/copa",
            {"premise": "p", "choice1": "a", "choice2": "b", "label": 0},
            r"'super_glue/copa'.*missing field 'question'",
        ),
        (
            "super_glue/record",
            {
                "passage": "p",
                "query": "q",
                "entities": "Obama",
                "answers": [],
                "idx": {"passage": 0, "query": 0},
            },
            r"'super_glue/record'.*field 'entities' must be a sequence.*"
            "Obama",
        ),
        (
            "super_glue/wsc",
            {
                "text": "The cat sat .",
                "span1_text": "cat",
                "span1_index": 1,
                "span2_text": "she",
                "span2_index": 2,
                "label": 1,
                "idx": 0,
            },
            r"'super_glue/wsc'.*field 'span2_text' has value 'she'.*"
            r"span2_index=2",
        ),
    ],
)
def test_bad_records_raise(name, record, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_task(name).to_example(record)


def test_multirc_missing_nested_index():
    record = {
        "paragraph": "p",
        "question": "q",
        "answer": "a",
        "label": 1,
        "idx": {"paragraph": 0, "answer": 0},
    }
    with pytest.raises(
        ValueError, match=r"'super_glue/multirc'.*missing field 'idx.question'"
    ):
        get_task("super_glue/multirc").to_example(record)


def test_label_given_as_string():
    example = get_task("super_glue/cb").to_example(
        {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}
    )
    assert (example.targets, example.label) == ("neutral", 2)


def test_join_highlights():
    assert join_highlights("A.\n@highlight\nB\n@highlight\nC") == "A. B. C"
    assert join_highlights('"Hi!"\n@highlight\nB') == '"Hi!" B'
    assert join_highlights("A?\n@highlight\nB") == "A? B"
    assert join_highlights("no highlights") == "no highlights"


def test_mark_pronoun_fallbacks():
    # T5's exact case.
    assert mark_pronoun("I saw him there", "him", 2) == "I saw *him* there"
    # Punctuation attached to the word (T5 special-cases one such text).
    assert (
        mark_pronoun('"Good for him," he said.', "him", 2)
        == '"Good for *him*," he said.'
    )
    # Off-by-one index (T5 special-cases one such text): nearest occurrence.
    assert (
        mark_pronoun("want to use it , but", "it", 2)
        == "want to use *it* , but"
    )
    # Case-insensitive, multi-word pronoun.
    assert mark_pronoun("Then His own dog", "his own", 1) == (
        "Then *His own* dog"
    )


def test_wsc_train_keeps_only_correct_referents():
    wsc = get_task("super_glue/wsc")
    record = {
        "text": "The cup fell on the plate and it broke .",
        "span1_text": "The cup",
        "span1_index": 0,
        "span2_text": "it",
        "span2_index": 7,
        "label": 0,
        "idx": 0,
    }
    assert wsc.to_example(record, "train") is None
    example = wsc.to_example(record, "validation")
    assert example.inputs == "The cup fell on the plate and *it* broke ."
    assert example.targets == "The cup"
    assert example.label == 0
    assert wsc.to_example(dict(record, label=1), "train[:10]").label == 1


def test_task_score():
    cb = get_task("super_glue/cb")
    examples = [
        TextToTextExample("a", "entailment", label=0),
        TextToTextExample("b", "neutral", label=2),
    ]
    assert cb.score([" entailment ", "contradiction"], examples) == {
        "accuracy": 0.5,
        "macro_f1": pytest.approx((1 + 0 + 0) / 3),
    }
    with pytest.raises(ValueError, match="1 predictions for 2 examples"):
        cb.score(["entailment"], examples)
    with pytest.raises(ValueError, match="no label"):
        cb.score(["x"], [TextToTextExample("a", "")])


def test_superglue_average():
    results = {
        "super_glue/boolq": {"accuracy": 0.80},
        "cb": {"accuracy": 0.90, "macro_f1": 0.70},
        "super_glue/multirc": {"f1a": 0.60, "em": 0.20},
        "super_glue/record": {"em": 0.50, "f1": 0.70},
        "super_glue/wsc": {"accuracy": 0.60},
    }
    expected = (0.80 + 0.80 + 0.40 + 0.60 + 0.60) / 5
    assert superglue_average(results) == pytest.approx(expected)
    with pytest.raises(ValueError, match="Unknown SuperGLUE task 'glue/rte'"):
        superglue_average({"glue/rte": {"accuracy": 1.0}})
    with pytest.raises(ValueError, match="lack metric.*macro_f1"):
        superglue_average({"super_glue/cb": {"accuracy": 1.0}})
    with pytest.raises(ValueError, match="appears twice"):
        superglue_average(
            {"cb": {"accuracy": 1, "macro_f1": 1}, "super_glue/cb": {}}
        )
    with pytest.raises(ValueError, match="at least one"):
        superglue_average({})


def test_data_package_imports_no_model_code():
    for path in DATA_PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top not in {"keras", "keras_hub"}, (path, module)
                if top == "keras_prompt":
                    assert module.startswith("keras_prompt.data"), (
                        path,
                        module,
                    )
