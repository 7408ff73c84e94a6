"""Reading one task for a bank from any source, checked through the task
model's prompt-state protocol."""

import os

import numpy as np

from keras_prompt.serving import naming
from keras_prompt.tasks.prompt_task import PromptTaskMixin


def read_task_state(model, source, source_task=None):
    """The checked state `{"prompt": ([depth,] length, dim), **heads}` of
    one task for a bank whose task model is `model`, from a prompt file, a
    trained task model, a prompt array or a dict of arrays; `source_task`
    picks one prompt of a source holding several (a name or an index)."""
    count = None
    if isinstance(source, (str, os.PathLike)):
        state, count, source_task = _read_file(
            model, os.fspath(source), source_task
        )
    elif isinstance(source, PromptTaskMixin):
        model.check_prompt_metadata(
            source.prompt_file_metadata(), f"model {source.name!r}"
        )
        state = source.prompt_state()
        if source.backbone.num_prompts > 1:
            count = source.backbone.num_prompts
    elif isinstance(source, dict):
        state = {k: np.asarray(v, "float32") for k, v in source.items()}
    elif hasattr(source, "shape"):
        state = {"prompt": np.asarray(source, "float32")}
    else:
        raise TypeError(
            "`source` must be a prompt file path, a keras_prompt task "
            "model, a prompt array or a dict of arrays. Received: "
            f"source={type(source).__name__}"
        )
    if count is not None:
        state = naming.pick(state, count, source_task, source)
    return _checked_state(model, state, source)


def _read_file(model, path, source_task):
    """`(state, count, index)` of a prompt file, through the task's
    validated reader (backbone, task class, settings, tensors)."""
    state, metadata = model.read_prompt_file(path)
    count = metadata["num_prompts"] if metadata["num_prompts"] > 1 else None
    names = metadata.get("task_names") or []
    if count is not None and isinstance(source_task, str):
        if source_task not in names:
            raise ValueError(
                f"The prompt file {path!r} has no task {source_task!r}. "
                f"Its tasks: {names}"
            )
        source_task = names.index(source_task)
    lengths = metadata.get("prompt_lengths")
    if lengths:
        # A bank file: prompts right-aligned to its `prompt_length`.
        index = source_task if count is not None else 0
        if isinstance(index, int) and 0 <= index < len(lengths):
            start = metadata["prompt_length"] - lengths[index]
            state = dict(state)
            state["prompt"] = state["prompt"][..., start:, :]
    return state, count, source_task


def _checked_state(model, state, source):
    prompt = state.get("prompt")
    expected = model.backbone.task_prompt_shape()
    if (
        prompt is None
        or prompt.ndim != len(expected)
        or prompt.shape[:-2] != expected[:-2]
        or prompt.shape[-1] != expected[-1]
    ):
        shape = None if prompt is None else prompt.shape
        wanted = expected[:-2] + ("length", expected[-1])
        raise ValueError(
            f"A task's prompt must have shape ({', '.join(map(str, wanted))})"
            f". Received shape {shape} from source={naming.describe(source)}"
        )
    model.check_state_names(state, naming.describe(source))
    shared = ", ".join(
        f"`{key}`"
        for key, value in model.task_config().items()
        if isinstance(value, int) and not isinstance(value, bool)
    )
    for key, variable in model.head_variables().items():
        expected = tuple(variable.shape[1:])
        if tuple(np.shape(state[key])) != expected:
            raise ValueError(
                f"The head {key!r} of {naming.describe(source)} has shape "
                f"{np.shape(state[key])}, but this bank's heads have "
                f"shape {expected} ({model.settings_description()})"
                f"; all tasks of a bank share {shared}."
            )
    for key, value in state.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"The tensor {key!r} of {naming.describe(source)} holds "
                "non-finite values (NaN or Inf); a diverged prompt is "
                "never served."
            )
    return state
