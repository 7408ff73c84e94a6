"""Loading the real `glue/sst2` from the shared TFDS dir; missing data dirs."""

import collections
import os

import pytest
import tensorflow_datasets as tfds

from keras_prompt.data import DatasetNotPreparedError
from keras_prompt.data import evaluate_generation
from keras_prompt.data import load_examples
from keras_prompt.data import load_text_to_text

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
SHARED_TFDS_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")

needs_sst2 = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_TFDS_DIR, "glue", "sst2")),
    reason=f"glue/sst2 is not prepared in {SHARED_TFDS_DIR}",
)


@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything tries to download or prepare data."""

    def forbidden(*args, **kwargs):
        raise AssertionError("tried to download_and_prepare")

    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", forbidden
    )


@pytest.fixture(scope="module")
def sst2_validation():
    return load_examples("glue/sst2", "validation", data_dir=SHARED_TFDS_DIR)


@needs_sst2
def test_sst2_validation(sst2_validation, no_download):
    examples = sst2_validation
    assert len(examples) == 872
    first = examples[0]
    assert first.inputs == (
        "sentence: a valueless kiddie paean to pro basketball underwritten "
        "by the nba . "
    )
    assert first.targets == "negative"
    assert first.label == 0
    assert all(e.inputs.startswith("sentence: ") for e in examples)
    assert {e.targets for e in examples} == {"negative", "positive"}

    # The targets follow the raw TFDS labels one to one.
    raw = tfds.load(
        "glue/sst2",
        split="validation",
        data_dir=SHARED_TFDS_DIR,
        download=False,
    )
    raw_labels = [int(r["label"]) for r in tfds.as_numpy(raw)]
    names = ["negative", "positive"]
    assert [e.targets for e in examples] == [names[i] for i in raw_labels]
    counts = collections.Counter(e.targets for e in examples)
    assert counts == {
        "negative": raw_labels.count(0),
        "positive": raw_labels.count(1),
    }


@needs_sst2
def test_sst2_dataset(sst2_validation, no_download):
    dataset = load_text_to_text(
        "glue/sst2", "validation", data_dir=SHARED_TFDS_DIR
    )
    assert int(dataset.cardinality()) == 872
    # Validation is not shuffled by default: same order as load_examples.
    pairs = [
        (x.decode(), y.decode()) for x, y in tfds.as_numpy(dataset.take(5))
    ]
    assert pairs == [(e.inputs, e.targets) for e in sst2_validation[:5]]

    batched = load_text_to_text(
        "glue/sst2",
        "validation",
        data_dir=SHARED_TFDS_DIR,
        batch_size=32,
        shuffle=True,
        seed=0,
        max_examples=100,
    )
    sizes = [int(x.shape[0]) for x, _ in batched]
    assert sizes == [32, 32, 32, 4]


@needs_sst2
def test_sst2_test_split_is_unlabeled(no_download):
    examples = load_examples(
        "glue/sst2", "test", data_dir=SHARED_TFDS_DIR, max_examples=5
    )
    assert len(examples) == 5
    assert all(e.targets == "" and not e.is_labeled for e in examples)
    with pytest.raises(ValueError, match="unlabeled"):
        evaluate_generation(
            _Constant("positive"),
            "glue/sst2",
            split="test",
            data_dir=SHARED_TFDS_DIR,
            max_examples=5,
        )


class _Constant:
    def __init__(self, text):
        self.text = text

    def generate(self, inputs):
        return [self.text] * len(inputs)


class _Oracle:
    def __init__(self, examples):
        self.answers = {e.inputs: e.targets for e in examples}

    def generate(self, inputs):
        return [self.answers[x].encode() + b"\n" for x in inputs]


@needs_sst2
def test_sst2_evaluate_generation(sst2_validation, no_download):
    first_64 = sst2_validation[:64]
    perfect = evaluate_generation(
        _Oracle(first_64),
        "glue/sst2",
        data_dir=SHARED_TFDS_DIR,
        batch_size=16,
        max_examples=64,
    )
    assert perfect == {"accuracy": 1.0}
    positive = evaluate_generation(
        _Constant("positive"),
        "glue/sst2",
        data_dir=SHARED_TFDS_DIR,
        max_examples=64,
    )
    prior = sum(e.targets == "positive" for e in first_64) / 64
    assert 0 < prior < 1
    assert positive == {"accuracy": pytest.approx(prior)}


def test_missing_data_dir_raises_clearly(tmp_path, no_download):
    empty = str(tmp_path / "tfds")
    with pytest.raises(DatasetNotPreparedError) as info:
        load_text_to_text("super_glue/boolq", "validation", data_dir=empty)
    message = str(info.value)
    assert "'super_glue/boolq'" in message
    assert empty in message
    assert "Nothing was downloaded" in message
    assert not os.path.exists(os.path.join(empty, "super_glue"))


@needs_sst2
def test_data_dir_without_the_task_raises_clearly(no_download):
    # The shared dir holds SST-2, RTE, MRPC, CoLA and four SuperGLUE tasks,
    # not QQP.
    assert not os.path.exists(os.path.join(SHARED_TFDS_DIR, "glue", "qqp"))
    with pytest.raises(DatasetNotPreparedError, match="'glue/qqp'") as info:
        evaluate_generation(
            _Constant("duplicate"), "glue/qqp", data_dir=SHARED_TFDS_DIR
        )
    assert SHARED_TFDS_DIR in str(info.value)


def test_tfds_data_dir_env_disables_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(
        tfds.core.DatasetBuilder,
        "download_and_prepare",
        lambda *a, **k: calls.append(a),
    )
    with pytest.raises(DatasetNotPreparedError, match="'glue/rte'"):
        load_examples("glue/rte", "train", data_dir=str(tmp_path))
    with pytest.raises(DatasetNotPreparedError):
        load_examples("glue/rte", "train")  # data_dir from TFDS_DATA_DIR.
    assert calls == []
