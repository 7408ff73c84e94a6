"""Metrics: hand-worked cases and scikit-learn cross-checks."""

import numpy as np
import pytest
from sklearn import metrics as skm

from keras_prompt.data import metrics


def test_accuracy_hand_worked():
    assert metrics.accuracy(["a", "b", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    assert metrics.accuracy(["True"], ["True"]) == 1.0
    # Exact string comparison: no normalisation for class labels.
    assert metrics.accuracy(["true"], ["True"]) == 0.0


def test_accuracy_rejects_bad_lengths():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        metrics.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="zero examples"):
        metrics.accuracy([], [])


def test_binary_f1_hand_worked():
    pos, neg = "duplicate", "not_duplicate"
    # tp=2, fp=1, fn=1 -> 4 / (4 + 1 + 1)
    predictions = [pos, pos, pos, neg, neg]
    targets = [pos, pos, neg, pos, neg]
    assert metrics.binary_f1(predictions, targets, pos) == pytest.approx(4 / 6)
    # No positives anywhere -> 0, as scikit-learn with zero_division=0.
    assert metrics.binary_f1([neg], [neg], pos) == 0.0


def test_binary_f1_invalid_prediction_is_wrong_class():
    labels = ("not_equivalent", "equivalent")
    # Invalid vs positive target: false negative. tp=1, fn=1 -> 2/3.
    score = metrics.binary_f1(
        ["equivalent", "garbage"],
        ["equivalent", "equivalent"],
        "equivalent",
        labels=labels,
    )
    assert score == pytest.approx(2 / 3)
    # Invalid vs negative target: false positive (T5 flips it). tp=1, fp=1.
    score = metrics.binary_f1(
        ["equivalent", "garbage"],
        ["equivalent", "not_equivalent"],
        "equivalent",
        labels=labels,
    )
    assert score == pytest.approx(2 / 3)
    # Without `labels`, an invalid prediction simply counts as negative.
    score = metrics.binary_f1(
        ["equivalent", "garbage"],
        ["equivalent", "not_equivalent"],
        "equivalent",
    )
    assert score == 1.0


def test_macro_f1_hand_worked():
    labels = ["entailment", "contradiction", "neutral"]
    predictions = ["entailment", "entailment", "neutral", "neutral"]
    targets = ["entailment", "contradiction", "neutral", "entailment"]
    # entailment: tp1 fp1 fn1 -> 1/2; contradiction: fn1 -> 0;
    # neutral: tp1 fp1 -> 2/3.
    assert metrics.macro_f1(predictions, targets, labels) == pytest.approx(
        (1 / 2 + 0 + 2 / 3) / 3
    )


@pytest.mark.parametrize("seed", range(5))
def test_f1s_match_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    names = ["False", "True"]
    y_true = rng.integers(0, 2, size=200)
    y_pred = rng.integers(0, 2, size=200)
    predictions = [names[i] for i in y_pred]
    targets = [names[i] for i in y_true]
    assert metrics.binary_f1(predictions, targets, "True") == pytest.approx(
        skm.f1_score(y_true, y_pred)
    )
    assert metrics.accuracy(predictions, targets) == pytest.approx(
        skm.accuracy_score(y_true, y_pred)
    )

    cb_names = ["entailment", "contradiction", "neutral"]
    y_true = rng.integers(0, 3, size=150)
    y_pred = rng.integers(-1, 3, size=150)  # -1: an invalid generation.
    predictions = [cb_names[i] if i >= 0 else "blah" for i in y_pred]
    targets = [cb_names[i] for i in y_true]
    expected = skm.f1_score(
        y_true, y_pred, labels=[0, 1, 2], average="macro", zero_division=0
    )
    assert metrics.macro_f1(predictions, targets, cb_names) == pytest.approx(
        expected
    )

    # T5's f1_score_with_invalid: invalid predictions become 1 - target.
    y_true = rng.integers(0, 2, size=100)
    y_pred = rng.integers(-1, 2, size=100)
    flipped = np.where(y_pred < 0, 1 - y_true, y_pred)
    predictions = [names[i] if i >= 0 else "maybe" for i in y_pred]
    targets = [names[i] for i in y_true]
    assert metrics.binary_f1(
        predictions, targets, "True", labels=names
    ) == pytest.approx(skm.f1_score(y_true, flipped))


def test_macro_f1_missing_class_matches_sklearn():
    labels = ["entailment", "contradiction", "neutral"]
    predictions = ["entailment", "neutral"]
    targets = ["entailment", "neutral"]
    # "contradiction" never occurs: scores 0 and drags the mean to 2/3.
    assert metrics.macro_f1(predictions, targets, labels) == pytest.approx(
        skm.f1_score(
            [0, 2], [0, 2], labels=[0, 1, 2], average="macro", zero_division=0
        )
    )
    assert metrics.macro_f1(predictions, targets, labels) == pytest.approx(
        2 / 3
    )


def test_normalize_answer():
    assert metrics.normalize_answer("The Cat's  hat!") == "cats hat"
    assert metrics.normalize_answer("an apple, a pear") == "apple pear"
    assert metrics.normalize_answer("Theatre") == "theatre"
    assert metrics.normalize_answer("  ") == ""


def test_exact_match_and_token_f1_hand_worked():
    assert metrics.exact_match(["The Louvre!"], ["louvre"]) == 1.0
    assert metrics.exact_match(["Louvre museum"], ["louvre"]) == 0.0
    # "new york city" vs "york": p=1/3, r=1 -> F1 = .5
    assert metrics.token_f1(["New York City"], ["York"]) == pytest.approx(0.5)
    # Repeated tokens count with multiplicity: "a b b" vs "b": common 1.
    assert metrics.token_f1(["x y y"], ["y"]) == pytest.approx(
        2 * (1 / 3) * 1 / (1 / 3 + 1)
    )
    assert metrics.token_f1(["completely different"], ["answer"]) == 0.0
    # SQuAD v1.1: no common tokens (even both empty) -> 0.
    assert metrics.token_f1(["the"], ["a"]) == 0.0


def test_record_metrics_max_over_answers():
    scores = metrics.record_metrics(
        ["Barack Obama", "Paris", "the Eiffel Tower"],
        [["Obama", "Barack Obama"], ["London"], ["Eiffel"]],
    )
    # EM: 1, 0, 0. F1: 1, 0, 2/3.
    assert scores["em"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="no gold answers"):
        metrics.record_metrics(["x"], [[]])


def test_multirc_metrics_hand_worked():
    predictions = ["True", "False", "True", "False", "True", "False"]
    targets = ["True", "False", "False", "False", "True", "True"]
    groups = [(0, 0), (0, 0), (0, 1), (0, 1), (1, 2), (1, 2)]
    scores = metrics.multirc_metrics(predictions, targets, groups)
    # Groups: all right, one wrong, one wrong -> EM 1/3.
    assert scores["em"] == pytest.approx(1 / 3)
    # tp=2, fp=1, fn=1 -> F1a = 4/6.
    assert scores["f1a"] == pytest.approx(4 / 6)
    assert scores["f1a"] == pytest.approx(
        skm.f1_score(
            [t == "True" for t in targets], [p == "True" for p in predictions]
        )
    )


def test_multirc_invalid_prediction_breaks_question():
    scores = metrics.multirc_metrics(
        ["True", "yes"], ["True", "False"], [(0, 0), (0, 0)]
    )
    assert scores["em"] == 0.0
    assert scores["f1a"] == pytest.approx(2 / 3)  # "yes" is a false positive.


def test_wsc_predicts_referent():
    f = metrics.wsc_predicts_referent
    assert f("the trophy", "trophy")
    assert f("Trophy", "The trophy")
    assert f("fuzzy bunny", "the bunny")  # Superset.
    assert f("bunny", "the fuzzy bunny")  # Subset.
    assert not f("suitcase", "the trophy")
    assert not f("Bob", "Bob's hat")  # Possessive on one side only.
    assert f("Bob's hat", "bob's hat")
    assert not f("", "trophy")
    assert not f("the", "the trophy")  # Only a determiner: empty.


def test_wsc_accuracy():
    predictions = ["the trophy", "the trophy", "", "suitcase"]
    referents = ["trophy", "suitcase", "trophy", "trophy"]
    labels = [1, 0, 0, 0]
    # Right, right, empty prediction is wrong even for label 0, right.
    assert metrics.wsc_accuracy(predictions, referents, labels) == 0.75
