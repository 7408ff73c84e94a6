"""The dev evaluation of `Recipe.fit`: a function scoring a model on the
split that selects the prompt, and the metrics it reports."""

import numpy as np

from keras_prompt.training.pipeline import is_examples
from keras_prompt.training.pipeline import string_pairs
from keras_prompt.training.pipeline import to_text
from keras_prompt.validation import check_count

#: The selection score `evaluation_fn` adds to the task's metrics.
SCORE = "val_score"


def task_metrics(record):
    """The task's metrics in an evaluation record or epoch logs of
    `Recipe.fit`: the `"val_"` metrics, unprefixed, without the selection
    score `"val_score"` the recipe adds."""
    return {
        key[len("val_") :]: value
        for key, value in record.items()
        if key.startswith("val_") and key != SCORE
    }


def exact_match_accuracy(model, inputs, targets, batch_size=32):
    """Share of `model.generate` outputs equal to their target (stripped).

    Args:
        model: anything with `generate(list_of_str)`.
        inputs: list of input strings.
        targets: list of target strings.
        batch_size: int, inputs per `generate` call.

    Returns:
        A float in `[0, 1]`.
    """
    correct = 0
    for start in range(0, len(inputs), batch_size):
        outputs = model.generate(list(inputs[start : start + batch_size]))
        for output, target in zip(outputs, targets[start : start + batch_size]):
            correct += to_text(output).strip() == to_text(target).strip()
    return correct / len(inputs)


def _scorer(recipe, data_dir, validation_data, evaluate_fn, max_examples):
    """`scorer(model)`: a float or a dict of the task's metrics."""
    batch_size = recipe.eval_batch_size or recipe.batch_size
    if evaluate_fn is not None:
        if not callable(evaluate_fn):
            raise TypeError(
                "`evaluate_fn` must be callable. "
                f"Received: evaluate_fn={evaluate_fn!r}"
            )
        return evaluate_fn
    decode = recipe.decode
    if is_examples(validation_data):
        return lambda model: validation_data.score(model, batch_size, decode)
    if validation_data is not None:
        inputs, targets = string_pairs(validation_data, "validation_data")
        if max_examples is not None:
            inputs, targets = inputs[:max_examples], targets[:max_examples]
        return lambda model: {
            "accuracy": exact_match_accuracy(model, inputs, targets, batch_size)
        }
    if recipe.task is None:
        raise ValueError(
            "The recipe has no `task`; pass `validation_data` or "
            "`evaluate_fn`. Received: task=None"
        )
    read = []

    def scorer(model):
        if not read:
            read.append(
                recipe.examples(
                    model, recipe.eval_split, data_dir, max_examples
                )
            )
            if not len(read[0]):
                raise ValueError(
                    f"Task {recipe.task.name!r}: split "
                    f"{recipe.eval_split!r} has no examples to evaluate."
                )
        return read[0].score(model, batch_size, decode)

    return scorer


def evaluation_fn(
    recipe,
    data_dir=None,
    validation_data=None,
    evaluate_fn=None,
    max_examples=None,
):
    """The dev evaluation of a recipe: `fn(model) -> {"val_<metric>": ...}`;
    called as `Recipe.evaluation_fn(data_dir, validation_data, ...)`.

    The returned dict holds each metric prefixed `"val_"` and
    `"val_score"`, the selection score: the metric, or the mean of the
    metrics when there are several (the paper's stopping metric). The
    task's `eval_split` is read once, on the first evaluation, in the
    model's form (`Recipe.examples`) and scored by its `score`: the task's
    metrics of the best label strings by log-likelihood or of the
    generations (`Recipe.decode`), or of a classifier's argmax classes.

    Args:
        recipe: the `Recipe` (`self` of `Recipe.evaluation_fn`): its task,
            `eval_split` and batch sizes.
        data_dir: the TFDS data dir of the task's `eval_split`.
        validation_data: instead of the task's split: a `(inputs, targets)`
            pair of string lists, scored by exact match (`"accuracy"`), or
            examples from `Recipe.examples`.
        evaluate_fn: instead of both: `evaluate_fn(model)` returning a
            float or a dict of metrics.
        max_examples: optional int, evaluate only the first this many dev
            examples (TFDS order).
    """
    check_count("max_examples", max_examples, allow_none=True)
    scorer = _scorer(
        recipe, data_dir, validation_data, evaluate_fn, max_examples
    )

    def evaluate(model):
        result = scorer(model)
        if not isinstance(result, dict):
            result = {"score": result}
        metrics = {f"val_{k}": float(v) for k, v in result.items()}
        if SCORE not in metrics:
            metrics[SCORE] = float(np.mean(list(metrics.values())))
        return metrics

    return evaluate
