"""Task names in data: the `name -> slot` table of a bank, and the
helpers that turn names into prompt ids (in memory and in `tf.data`)."""

import os

import numpy as np


def as_names(tasks):
    """Task names as a list of Python strings."""
    if isinstance(tasks, (str, bytes)):
        tasks = [tasks]
    if hasattr(tasks, "numpy"):
        tasks = tasks.numpy()
    names = []
    for name in np.asarray(tasks, dtype=object).reshape(-1):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        names.append(name)
    return names


def as_texts(inputs):
    if isinstance(inputs, (str, bytes)):
        return [inputs]
    return inputs


def to_python_strings(values):
    if hasattr(values, "numpy"):
        values = values.numpy()
    if isinstance(values, (str, bytes)):
        values = [values]
    return [
        v.decode("utf-8") if isinstance(v, bytes) else str(v)
        for v in np.asarray(values, dtype=object).reshape(-1)
    ]


def check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"A task name must be a str. Received: name={name!r}")
    if not name or name != name.strip() or any(c in name for c in "\t\n\r"):
        raise ValueError(
            "A task name must be a non-empty string without surrounding "
            f"spaces, tabs or newlines. Received: name={name!r}"
        )


def pick(state, count, index, source):
    """Selects prompt `index` of a bank-shaped state."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(
            f"The source {describe(source)} holds {count} prompts; pass "
            "`source_task` (a task name or an index) to pick one. Received: "
            f"source_task={index!r}"
        )
    if not 0 <= index < count:
        raise ValueError(
            f"`source_task` must be in [0, {count}) for "
            f"{describe(source)}. Received: source_task={index}"
        )
    return {key: np.asarray(value)[index] for key, value in state.items()}


def describe(source):
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if hasattr(source, "name"):
        return f"model {source.name!r}"
    return type(source).__name__


def replace_task_key(x, lookup):
    if not isinstance(x, dict) or "task" not in x:
        raise ValueError(
            "Each example needs a 'task' feature naming its task. Received "
            f"features: {sorted(x) if isinstance(x, dict) else type(x)}"
        )
    x = dict(x)
    x["prompt_ids"] = lookup(x.pop("task"))
    return x


def task_table(slots):
    """A `tf.lookup.StaticHashTable` `name -> slot` (default -1)."""
    import tensorflow as tf

    names = list(slots) or [""]
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names, tf.string),
            tf.constant([slots.get(n, -1) for n in names], tf.int32),
        ),
        default_value=-1,
    )


def with_task_ids(data, slots, task_ids):
    """`data` (a features dict or a `tf.data.Dataset`) with its `"task"`
    feature replaced by `"prompt_ids"`; `task_ids` converts names in
    memory, a table of `slots` in a dataset."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        table = task_table(slots)
        known = ", ".join(slots)

        def lookup(names):
            ids = table.lookup(names)
            check = tf.debugging.Assert(
                tf.reduce_all(ids >= 0),
                [
                    "Unknown task name(s):",
                    tf.boolean_mask(names, ids < 0),
                    f"Known tasks: {known}",
                ],
            )
            with tf.control_dependencies([check]):
                return tf.identity(ids)

        def convert(*element):
            x = replace_task_key(element[0], lookup)
            return (x,) + tuple(element[1:]) if len(element) > 1 else x

        return data.map(convert)
    if not isinstance(data, dict) or "task" not in data:
        keys = f" with keys {sorted(data)}" if isinstance(data, dict) else ""
        raise ValueError(
            "Inputs must be a dict with a 'task' feature (task names) or "
            "a tf.data.Dataset of such dicts. Received: "
            f"{type(data).__name__}{keys}"
        )
    return replace_task_key(data, task_ids)
