"""Every SuperGLUE task through the TFDS loading path with mocked data.

Real SuperGLUE data is not available offline, so `tfds.testing.mock_data`
stands in for it: random records of the right features (all tasks but WSC,
whose random span indices cannot point at the pronoun), and hand-written
records served by a custom `as_dataset_fn` for exact assertions.
"""

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_prompt.data import evaluate_generation
from keras_prompt.data import get_task
from keras_prompt.data import load_examples
from keras_prompt.data import load_text_to_text


class OracleModel:
    """Generates the target of each known input."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.calls = []

    def generate(self, inputs):
        self.calls.append(len(inputs))
        return [self.answers[text] for text in inputs]


class ConstantModel:
    """Generates the same string for every input (as bytes, like TF)."""

    def __init__(self, text):
        self.text = text

    def generate(self, inputs):
        return tf.constant([self.text] * len(inputs))


def _bool_record(**fields):
    return dict(idx=0, **fields)


RECORDS = {
    "super_glue/boolq": [
        _bool_record(question=f"q{i}?", passage=f"p{i}.", label=label)
        for i, label in enumerate([1, 1, 0, 1])
    ],
    "super_glue/cb": [
        _bool_record(premise=f"p{i}.", hypothesis=f"h{i}.", label=label)
        for i, label in enumerate([0, 1, 2, 2])
    ],
    "super_glue/copa": [
        _bool_record(
            premise=f"p{i}.",
            choice1=f"c1 {i}.",
            choice2=f"c2 {i}.",
            question="effect",
            label=label,
        )
        for i, label in enumerate([0, 1, 1])
    ],
    "super_glue/multirc": [
        {
            "paragraph": "Bob ran.<br>Al sat.",
            "question": question,
            "answer": answer,
            "idx": {"paragraph": 0, "question": q_idx, "answer": a_idx},
            "label": label,
        }
        for question, answer, q_idx, a_idx, label in [
            ("Who ran?", "Bob", 0, 0, 1),
            ("Who ran?", "Al", 0, 1, 0),
            ("Who flew?", "Bob", 1, 2, 0),
            ("Who flew?", "Al", 1, 3, 0),
        ]
    ],
    "super_glue/record": [
        {
            "passage": "Obama met Macron.\n@highlight\nIn Paris",
            "query": "@placeholder met the French president.",
            "entities": ["Obama", "Macron", "Paris"],
            "answers": ["Obama"],
            "idx": {"passage": 0, "query": 0},
        },
        {
            "passage": "Obama met Macron.\n@highlight\nIn Paris",
            "query": "They met in @placeholder.",
            "entities": ["Obama", "Macron", "Paris", "the city of Paris"],
            "answers": ["Paris", "the city of Paris"],
            "idx": {"passage": 0, "query": 1},
        },
    ],
    "super_glue/rte": [
        _bool_record(premise=f"p{i}.", hypothesis=f"h{i}.", label=label)
        for i, label in enumerate([0, 1])
    ],
    "super_glue/wic": [
        _bool_record(
            sentence1=f"s{i} bank.",
            sentence2=f"t{i} bank.",
            word="bank",
            start1=3,
            end1=7,
            start2=3,
            end2=7,
            label=label,
        )
        for i, label in enumerate([0, 0, 1])
    ],
    "super_glue/wsc.fixed": [
        {
            "text": f"The {noun} did not fit into the {other} because it "
            f"was too {adjective} .",
            "span1_text": candidate,
            "span1_index": 1,
            "span2_text": "it",
            "span2_index": 9,
            "label": label,
            "idx": i,
        }
        for i, (noun, other, adjective, candidate, label) in enumerate(
            [
                ("trophy", "suitcase", "big", "trophy", 1),
                ("trophy", "suitcase", "big", "suitcase", 0),
                ("trophy", "suitcase", "big", "The trophy", 1),
                ("ball", "box", "small", "trophy", 0),
            ]
        )
    ],
}

# Expected metrics of a constant prediction on the records above.
CONSTANT_CASES = {
    "super_glue/boolq": ("True", {"accuracy": 3 / 4}),
    "super_glue/cb": (
        "neutral",
        # Per-class F1 0, 0 and 2*2 / (2*2 + 2) for neutral.
        {"accuracy": 1 / 2, "macro_f1": (0 + 0 + 4 / 6) / 3},
    ),
    "super_glue/copa": ("choice2", {"accuracy": 2 / 3}),
    # Question 0 has a True answer, question 1 none; no positive predicted.
    "super_glue/multirc": ("False", {"f1a": 0.0, "em": 1 / 2}),
    "super_glue/record": ("Paris", {"em": 1 / 2, "f1": 1 / 2}),
    "super_glue/rte": ("entailment", {"accuracy": 1 / 2}),
    "super_glue/wic": ("False", {"accuracy": 2 / 3}),
    # "the trophy" names candidates 0, 2, 3: right, right, right, wrong.
    "super_glue/wsc": ("the trophy", {"accuracy": 3 / 4}),
}

SUPERGLUE = sorted(CONSTANT_CASES)


def _tfds_key(builder):
    return f"{builder.name}/{builder.builder_config.name}"


def handcrafted(records=RECORDS, test_records=None):
    """An `as_dataset_fn` serving `records` (test split: `test_records`)."""

    def as_dataset_fn(self, split, decoders=None, read_config=None, **kw):
        del decoders, read_config, kw
        key = _tfds_key(self)
        base = split.split("[")[0]
        chosen = (test_records or {}).get(key, []) if base == "test" else None
        chosen = records[key] if chosen is None else chosen
        spec = self.info.features.get_tensor_spec()
        return tf.data.Dataset.from_generator(
            lambda: iter(chosen), output_signature=spec
        )

    return as_dataset_fn


def _records_for(name):
    return RECORDS[get_task(name).tfds_name]


def _pairs(dataset):
    return [
        (x.decode("utf-8"), y.decode("utf-8"))
        for x, y in tfds.as_numpy(dataset)
    ]


@pytest.mark.parametrize("name", SUPERGLUE)
def test_handcrafted_records_through_loader(name, tmp_path):
    task = get_task(name)
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        pairs = _pairs(
            load_text_to_text(name, "validation", data_dir=str(tmp_path))
        )
        examples = load_examples(name, "validation", data_dir=str(tmp_path))
    expected = [task.preprocess(r) for r in _records_for(name)]
    assert pairs == expected
    assert [(e.inputs, e.targets) for e in examples] == expected


def test_handcrafted_exact_strings(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        data_dir = str(tmp_path)
        multirc = _pairs(
            load_text_to_text("super_glue/multirc", "validation", data_dir)
        )
        record = _pairs(
            load_text_to_text("super_glue/record", "validation", data_dir)
        )
        wsc = _pairs(load_text_to_text("super_glue/wsc", "train", data_dir))
        copa = _pairs(
            load_text_to_text("super_glue/copa", "validation", data_dir)
        )
    assert multirc[0] == (
        "question: Who ran? answer: Bob paragraph: Bob ran. Al sat.",
        "True",
    )
    assert record[1] == (
        "query: They met in @placeholder. entities: Obama, Macron, Paris, "
        "the city of Paris passage: Obama met Macron. In Paris",
        "Paris",
    )
    # Train keeps only the correct referents (labels 1), shuffled.
    assert sorted(wsc) == [
        (
            "The trophy did not fit into the suitcase because *it* was too "
            "big .",
            target,
        )
        for target in ["The trophy", "trophy"]
    ]
    assert copa[2] == (
        "choice1: c1 2. choice2: c2 2. premise: p2. question: effect",
        "choice2",
    )


@pytest.mark.parametrize("name", SUPERGLUE)
def test_evaluate_generation_handcrafted(name, tmp_path):
    task = get_task(name)
    records = _records_for(name)
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        examples = load_examples(name, "validation", data_dir=str(tmp_path))
        if name == "super_glue/wsc":
            # WSC inputs repeat across candidates, so answer in call order:
            # name the candidate only when it is the referent.
            oracle = _SequenceModel(
                [e.targets if e.label == 1 else "nobody" for e in examples]
            )
        else:
            oracle = OracleModel({e.inputs: e.targets for e in examples})
        perfect = evaluate_generation(
            oracle, name, data_dir=str(tmp_path), batch_size=3
        )
        constant, expected = CONSTANT_CASES[name]
        scores = evaluate_generation(
            ConstantModel(constant), name, data_dir=str(tmp_path)
        )
    assert len(examples) == len(records)
    assert perfect == {metric: 1.0 for metric in task.metric_names}
    assert scores == pytest.approx(expected)
    assert set(scores) == set(task.metric_names)


class _SequenceModel:
    """Returns fixed outputs in call order."""

    def __init__(self, outputs):
        self.outputs = list(outputs)

    def generate(self, inputs):
        batch, self.outputs = (
            self.outputs[: len(inputs)],
            self.outputs[len(inputs) :],
        )
        return batch


def test_wsc_generating_the_candidate_scores_the_label_prior(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        examples = load_examples(
            "super_glue/wsc", "validation", data_dir=str(tmp_path)
        )
        scores = evaluate_generation(
            _SequenceModel([e.targets for e in examples]),
            "super_glue/wsc",
            data_dir=str(tmp_path),
        )
    # Always "yes, the candidate": right exactly on the label-1 records.
    assert scores == {"accuracy": 0.5}


@pytest.mark.parametrize(
    "name", [name for name in SUPERGLUE if name != "super_glue/wsc"]
)
def test_random_mock_data(name, tmp_path):
    task = get_task(name)
    with tfds.testing.mock_data(num_examples=7):
        dataset = load_text_to_text(
            name, "validation", data_dir=str(tmp_path), batch_size=4
        )
        batches = list(tfds.as_numpy(dataset))
        examples = load_examples(name, "validation", data_dir=str(tmp_path))
        oracle = OracleModel({e.inputs: e.targets for e in examples})
        perfect = evaluate_generation(oracle, name, data_dir=str(tmp_path))
        if task.label_strings:
            constant = task.label_strings[0]
            scores = evaluate_generation(
                ConstantModel(constant), name, data_dir=str(tmp_path)
            )
    assert [len(inputs) for inputs, _ in batches] == [4, 3]
    assert len(examples) == 7
    first_field = {
        "super_glue/boolq": "passage: ",
        "super_glue/cb": "hypothesis: ",
        "super_glue/copa": "choice1: ",
        "super_glue/multirc": "question: ",
        "super_glue/record": "query: ",
        "super_glue/rte": "hypothesis: ",
        "super_glue/wic": "sentence1: ",
    }[name]
    assert all(e.inputs.startswith(first_field) for e in examples)
    if task.label_strings:
        assert all(e.targets in task.label_strings for e in examples)
        prior = sum(e.targets == constant for e in examples) / len(examples)
        if "accuracy" in scores:
            assert scores["accuracy"] == pytest.approx(prior)
        else:  # MultiRC: constant "False" never predicts a positive.
            assert scores["f1a"] == 0.0
    else:
        assert all(e.targets == e.answers[0] for e in examples)
    assert perfect == {metric: 1.0 for metric in task.metric_names}


def test_test_split_is_unlabeled(tmp_path):
    test_records = {
        "super_glue/cb": [
            dict(r, label=-1) for r in RECORDS["super_glue/cb"][:2]
        ],
        "super_glue/record": [
            dict(r, answers=[]) for r in RECORDS["super_glue/record"]
        ],
    }
    with tfds.testing.mock_data(
        as_dataset_fn=handcrafted(test_records=test_records)
    ):
        cb = _pairs(load_text_to_text("super_glue/cb", "test", str(tmp_path)))
        record = _pairs(
            load_text_to_text("super_glue/record", "test", str(tmp_path))
        )
        with pytest.raises(ValueError, match="unlabeled"):
            evaluate_generation(
                ConstantModel("neutral"),
                "super_glue/cb",
                split="test",
                data_dir=str(tmp_path),
            )
    assert cb == [
        ("hypothesis: h0. premise: p0.", ""),
        ("hypothesis: h1. premise: p1.", ""),
    ]
    assert [target for _, target in record] == ["", ""]


def test_bad_record_from_tfds_raises(tmp_path):
    bad = {"super_glue/boolq": [dict(RECORDS["super_glue/boolq"][0], label=7)]}
    with tfds.testing.mock_data(as_dataset_fn=handcrafted(records=bad)):
        with pytest.raises(
            ValueError,
            match=r"'super_glue/boolq'.*field 'label' has value 7",
        ):
            load_text_to_text("super_glue/boolq", "train", str(tmp_path))


def test_load_options(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        data_dir = str(tmp_path)

        def load(**kwargs):
            return _pairs(
                load_text_to_text(
                    "super_glue/multirc", data_dir=data_dir, **kwargs
                )
            )

        ordered = load(split="validation")
        assert load(split="validation", max_examples=2) == ordered[:2]
        assert load(split="validation", max_examples=0) == []
        first = load(split="validation", shuffle=True, seed=3)
        assert sorted(first) == sorted(ordered)
        assert load(split="validation", shuffle=True, seed=3) == first
        batched = load_text_to_text(
            "super_glue/multirc", "validation", data_dir, batch_size=3
        )
        assert batched.element_spec[0].shape.as_list() == [None]
        assert int(batched.cardinality()) == 2
        with pytest.raises(ValueError, match="batch_size must be positive"):
            load_text_to_text("super_glue/cb", "train", data_dir, batch_size=0)
        with pytest.raises(ValueError, match="unknown split 'dev'"):
            load_text_to_text("super_glue/cb", "dev", data_dir)


def test_evaluate_generation_batches_and_checks_model(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=handcrafted()):
        examples = load_examples(
            "super_glue/multirc", "validation", data_dir=str(tmp_path)
        )
        oracle = OracleModel({e.inputs: e.targets for e in examples})
        evaluate_generation(
            oracle, "super_glue/multirc", data_dir=str(tmp_path), batch_size=3
        )
        assert oracle.calls == [3, 1]

        class Short:
            def generate(self, inputs):
                return ["True"]

        with pytest.raises(ValueError, match="returned 1 outputs"):
            evaluate_generation(
                Short(), "super_glue/multirc", data_dir=str(tmp_path)
            )
        with pytest.raises(TypeError, match="generate"):
            evaluate_generation(object(), "super_glue/multirc")
