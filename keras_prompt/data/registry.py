"""Name -> `TextToTextTask` registry of the built-in GLUE/SuperGLUE tasks."""

from keras_prompt.data.glue import GLUE_TASKS
from keras_prompt.data.superglue import SUPERGLUE_TASKS
from keras_prompt.data.task import TextToTextTask

_REGISTRY = {}


def register_task(task, overwrite=False):
    """Adds a `TextToTextTask` to the registry under `task.name`.

    Args:
        task: `TextToTextTask`.
        overwrite: bool. Whether to replace a task of the same name.

    Returns:
        The registered task.

    Example:

    ```python
    import dataclasses

    from keras_prompt.data import get_task
    from keras_prompt.data import register_task

    sst2 = get_task("glue/sst2")
    register_task(dataclasses.replace(sst2, name="my/sst2"), overwrite=True)
    assert get_task("my/sst2").tfds_name == "glue/sst2"
    ```
    """
    if not isinstance(task, TextToTextTask):
        raise TypeError(
            f"register_task expects a TextToTextTask, got {type(task)}."
        )
    if task.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"A task named {task.name!r} is already registered; pass "
            "overwrite=True to replace it."
        )
    _REGISTRY[task.name] = task
    return task


def list_tasks():
    """Returns the sorted names of all registered tasks.

    Example:

    ```python
    from keras_prompt.data import list_tasks

    assert "super_glue/boolq" in list_tasks()
    ```
    """
    return sorted(_REGISTRY)


def get_task(name):
    """Returns the registered `TextToTextTask` called `name`.

    Args:
        name: str, e.g. `"glue/sst2"` or `"super_glue/wsc"`. A
            `TextToTextTask` is returned unchanged.

    Returns:
        The `TextToTextTask`.

    Raises:
        ValueError: if no task of that name is registered; the message lists
            the known names.

    Example:

    ```python
    from keras_prompt.data import get_task

    task = get_task("super_glue/cb")
    assert task.label_strings == ("entailment", "contradiction", "neutral")
    assert task.metric_names == ("accuracy", "macro_f1")
    ```
    """
    if isinstance(name, TextToTextTask):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown task {name!r}. Known tasks: {', '.join(list_tasks())}."
        ) from None


for _task in GLUE_TASKS + SUPERGLUE_TASKS:
    register_task(_task)
del _task
