"""One frozen model, many named tasks: a bank of separately trained prompts.

`PromptBank` combines prompts trained one task at a time (prompt files,
trained task models or arrays) into one task model whose prompt variable
holds a bank `(capacity, prompt_length, dim)`. All tasks share the frozen
backbone; each example of a batch names its task and gets exactly what its
task alone would give.

How the bank avoids re-tracing: the bank variable is pre-allocated with
`capacity` slots. Adding, replacing or removing a task writes values into
the existing variables (`assign`), so compiled functions (`generate`,
`predict`, a `fit` step) keep their traces. Only when the bank is full (or,
for T5, when a longer prompt arrives) is a new task model built with twice
the slots; that one change re-traces. Slot ids of existing tasks never
change.

Prompts of different lengths share a bank only where the family's adapter
`supports_mixed_prompt_lengths` (T5: right-aligned, the free leading
positions masked; see `keras_prompt.adapters`); elsewhere a prompt of
another length is a `ValueError` saying why.
"""

import keras
import numpy as np

from keras_prompt import prompt_files
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.serving import naming
from keras_prompt.serving.task_sources import read_task_state
from keras_prompt.tasks.prompt_task import PromptTaskMixin
from keras_prompt.validation import check_int


def _rebuilt_compile_kwargs(kwargs):
    """`compile` arguments for a new model: optimizers are per model."""
    kwargs = dict(kwargs)
    optimizer = kwargs.get("optimizer")
    if isinstance(optimizer, keras.optimizers.Optimizer):
        kwargs["optimizer"] = optimizer.__class__.from_config(
            optimizer.get_config()
        )
    return kwargs


class PromptBank:
    """Named tasks sharing one frozen model, mixed freely in a batch.

    Builds, from a prompt-tuned task model (`PromptSeq2SeqLM`,
    `PromptCausalLM` or `PromptClassifier`), a task model of the same class
    on the same frozen keras-hub backbone whose prompt is a bank of
    `capacity` slots, and keeps a table `task name -> slot`. Prompts trained
    separately join the bank by name (`add_task(name, "x.prompt.safetensors")`);
    one task is replaced or removed without touching the others. Inputs name
    their task per example (`tasks=[...]`, or a `"task"` feature in a dict
    or a `tf.data` dataset); the ids are the bank's business. For a
    classifier every task also has its own head (all with the classifier's
    `num_classes`).

    Adding tasks within `capacity` only writes variables, so nothing is
    re-traced; past it the bank doubles its slots once (a new `bank.model`,
    traced anew). T5 banks take prompts of any length up to
    `prompt_length` (longer ones grow the bank), right-aligned and masked;
    banks of other families take one prompt length (see the module
    docstring for why).

    Args:
        model: a `keras_prompt` task model (`PromptSeq2SeqLM`,
            `PromptCausalLM` or `PromptClassifier`); the bank uses its frozen
            backbone, preprocessor and task settings. Its own prompt is not
            a task of the bank unless added.
        capacity: int >= 2, slots allocated up front. Defaults to `8`.
        prompt_length: int, the bank's prompt length. Defaults to the
            model's.

    Example:

    ```python
    bank = keras_prompt.serving.PromptBank(model, capacity=8)
    bank.add_task("sentiment", "sst2.prompt.safetensors")
    bank.add_task("nli", "rte.prompt.safetensors")
    bank.generate(
        ["a gripping film", "premise: ... hypothesis: ..."],
        tasks=["sentiment", "nli"],
    )
    bank.replace_task("nli", "rte_v2.prompt.safetensors")
    bank.fit(x, y, tasks=names, epochs=3)  # several tasks at once
    ```
    """

    def __init__(self, model, capacity=8, prompt_length=None):
        backbone = getattr(model, "backbone", None)
        if not isinstance(model, PromptTaskMixin) or not isinstance(
            backbone, FrozenBackbone
        ):
            raise TypeError(
                "`model` must be a keras_prompt task model (PromptSeq2SeqLM, "
                "PromptCausalLM or PromptClassifier). Received: "
                f"model={type(model).__name__}"
            )
        capacity = check_int("capacity", capacity, 2)
        if prompt_length is None:
            prompt_length = backbone.prompt_length
        prompt_length = check_int("prompt_length", prompt_length, 1)
        self.task_class = type(model)
        self.preprocessor = model.preprocessor
        self._template = model
        self._frozen = backbone.backbone
        self._adapter = backbone.adapter
        self._slots = {}
        self._lengths = {}
        self._compile_kwargs = None
        self.rebuild_count = 0
        self.model = self._build_model(prompt_length, capacity)

    @classmethod
    def from_preset(cls, preset, prompts, capacity=8, **kwargs):
        """A bank holding the tasks of a prompt file, on a pretrained model.

        The prompt file is read first, before the backbone is loaded: it
        names the task class (`PromptClassifier`, `PromptSeq2SeqLM` or
        `PromptCausalLM`), its settings (`prompt_length`, a classifier's
        `num_classes` and `pooling`) and its tasks. The task model is built
        by that class's `from_preset`, and every named task of the file
        joins the bank (`add_tasks`).

        Args:
            preset: the preset the prompts were trained on, as the task
                class's `from_preset` takes it.
            prompts: a prompt file naming its tasks (`PromptBank.save`,
                `save_prompts(path, task_names=...)`), or a run folder of
                `keras-prompt tune` (whose file names its task).
            capacity: int >= 2, slots allocated up front; at least the
                file's number of tasks. Defaults to `8`.
            **kwargs: passed to the task class's `from_preset` (e.g.
                `sequence_length`); a setting the file determines must
                agree with it. The bank sizes its prompts itself, so
                `num_prompts` and `variable_length` are refused.

        Example:

        ```python
        bank = keras_prompt.serving.PromptBank.from_preset(
            "t5_1.1_small", prompts="tasks.prompt.safetensors"
        )
        bank.add_task("sentiment", "runs/glue/sst2/prompt.safetensors")
        bank.generate(["a gripping film"], tasks=["sentiment"])
        ```
        """
        from keras_prompt.tasks import task_class_of_prompt_file

        capacity = check_int("capacity", capacity, 2)
        for key in ("num_prompts", "variable_length"):
            if key in kwargs:
                raise TypeError(
                    f"`PromptBank.from_preset` sizes the bank itself (see "
                    f"`capacity`); it takes no `{key}`. Received: "
                    f"{key}={kwargs[key]!r}"
                )
        source = prompt_files.read_prompt_source(prompts)
        metadata = source.metadata
        task_class = task_class_of_prompt_file(metadata, source.path)
        names = metadata.get("task_names")
        if not names:
            raise ValueError(
                f"The prompt file path={source.path!r} names no tasks; "
                "build the task model and add its prompts by name with "
                "`PromptBank(model).add_task(name, path, source_task=...)`."
            )
        fixed = task_class.prompt_file_settings(
            metadata, source.tensors, source.path
        )
        del fixed["num_prompts"], fixed["variable_length"]
        fixed["prompt_length"] = max(prompt_files.prompt_lengths(metadata))
        settings = prompt_files.merge_settings(kwargs, fixed, source.path)
        model = task_class.from_preset(preset, **settings)
        bank = cls(model, capacity=max(capacity, len(names)))
        bank.add_tasks(source.path)
        return bank

    # -- the bank model -------------------------------------------------------
    def _build_model(self, prompt_length, capacity):
        config = self._template.backbone.prompt_config.replace(
            length=prompt_length,
            initializer="zeros",
            num_prompts=capacity,
            variable_length=self._adapter.supports_mixed_prompt_lengths,
            deep_initializer="zeros",
            # A bank holds trained (folded) prompts.
            reparameterization=None,
            deep_mode="replace",
        )
        backbone = FrozenBackbone(self._frozen, prompt_config=config)
        template = self._template
        model = template.with_backbone(backbone)
        # Messages about bad `prompt_ids` list the tasks of the slots.
        model.prompt_id_names = self._slot_descriptions
        if self._compile_kwargs is not None:
            model.compile(**_rebuilt_compile_kwargs(self._compile_kwargs))
        elif getattr(template, "sampler", None) is not None:
            # The template's decoding: its sampler, and XLA generation
            # unless it was compiled with `jit_compile=False`.
            model.compile(
                sampler=template.sampler,
                jit_compile=getattr(template, "_generate_jit_compile", "auto"),
            )
        return model

    def _slot_descriptions(self):
        return [f"{name} (id {slot})" for name, slot in self._slots.items()]

    @property
    def capacity(self):
        """Slots allocated in the bank variable."""
        return self.model.backbone.num_prompts

    @property
    def prompt_length(self):
        """The bank's prompt length (the longest prompt it holds)."""
        return self.model.backbone.prompt_length

    @property
    def task_names(self):
        """The names of the tasks, in the order they were added."""
        return list(self._slots)

    @property
    def num_tasks(self):
        return len(self._slots)

    @property
    def slots(self):
        """`{task name: slot id}`: the prompt id each task uses inside."""
        return dict(self._slots)

    def task_prompt_length(self, name):
        """The prompt length of task `name`."""
        self._check_known([name])
        return self._lengths[name]

    def state_variables(self, model=None):
        """The variables holding the tasks: `{name: variable}`, as the task
        model's `state_variables()`: `"prompt"` `(capacity, prompt_length,
        dim)`, a variable-length bank's `"prompt_mask"` `(capacity,
        prompt_length)`, and the task's heads (a classifier's
        `"head/kernel"`, `"head/bias"`), one row per slot. Export writes
        these next to the frozen graph so that updating tasks never
        re-exports the backbone.
        """
        return (model or self.model).state_variables()

    def _values(self, model=None):
        return {
            key: np.array(keras.ops.convert_to_numpy(variable), "float32")
            for key, variable in self.state_variables(model).items()
        }

    def _assign(self, values, model=None):
        for key, variable in self.state_variables(model).items():
            variable.assign(values[key])

    def _rebuild(self, capacity, prompt_length):
        """A new bank model with more slots or longer prompts (re-traces)."""
        states = {name: self.task_state(name) for name in self._slots}
        model = self._build_model(prompt_length, capacity)
        values = self._values(model)
        for name, slot in self._slots.items():
            self._put(values, slot, states[name], prompt_length)
        self._assign(values, model)
        self.model = model
        self.rebuild_count += 1

    # -- tasks ----------------------------------------------------------------
    def _head_keys(self):
        return list(self.model.head_variables())

    def task_state(self, name):
        """The arrays of task `name`: `{"prompt": ([depth,] length, dim)}`
        (its own length), plus the task's heads (`"head/kernel"` and
        `"head/bias"` for a classifier)."""
        self._check_known([name])
        slot, length = self._slots[name], self._lengths[name]
        values = self._values()
        state = {
            "prompt": values["prompt"][
                slot, ..., self.prompt_length - length :, :
            ]
        }
        for key in self._head_keys():
            state[key] = values[key][slot]
        return state

    def prompt(self, name):
        """The prompt of task `name`, `([depth,] length, dim)`."""
        return self.task_state(name)["prompt"]

    def _put(self, values, slot, state, prompt_length):
        prompt = state["prompt"]
        start = prompt_length - prompt.shape[-2]
        values["prompt"][slot] = 0.0
        values["prompt"][slot, ..., start:, :] = prompt
        if "prompt_mask" in values:
            values["prompt_mask"][slot] = 0.0
            values["prompt_mask"][slot, start:] = 1.0
        for key in self._head_keys():
            values[key][slot] = state[key]

    def _write(self, slot, state):
        values = self._values()
        self._put(values, slot, state, self.prompt_length)
        self._assign(values)

    def add_task(self, name, source, source_task=None):
        """Adds a task; returns its slot id.

        Args:
            name: str, the task's name in the data.
            source: a prompt file written by `save_prompts` (or by
                `PromptBank.save`), a trained single-prompt task model on
                the same frozen backbone, a prompt array `(length, dim)`, or
                a dict of arrays as `task_state` returns (a classifier needs
                `"head/kernel"` and `"head/bias"`).
            source_task: for a source holding a bank of prompts, which one:
                its task name (as saved in the file) or its index.
        """
        self._check_new([name], source)
        return self._add(name, read_task_state(self.model, source, source_task))

    def _add(self, name, state):
        self._make_room(state, new_task=True)
        used = set(self._slots.values())
        slot = next(i for i in range(self.capacity) if i not in used)
        self._write(slot, state)
        self._slots[name] = slot
        self._lengths[name] = state["prompt"].shape[-2]
        return slot

    def replace_task(self, name, source, source_task=None):
        """Replaces the prompt (and head) of task `name`, keeping its slot;
        the other tasks are untouched. Arguments as `add_task`."""
        self._check_known([name])
        state = read_task_state(self.model, source, source_task)
        self._make_room(state, new_task=False)
        slot = self._slots[name]
        self._write(slot, state)
        self._lengths[name] = state["prompt"].shape[-2]
        return slot

    def remove_task(self, name):
        """Removes task `name`; its slot is zeroed and reused later."""
        self._check_known([name])
        slot = self._slots.pop(name)
        del self._lengths[name]
        values = self._values()
        for value in values.values():
            value[slot] = 0.0
        self._assign(values)

    def add_tasks(self, path):
        """Adds every named task of a bank prompt file (`PromptBank.save`
        or `save_prompts(path, task_names=...)`); returns their names.

        All or nothing: every task is read and checked before the first is
        added."""
        _, metadata = self.model.read_prompt_file(path)
        names = metadata.get("task_names")
        if not names:
            raise ValueError(
                f"The prompt file {path!r} names no tasks; add its prompts "
                "one by one with `add_task(name, path, source_task=index)`."
            )
        self._check_new(names, path)
        states = [
            read_task_state(self.model, path, i) for i in range(len(names))
        ]
        for name, state in zip(names, states):
            self._add(name, state)
        return list(names)

    def _make_room(self, state, new_task):
        length = state["prompt"].shape[-2]
        prompt_length = self.prompt_length
        self._adapter.check_prompt_length(
            length, prompt_length, self.task_class.__name__
        )
        capacity = self.capacity
        if new_task and self.num_tasks >= capacity:
            capacity = 2 * capacity
        if length > prompt_length or capacity > self.capacity:
            self._rebuild(capacity, max(length, prompt_length))

    def _check_new(self, names, source):
        for name in names:
            naming.check_name(name)
            if name in self._slots:
                raise ValueError(
                    f"The bank already has a task {name!r} (from "
                    f"{naming.describe(source)}); use `replace_task` to "
                    "change it."
                    f" Known tasks: {self.task_names}"
                )

    def _check_known(self, names):
        unknown = [n for n in dict.fromkeys(names) if n not in self._slots]
        if unknown:
            raise ValueError(
                f"Unknown task name(s) {unknown}. Known tasks: "
                f"{self.task_names}"
            )

    def task_ids(self, tasks):
        """The slot ids (`int32`, one per example) of task names."""
        names = naming.as_names(tasks)
        self._check_known(names)
        return np.asarray([self._slots[n] for n in names], dtype="int32")

    # -- saving ---------------------------------------------------------------
    def _file_metadata(self, names, prompt_length, lengths):
        metadata = self.model.prompt_file_metadata(names)
        metadata.update(prompt_length=prompt_length, num_prompts=len(names))
        if lengths is not None:
            metadata["prompt_lengths"] = lengths
        return metadata

    def _write_file(self, path, state, metadata):
        tensors = {
            key if key == "prompt" else f"extra/{key}": value
            for key, value in state.items()
        }
        prompt_files.write_prompt_file(path, tensors, metadata)

    def save_task(self, name, path):
        """Writes task `name` as a single-prompt file (its own length) that
        the task's standalone model loads with `load_prompts`."""
        state = self.task_state(name)
        metadata = self._file_metadata([name], state["prompt"].shape[-2], None)
        self._write_file(path, state, metadata)

    def save(self, path):
        """Writes all tasks to one prompt file (prompts right-aligned to the
        bank's length, their lengths in the metadata); `add_tasks(path)`
        restores them into any bank on the same backbone."""
        names = self.task_names
        if not names:
            raise ValueError("The bank holds no tasks to save.")
        # One task is stored as a single prompt; more as a bank.
        slots = [self._slots[n] for n in names]
        if len(slots) == 1:
            slots = slots[0]
        values = self._values()
        state = {"prompt": values["prompt"][slots]}
        for key in self._head_keys():
            state[key] = values[key][slots]
        lengths = [self._lengths[n] for n in names]
        metadata = self._file_metadata(names, self.prompt_length, lengths)
        self._write_file(path, state, metadata)

    # -- data -----------------------------------------------------------------
    def task_table(self):
        """A `tf.lookup.StaticHashTable` `task name -> slot id` (default -1)
        of the current tasks, for `tf.data` pipelines and exported graphs."""
        return naming.task_table(self._slots)

    def with_task_ids(self, data):
        """Replaces the `"task"` feature (names) by `"prompt_ids"`.

        `data` is a dict of features or a `tf.data.Dataset` whose elements
        are such a dict or an `(x, y)` / `(x, y, sample_weight)` tuple with
        such a dict `x`. An unknown name is a `ValueError` for in-memory
        data and an `InvalidArgumentError` naming the known tasks when the
        dataset is iterated.
        """
        return naming.with_task_ids(data, self._slots, self.task_ids)

    def _inputs(self, x, y, tasks):
        """`(x, y)` for the bank model from raw data and task names."""
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset):
            if tasks is not None or y is not None:
                raise ValueError(
                    "With a tf.data.Dataset, give each element's task as a "
                    "'task' feature, not `tasks=` or `y=`."
                )
            return self.with_task_ids(x), None
        if tasks is None:
            return self.with_task_ids(x), y
        texts, ids = self._texts_and_ids(x, tasks)
        return self.model.prompt_inputs(texts, ids, y)

    # -- Keras ----------------------------------------------------------------
    def compile(self, **kwargs):
        """Compiles `bank.model` (kept when the bank grows)."""
        self._compile_kwargs = dict(kwargs)
        self.model.compile(**kwargs)

    def fit(self, x=None, y=None, tasks=None, **kwargs):
        """Trains the prompts of several tasks at once on mixed data.

        `x`, `y` as the task model takes them, with `tasks` naming each
        example's task; or a dict / `tf.data.Dataset` with a `"task"`
        feature (e.g. `{"encoder_text", "decoder_text", "task"}` for T5,
        `({"text", "task"}, labels)` for a classifier). Every example
        trains the prompt (and head) of its own task. Other arguments go to
        `keras.Model.fit`. The bank's whole prompt variable is the trainable
        one: slots not in the data get zero gradients (only an optimiser's
        weight decay would move them).
        """
        x, y = self._inputs(x, y, tasks)
        return self.model.fit(x, y, **kwargs)

    def evaluate(self, x=None, y=None, tasks=None, **kwargs):
        """`keras.Model.evaluate` on mixed data (arguments as `fit`)."""
        x, y = self._inputs(x, y, tasks)
        return self.model.evaluate(x, y, **kwargs)

    def _texts_and_ids(self, inputs, tasks):
        texts = naming.as_texts(inputs)
        ids = self.task_ids(tasks)
        if len(ids) != len(texts):
            raise ValueError(
                f"`tasks` must name one task per input ({len(texts)} inputs)."
                f" Received {len(ids)} task names."
            )
        return texts, ids

    def predict(self, inputs, tasks, **kwargs):
        """Classifier outputs `(N, num_classes)` for inputs of mixed tasks."""
        if self.model.generates_text:
            raise ValueError(
                "`predict` serves classifier banks; use `generate` for a "
                f"{self.task_class.__name__} bank."
            )
        x, _ = self._inputs(inputs, None, tasks)
        kwargs.setdefault("verbose", 0)
        return self.model.predict(x, **kwargs)

    def generate(self, inputs, tasks, max_length=None, stop_token_ids="auto"):
        """Generated strings for inputs of mixed tasks.

        Args:
            inputs: a list of strings.
            tasks: the task name of each input.
            max_length: as the task model's `generate`.
            stop_token_ids: as the task model's `generate` (`"auto"`: the
                tokenizer's end token; `None`: generate to `max_length`).

        Returns:
            A list of strings; each equals what its task's model alone
            generates for that input.
        """
        if not self.model.generates_text:
            raise ValueError(
                "`generate` serves seq2seq and causal banks; use `predict` "
                "for a classifier bank."
            )
        texts, ids = self._texts_and_ids(inputs, tasks)
        outputs = self.model.infer(
            texts, ids, max_length=max_length, stop_token_ids=stop_token_ids
        )
        return naming.to_python_strings(outputs)
