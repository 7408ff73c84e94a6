"""Metrics for text-to-text GLUE/SuperGLUE evaluation (pure Python/NumPy).

All metrics take lists of predicted and target strings and return fractions
in `[0, 1]` (T5 reports the same numbers times 100). Predictions that are not
one of the task's label strings are simply wrong, as in T5.
"""

import collections
import operator
import re
import string

import numpy as np


def _check_lengths(predictions, targets):
    predictions = list(predictions)
    targets = list(targets)
    if len(predictions) != len(targets):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(targets)} targets."
        )
    if not predictions:
        raise ValueError("Cannot compute a metric over zero examples.")
    return predictions, targets


def _check_aligned(values, name, others, others_name):
    """`values` as a list, checked to hold one item per item of `others`."""
    values = list(values)
    if len(values) != len(others):
        raise ValueError(
            f"Got {len(values)} {name} for {len(others)} {others_name}."
        )
    return values


def _mean_over_pairs(score, predictions, targets):
    """Mean of `score(prediction, target)` over the checked pairs."""
    predictions, targets = _check_lengths(predictions, targets)
    return float(np.mean([score(p, t) for p, t in zip(predictions, targets)]))


def _f1_from_counts(tp, fp, fn):
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2.0 * tp / denominator


def accuracy(predictions, targets):
    """Fraction of predictions exactly equal to their target string.

    Args:
        predictions: list of str, e.g. generated label strings.
        targets: list of str, the gold string of each prediction.

    Returns:
        float in `[0, 1]`, the fraction of exact (case-sensitive) matches.

    Example:

    ```python
    from keras_prompt.data import metrics

    score = metrics.accuracy(["True", "False", "True"], ["True"] * 3)
    assert abs(score - 2 / 3) < 1e-9
    ```
    """
    return _mean_over_pairs(operator.eq, predictions, targets)


def binary_f1(predictions, targets, positive_label, labels=None):
    """F1 of the class `positive_label`.

    If `labels` (the task's two label strings) is given, a prediction outside
    `labels` counts as the wrong class, i.e. a false positive when the target
    is negative and a false negative when it is positive. This matches T5's
    `f1_score_with_invalid`. Without `labels`, any prediction other than
    `positive_label` is treated as negative.

    Args:
        predictions: list of str.
        targets: list of str.
        positive_label: str. The positive class string.
        labels: optional list of str. The valid label strings.

    Returns:
        float in `[0, 1]`; 0 when there are no positives at all.

    Example:

    ```python
    from keras_prompt.data import metrics

    # tp=1, fp=1, fn=1 -> F1 = 2 / (2 + 1 + 1) = 0.5
    score = metrics.binary_f1(
        ["duplicate", "duplicate", "not_duplicate"],
        ["duplicate", "not_duplicate", "duplicate"],
        positive_label="duplicate",
    )
    assert score == 0.5
    ```
    """
    predictions, targets = _check_lengths(predictions, targets)
    tp = fp = fn = 0
    for p, t in zip(predictions, targets):
        if labels is not None and p not in labels:
            p_pos = t != positive_label  # Invalid: always the wrong class.
        else:
            p_pos = p == positive_label
        t_pos = t == positive_label
        tp += p_pos and t_pos
        fp += p_pos and not t_pos
        fn += t_pos and not p_pos
    return _f1_from_counts(tp, fp, fn)


def macro_f1(predictions, targets, labels):
    """Unweighted mean over `labels` of the per-class F1 (used for CB).

    A class that never occurs in targets or predictions scores 0 (as
    scikit-learn does with `zero_division=0`). Predictions outside `labels`
    are false negatives for their target class.

    Args:
        predictions: list of str.
        targets: list of str.
        labels: list of str. The classes to average over.

    Returns:
        float in `[0, 1]`.

    Example:

    ```python
    from keras_prompt.data import metrics

    labels = ["entailment", "contradiction", "neutral"]
    score = metrics.macro_f1(
        ["entailment", "neutral", "neutral"],
        ["entailment", "contradiction", "neutral"],
        labels,
    )
    # Per-class F1: 1.0, 0.0, 2/3.
    assert abs(score - (1.0 + 0.0 + 2 / 3) / 3) < 1e-9
    ```
    """
    predictions, targets = _check_lengths(predictions, targets)
    pairs = list(zip(predictions, targets))
    scores = []
    for label in labels:
        tp = sum(p == label and t == label for p, t in pairs)
        fp = sum(p == label and t != label for p, t in pairs)
        fn = sum(p != label and t == label for p, t in pairs)
        scores.append(_f1_from_counts(tp, fp, fn))
    return float(np.mean(scores))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text):
    """SQuAD v1.1 answer normalisation.

    Lower-cases, deletes ASCII punctuation, replaces the articles "a", "an"
    and "the" by a space and collapses whitespace.

    Args:
        text: str.

    Returns:
        The normalised str.

    Example:

    ```python
    from keras_prompt.data import metrics

    assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    ```
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _pair_exact_match(prediction, target):
    return float(normalize_answer(prediction) == normalize_answer(target))


def _pair_token_f1(prediction, target):
    prediction_tokens = normalize_answer(prediction).split()
    target_tokens = normalize_answer(target).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(
        target_tokens
    )
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(target_tokens)
    return 2.0 * precision * recall / (precision + recall)


def exact_match(predictions, targets):
    """Mean SQuAD-style exact match (after `normalize_answer`).

    Args:
        predictions: list of str, the predicted answers.
        targets: list of str, one gold answer per prediction.

    Returns:
        float in `[0, 1]`: the share of answers equal once normalised.

    Example:

    ```python
    from keras_prompt.data import metrics

    assert metrics.exact_match(["The Louvre."], ["louvre"]) == 1.0
    ```
    """
    return _mean_over_pairs(_pair_exact_match, predictions, targets)


def token_f1(predictions, targets):
    """Mean SQuAD-style bag-of-tokens F1 (after `normalize_answer`).

    As in the SQuAD v1.1 script, a pair with no common token scores 0 (also
    when both normalise to the empty string).

    Args:
        predictions: list of str, the predicted answers.
        targets: list of str, one gold answer per prediction.

    Returns:
        float in `[0, 1]`, the mean of the per-pair F1 scores.

    Example:

    ```python
    from keras_prompt.data import metrics

    # Tokens "barack obama" vs "obama": precision 1/2, recall 1 -> F1 2/3.
    score = metrics.token_f1(["Barack Obama"], ["Obama"])
    assert abs(score - 2 / 3) < 1e-9
    ```
    """
    return _mean_over_pairs(_pair_token_f1, predictions, targets)


def record_metrics(predictions, answers):
    """ReCoRD exact match and token F1, each maximised over the gold answers.

    Args:
        predictions: list of str. One prediction per (passage, query).
        answers: list of lists of str. All gold answers of each query.

    Returns:
        dict with `"em"` and `"f1"`, floats in `[0, 1]`.

    Example:

    ```python
    from keras_prompt.data import metrics

    scores = metrics.record_metrics(
        ["Obama", "Paris"], [["Barack Obama", "Obama"], ["London"]]
    )
    assert scores == {"em": 0.5, "f1": 0.5}
    ```
    """
    predictions, answers = _check_lengths(predictions, answers)
    ems, f1s = [], []
    for prediction, gold in zip(predictions, answers):
        gold = list(gold)
        if not gold:
            raise ValueError("A ReCoRD example has no gold answers.")
        ems.append(max(_pair_exact_match(prediction, g) for g in gold))
        f1s.append(max(_pair_token_f1(prediction, g) for g in gold))
    return {"em": float(np.mean(ems)), "f1": float(np.mean(f1s))}


def multirc_metrics(predictions, targets, groups, labels=("False", "True")):
    """MultiRC F1a and exact match.

    `f1a` is the binary F1 (positive label `labels[1]`) over all answer
    options; `em` is the fraction of questions (groups) whose answer options
    are all predicted correctly.

    Args:
        predictions: list of str. One per answer option.
        targets: list of str. One per answer option.
        groups: list of hashables. The question of each answer option, e.g.
            `(paragraph_index, question_index)`.
        labels: pair of str. The negative and positive label strings.

    Returns:
        dict with `"f1a"` and `"em"`, floats in `[0, 1]`.

    Example:

    ```python
    from keras_prompt.data import metrics

    scores = metrics.multirc_metrics(
        predictions=["True", "False", "True", "True"],
        targets=["True", "False", "False", "True"],
        groups=[(0, 0), (0, 0), (0, 1), (0, 1)],
    )
    # Question (0, 0) all right, (0, 1) not: EM 0.5. tp=2, fp=1: F1a 0.8.
    assert scores["em"] == 0.5 and abs(scores["f1a"] - 0.8) < 1e-9
    ```
    """
    predictions, targets = _check_lengths(predictions, targets)
    groups = _check_aligned(groups, "groups", targets, "targets")
    f1a = binary_f1(predictions, targets, labels[1], labels=labels)
    all_right = {}
    for p, t, g in zip(predictions, targets, groups):
        all_right[g] = all_right.get(g, True) and p == t
    em = float(np.mean(list(all_right.values())))
    return {"f1a": f1a, "em": em}


# Determiners ignored when comparing a WSC prediction with the referent (the
# same list as T5's `wsc_simple` postprocessor).
_WSC_DETERMINERS = frozenset(
    "a an few her his each every many much my our some that the their these "
    "this those which whose your".split()
)


def _wsc_clean(text):
    words = text.strip().lower().split()
    return [w for w in words if w not in _WSC_DETERMINERS]


def wsc_predicts_referent(prediction, referent):
    """Whether a generated WSC referent names the candidate `referent`.

    Mirrors T5's `wsc_simple` postprocessor: both strings are lower-cased and
    stripped of determiners; a prediction that is empty after that never
    matches; a possessive ("'") on only one side never matches; otherwise the
    prediction matches if its word set is a subset or superset of the
    referent's (so "fuzzy bunny" matches "the bunny").

    Args:
        prediction: str. The generated text.
        referent: str. The candidate noun phrase (`span1_text`).

    Returns:
        bool.

    Example:

    ```python
    from keras_prompt.data import metrics

    assert metrics.wsc_predicts_referent("the fuzzy bunny", "The bunny")
    assert not metrics.wsc_predicts_referent("Bob", "Bob's hat")
    assert not metrics.wsc_predicts_referent("the", "the dog")
    ```
    """
    prediction_words = _wsc_clean(prediction)
    if not prediction_words:
        return False
    referent_words = _wsc_clean(referent)
    if ("'" in " ".join(prediction_words)) != ("'" in " ".join(referent_words)):
        return False
    prediction_set, referent_set = set(prediction_words), set(referent_words)
    return prediction_set <= referent_set or referent_set <= prediction_set


def wsc_accuracy(predictions, referents, labels):
    """WSC accuracy of generated referents against binary labels.

    Each prediction is turned into a 0/1 label with `wsc_predicts_referent`
    against the candidate referent and compared with the gold label (1 when
    the candidate is the pronoun's referent). A prediction that is empty
    after removing determiners is wrong for either label (T5 maps it to -1).

    Args:
        predictions: list of str. Generated referents.
        referents: list of str. The candidate referents (`span1_text`).
        labels: list of int. Gold labels, 0 or 1.

    Returns:
        float in `[0, 1]`.

    Example:

    ```python
    from keras_prompt.data import metrics

    score = metrics.wsc_accuracy(
        ["the trophy", "the trophy"], ["trophy", "suitcase"], [1, 0]
    )
    assert score == 1.0
    ```
    """
    predictions, referents = _check_lengths(predictions, referents)
    labels = _check_aligned(labels, "labels", referents, "referents")
    hits = []
    for prediction, referent, label in zip(predictions, referents, labels):
        if not _wsc_clean(prediction):
            # As in T5, an empty prediction is wrong whatever the label.
            hits.append(False)
        else:
            matched = wsc_predicts_referent(prediction, referent)
            hits.append(int(matched) == int(label))
    return float(np.mean(hits))
