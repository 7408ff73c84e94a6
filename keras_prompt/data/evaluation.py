"""Scoring a text generator on a task's TFDS split."""

from keras_prompt.data import _records
from keras_prompt.data.loading import load_examples
from keras_prompt.data.registry import get_task


def _to_text(value):
    if hasattr(value, "numpy"):  # A scalar tf.Tensor.
        value = value.numpy()
    value = _records.as_item(value)
    text = _records.as_text(value, errors="replace")
    if text is not None:
        return text
    raise TypeError(
        f"model.generate must return strings, got {type(value).__name__} "
        f"{value!r}."
    )


def generate_in_batches(model, inputs, batch_size, generate_fn=None):
    """Runs a text generator over `inputs` in batches.

    Args:
        model: an object with a `generate(list_of_str)` method.
        inputs: list of input strings.
        batch_size: int, inputs per call.
        generate_fn: optional callable used instead of `model.generate`.

    Returns:
        A list of strings, one per input.

    Raises:
        TypeError: for an output that is not text.
        ValueError: when a call returns another number of outputs than
            it got inputs.
    """
    generate_fn = generate_fn or model.generate
    predictions = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        outputs = generate_fn(batch)
        if hasattr(outputs, "numpy"):
            outputs = outputs.numpy()
        if isinstance(outputs, (str, bytes)):
            outputs = [outputs]
        outputs = [_to_text(output) for output in outputs]
        if len(outputs) != len(batch):
            raise ValueError(
                f"model.generate returned {len(outputs)} outputs for a batch "
                f"of {len(batch)} inputs."
            )
        predictions.extend(outputs)
    return predictions


def evaluate_generation(
    model,
    task,
    split="validation",
    data_dir=None,
    batch_size=32,
    max_examples=None,
):
    """Generates predictions for a task's split and returns its metrics.

    The inputs are sent to `model.generate` in batches; the returned strings
    are postprocessed (stripped) and scored with the task's metrics:
    accuracy (+ F1 for MRPC/QQP, macro F1 for CB), MultiRC F1a over all
    answer options and EM per question (grouped by paragraph and question
    index), ReCoRD EM/F1 maximised over the gold answers of each query, WSC
    accuracy of "the generation names the candidate referent" against the
    label.

    Args:
        model: any object with `generate(list_of_str) -> list_of_str`
            returning only the generated target text (str, bytes or a
            string tensor/array per input).
        task: str or `TextToTextTask`.
        split: str. A labeled split (`"validation"` by default; MNLI maps it
            to `"validation_matched"`). Test splits have no labels and raise
            `ValueError`.
        data_dir: str or None. The TFDS data dir.
        batch_size: int. Number of inputs per `generate` call.
        max_examples: int or None. Score only the first this many examples.
            For MultiRC this may cut the last question's answer options.

    Returns:
        A dict mapping each of `task.metric_names` to a float in `[0, 1]`.

    Example:

    ```python
    import os

    from keras_prompt.data import evaluate_generation

    class AlwaysPositive:
        def generate(self, inputs):
            return ["positive"] * len(inputs)

    results = evaluate_generation(
        AlwaysPositive(),
        "glue/sst2",
        data_dir=os.environ.get("TFDS_DATA_DIR"),
        max_examples=64,
    )
    print(results)  # {"accuracy": <share of positive examples>}
    ```
    """
    task = get_task(task)
    if not callable(getattr(model, "generate", None)):
        raise TypeError(
            "model must have a generate(list_of_str) -> list_of_str method, "
            f"got {type(model).__name__}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    examples = load_examples(
        task, split, data_dir=data_dir, max_examples=max_examples
    )
    if not examples:
        raise ValueError(
            f"Task {task.name!r}: split {split!r} has no examples to evaluate."
        )
    if not all(example.is_labeled for example in examples):
        raise ValueError(
            f"Task {task.name!r}: split {split!r} is unlabeled (TFDS test "
            "splits have label -1); evaluate on a labeled split."
        )
    inputs = [example.inputs for example in examples]
    predictions = generate_in_batches(model, inputs, batch_size)
    return task.score(predictions, examples)
