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

Prompts of different lengths: T5 banks hold them right-aligned (the
shorter prompt sits just before the input) and mask the unused leading
positions in the encoder's self-attention and the decoder's
cross-attention. T5's relative position buckets only see distances, so
this is exactly the shorter prompt alone. Banks of the other families need
one length: absolute positions (GPT-2, BERT, RoBERTa, DistilBERT) move when
a prompt is padded, and a decoder-only generation cache attends to every
cached position after the prefill pass, so a masked position would be seen
again. Adding a prompt of another length to such a bank is a `ValueError`
saying so.
"""

import os

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_prompt import initializers as prompt_initializers
from keras_prompt import prompt_files
from keras_prompt.adapters.t5 import T5Adapter
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.frozen_backbone import _prompt_dtype_policy
from keras_prompt.layers.prompt_embedding import PromptEmbedding
from keras_prompt.tasks.prompt_task import PromptTaskMixin

# The adapter kinds a bank serves and the text key of each kind's inputs.
KINDS = ("seq2seq", "causal", "encoder")
HEAD_KEYS = ("head/kernel", "head/bias")


# -- the T5 bank with per-prompt lengths --------------------------------------
@keras.saving.register_keras_serializable(package="keras_prompt")
class _LengthMaskedPromptEmbedding(PromptEmbedding):
    """A prompt bank whose prompts may be shorter than `length`.

    Holds a non-trainable `prompt_mask` `(num_prompts, length)`: ones at
    the positions a prompt uses, zeros at the leading positions it leaves
    free. `extend_mask(mask, prompt_ids)` prepends each example's row of it
    instead of ones.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.prompt_mask = self.add_weight(
            name="prompt_mask",
            shape=self.prompt_shape,
            initializer="ones",
            trainable=False,
        )

    def extend_mask(self, mask, prompt_ids=None):
        if mask is None or prompt_ids is None:
            return super().extend_mask(mask)
        prompt_ids = ops.reshape(ops.cast(prompt_ids, "int32"), (-1,))
        prompt_mask = ops.take(self.prompt_mask, prompt_ids, axis=0)
        prompt_mask = ops.cast(prompt_mask, mask.dtype)
        return ops.concatenate([prompt_mask, mask], axis=1)


class _BoundPrompt:
    """The prompt layer with the batch's `prompt_ids` bound to its mask.

    Adapters call `prompt(x, prompt_ids=...)` and then
    `prompt.extend_mask(mask)`; this proxy hands the ids to the second
    call. Everything else is the layer's.
    """

    def __init__(self, layer, prompt_ids):
        self._layer = layer
        self._prompt_ids = prompt_ids

    def __call__(self, inputs, prompt_ids=None):
        return self._layer(inputs, prompt_ids=prompt_ids)

    def extend_mask(self, mask):
        return self._layer.extend_mask(mask, self._prompt_ids)

    def __getattr__(self, name):
        return getattr(self._layer, name)


class _LengthMaskedT5Adapter(T5Adapter):
    """The T5 adapter, masking the free positions of shorter prompts."""

    def encode(self, token_ids, padding_mask, prompt, prompt_ids=None):
        if prompt_ids is not None and isinstance(
            prompt, _LengthMaskedPromptEmbedding
        ):
            prompt = _BoundPrompt(prompt, prompt_ids)
        return super().encode(token_ids, padding_mask, prompt, prompt_ids)


@keras.saving.register_keras_serializable(package="keras_prompt")
class _LengthMaskedBackbone(FrozenBackbone):
    """A `FrozenBackbone` bank around a T5 whose prompts may differ in length.

    Built like `FrozenBackbone` (same inputs, outputs and attributes), with
    `_LengthMaskedPromptEmbedding` as its prompt layer and an adapter that
    masks each prompt's free positions.
    """

    def __init__(
        self,
        backbone,
        prompt_length,
        initializer="zeros",
        num_prompts=2,
        **kwargs,
    ):
        if not isinstance(backbone, keras_hub.models.T5Backbone):
            raise TypeError(
                "Prompts of different lengths share a bank only on a T5 "
                f"backbone. Received: backbone={type(backbone).__name__}"
            )
        if num_prompts < 2:
            raise ValueError(
                f"A bank holds at least 2 prompts. Received: "
                f"num_prompts={num_prompts}"
            )
        adapter = _LengthMaskedT5Adapter(backbone)
        initializer = prompt_initializers.get(initializer)
        backbone.trainable = False
        prompt = _LengthMaskedPromptEmbedding(
            prompt_length,
            initializer=initializer,
            num_prompts=num_prompts,
            dtype=_prompt_dtype_policy(backbone.dtype_policy),
            name="prompt_embedding",
        )
        inputs = adapter.inputs()
        prompt_ids = keras.Input(shape=(), dtype="int32", name="prompt_ids")
        inputs["prompt_ids"] = prompt_ids
        outputs = adapter.forward(inputs, prompt, prompt_ids)
        kwargs.setdefault("dtype", backbone.dtype_policy)
        kwargs.setdefault("name", "prompt_bank_backbone")
        # `FrozenBackbone.__init__` builds the graph with the plain layer and
        # adapter; this builds the same graph with the masked ones.
        super(FrozenBackbone, self).__init__(
            inputs=inputs, outputs=outputs, **kwargs
        )
        self.backbone = backbone
        self.adapter = adapter
        self.prompt_embedding = prompt
        self.prompt_length = prompt_length
        self.num_prompts = num_prompts
        self.initializer = initializer
        self.token_embedding = backbone.token_embedding


# -- helpers ------------------------------------------------------------------
def _as_names(tasks):
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


def _as_texts(inputs):
    if isinstance(inputs, (str, bytes)):
        return [inputs]
    return inputs


def _to_python_strings(values):
    if hasattr(values, "numpy"):
        values = values.numpy()
    if isinstance(values, (str, bytes)):
        values = [values]
    return [
        v.decode("utf-8") if isinstance(v, bytes) else str(v)
        for v in np.asarray(values, dtype=object).reshape(-1)
    ]


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError(f"A task name must be a str. Received: name={name!r}")
    if not name or name != name.strip() or any(c in name for c in "\t\n\r"):
        raise ValueError(
            "A task name must be a non-empty string without surrounding "
            f"spaces, tabs or newlines. Received: name={name!r}"
        )


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
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(
                f"`capacity` must be an int. Received: capacity={capacity!r}"
            )
        if capacity < 2:
            raise ValueError(
                f"`capacity` must be at least 2. Received: capacity={capacity}"
            )
        if prompt_length is None:
            prompt_length = backbone.prompt_length
        if isinstance(prompt_length, bool) or not isinstance(
            prompt_length, int
        ):
            raise TypeError(
                "`prompt_length` must be an int. Received: "
                f"prompt_length={prompt_length!r}"
            )
        if prompt_length < 1:
            raise ValueError(
                "`prompt_length` must be at least 1. Received: "
                f"prompt_length={prompt_length}"
            )
        self.kind = backbone.adapter.kind
        if self.kind not in KINDS:
            raise ValueError(
                f"A PromptBank serves {KINDS} task models. Received a "
                f"{self.kind} model: {type(model).__name__}"
            )
        self.task_class = type(model)
        self.preprocessor = model.preprocessor
        self._template = model
        self._frozen = backbone.backbone
        self._slots = {}
        self._lengths = {}
        self._compile_kwargs = None
        self.rebuild_count = 0
        self.model = self._build_model(prompt_length, capacity)

    # -- the bank model -------------------------------------------------------
    def _build_model(self, prompt_length, capacity):
        if self.kind == "seq2seq":
            backbone = _LengthMaskedBackbone(
                self._frozen,
                prompt_length=prompt_length,
                num_prompts=capacity,
            )
        else:
            backbone = FrozenBackbone(
                self._frozen,
                prompt_length=prompt_length,
                initializer="zeros",
                num_prompts=capacity,
            )
        template = self._template
        if self.kind == "encoder":
            model = self.task_class(
                backbone,
                num_classes=template.num_classes,
                preprocessor=self.preprocessor,
                activation=template.activation,
                dropout=template.dropout,
                pooling=template.pooling,
            )
        else:
            model = self.task_class(backbone, preprocessor=self.preprocessor)
        if self._compile_kwargs is not None:
            model.compile(**_rebuilt_compile_kwargs(self._compile_kwargs))
        elif getattr(template, "sampler", None) is not None:
            # The template's decoding: its sampler, and XLA generation
            # unless it was compiled with `jit_compile=False`.
            model.compile(
                sampler=template.sampler,
                jit_compile=getattr(template, "_generate_jit_compile", "auto"),
            )
        if self.kind == "seq2seq":
            # Free slots are fully masked.
            backbone.prompt_embedding.prompt_mask.assign(
                np.zeros((capacity, prompt_length), "float32")
            )
        return model

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
        """The variables holding the tasks: `{name: variable}`.

        `"prompt"` `(capacity, prompt_length, dim)`, for T5 `"prompt_mask"`
        `(capacity, prompt_length)`, for a classifier `"head/kernel"`
        `(capacity, dim, num_classes)` and `"head/bias"`. Export writes
        these next to the frozen graph so that updating tasks never
        re-exports the backbone.
        """
        model = model or self.model
        prompt = model.backbone.prompt_embedding
        variables = {"prompt": prompt.embeddings}
        if self.kind == "seq2seq":
            variables["prompt_mask"] = prompt.prompt_mask
        if self.kind == "encoder":
            variables["head/kernel"] = model.head.kernel
            variables["head/bias"] = model.head.bias
        return variables

    def _values(self, model=None):
        return {
            key: np.array(ops.convert_to_numpy(variable), dtype="float32")
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
    def task_state(self, name):
        """The arrays of task `name`: `{"prompt": (length, dim)}` (its own
        length), plus `"head/kernel"` and `"head/bias"` for a classifier."""
        self._check_known([name])
        slot, length = self._slots[name], self._lengths[name]
        values = self._values()
        state = {
            "prompt": values["prompt"][slot, self.prompt_length - length :]
        }
        for key in HEAD_KEYS:
            if key in values:
                state[key] = values[key][slot]
        return state

    def prompt(self, name):
        """The prompt of task `name`, `(length, dim)`."""
        return self.task_state(name)["prompt"]

    def _put(self, values, slot, state, prompt_length):
        prompt = state["prompt"]
        length = prompt.shape[0]
        values["prompt"][slot] = 0.0
        values["prompt"][slot, prompt_length - length :] = prompt
        if "prompt_mask" in values:
            values["prompt_mask"][slot] = 0.0
            values["prompt_mask"][slot, prompt_length - length :] = 1.0
        for key in HEAD_KEYS:
            if key in values:
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
        _check_name(name)
        if name in self._slots:
            raise ValueError(
                f"The bank already has a task {name!r}; use `replace_task` "
                f"to change it. Known tasks: {self.task_names}"
            )
        state = self._read_source(source, source_task)
        self._make_room(state, new_task=True)
        used = set(self._slots.values())
        slot = next(i for i in range(self.capacity) if i not in used)
        self._write(slot, state)
        self._slots[name] = slot
        self._lengths[name] = state["prompt"].shape[0]
        return slot

    def replace_task(self, name, source, source_task=None):
        """Replaces the prompt (and head) of task `name`, keeping its slot;
        the other tasks are untouched. Arguments as `add_task`."""
        self._check_known([name])
        state = self._read_source(source, source_task)
        self._make_room(state, new_task=False)
        slot = self._slots[name]
        self._write(slot, state)
        self._lengths[name] = state["prompt"].shape[0]
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
        or `save_prompts(path, task_names=...)`); returns their names."""
        _, metadata = prompt_files.read_prompt_file(path)
        names = metadata.get("task_names")
        if not names:
            raise ValueError(
                f"The prompt file {path!r} names no tasks; add its prompts "
                "one by one with `add_task(name, path, source_task=index)`."
            )
        for name in names:
            _check_name(name)
            if name in self._slots:
                raise ValueError(
                    f"The bank already has a task {name!r} (from {path!r})."
                    f" Known tasks: {self.task_names}"
                )
        for index, name in enumerate(names):
            self.add_task(name, path, source_task=index)
        return list(names)

    def _make_room(self, state, new_task):
        length = state["prompt"].shape[0]
        prompt_length = self.prompt_length
        if length != prompt_length and self.kind != "seq2seq":
            raise ValueError(
                f"The prompt has length {length} but this "
                f"{self.task_class.__name__} bank holds prompts of length "
                f"{prompt_length}. Only T5 banks mix prompt lengths: "
                "absolute positions (GPT-2, BERT, RoBERTa, DistilBERT) shift "
                "when a prompt is padded, and a decoder-only generation "
                "cache attends to every cached position, so padding would "
                "change the outputs. Build a bank per prompt length."
            )
        capacity = self.capacity
        if new_task and self.num_tasks >= capacity:
            capacity = 2 * capacity
        if length > prompt_length or capacity > self.capacity:
            self._rebuild(capacity, max(length, prompt_length))

    def _check_known(self, names):
        unknown = [n for n in dict.fromkeys(names) if n not in self._slots]
        if unknown:
            raise ValueError(
                f"Unknown task name(s) {unknown}. Known tasks: "
                f"{self.task_names}"
            )

    def task_ids(self, tasks):
        """The slot ids (`int32`, one per example) of task names."""
        names = _as_names(tasks)
        self._check_known(names)
        return np.asarray([self._slots[n] for n in names], dtype="int32")

    # -- sources --------------------------------------------------------------
    def _read_source(self, source, source_task):
        if isinstance(source, (str, os.PathLike)):
            state, count = self._read_file(os.fspath(source), source_task)
        elif isinstance(source, PromptTaskMixin):
            state, count = self._read_model(source, source_task)
        elif isinstance(source, dict):
            state = {k: np.asarray(v, "float32") for k, v in source.items()}
            count = None
        elif hasattr(source, "shape"):
            state = {"prompt": np.asarray(source, "float32")}
            count = None
        else:
            raise TypeError(
                "`source` must be a prompt file path, a keras_prompt task "
                "model, a prompt array or a dict of arrays. Received: "
                f"source={type(source).__name__}"
            )
        if count is not None:
            state = _pick(state, count, source_task, source)
        return self._checked_state(state, source)

    def _read_file(self, path, source_task):
        tensors, metadata = prompt_files.read_prompt_file(path)
        prompt_files.check_same_backbone(
            metadata, self.model.backbone.prompt_metadata(), path
        )
        found = metadata.get("task_class")
        expected = self.task_class.__name__
        if found is not None and found != expected:
            raise ValueError(
                f"The prompt file {path!r} was saved by a {found}, but this "
                f"bank serves a {expected}."
            )
        if "prompt" not in tensors:
            raise ValueError(f"The prompt file {path!r} holds no prompt.")
        self._check_pooling(metadata.get("pooling", "cls"), path)
        state = {"prompt": tensors["prompt"]}
        for name, value in tensors.items():
            if name.startswith("extra/"):
                state[name[len("extra/") :]] = value
        if state["prompt"].ndim != 3:
            return state, None
        names = metadata.get("task_names") or []
        if isinstance(source_task, str):
            if source_task not in names:
                raise ValueError(
                    f"The prompt file {path!r} has no task {source_task!r}. "
                    f"Its tasks: {names}"
                )
            source_task = names.index(source_task)
        state = _pick(state, state["prompt"].shape[0], source_task, path)
        lengths = metadata.get("prompt_lengths")
        if lengths:
            prompt = state["prompt"]
            state["prompt"] = prompt[prompt.shape[0] - lengths[source_task] :]
        return state, None

    def _read_model(self, model, source_task):
        backbone = model.backbone
        prompt_files.check_same_backbone(
            backbone.prompt_metadata(),
            self.model.backbone.prompt_metadata(),
            f"model {model.name!r}",
        )
        if not isinstance(model, self.task_class):
            raise ValueError(
                f"`source` is a {type(model).__name__}, but this bank serves "
                f"a {self.task_class.__name__}."
            )
        self._check_pooling(getattr(model, "pooling", "cls"), model.name)
        state = {"prompt": backbone.prompt_values()}
        state.update(model.extra_prompt_tensors())
        count = backbone.num_prompts if backbone.num_prompts > 1 else None
        return state, count

    def _checked_state(self, state, source):
        prompt = state.get("prompt")
        dim = self._values()["prompt"].shape[-1]
        if prompt is None or prompt.ndim != 2 or prompt.shape[-1] != dim:
            shape = None if prompt is None else prompt.shape
            raise ValueError(
                f"A task's prompt must have shape (length, {dim}). Received "
                f"shape {shape} from source={_describe(source)}"
            )
        heads = [key for key in HEAD_KEYS if key in state]
        extra = sorted(set(state) - {"prompt"} - set(HEAD_KEYS))
        if extra:
            raise ValueError(
                f"The source {_describe(source)} holds tensors {extra} that "
                f"a {self.task_class.__name__} bank does not use."
            )
        if self.kind != "encoder":
            if heads:
                raise ValueError(
                    f"The source {_describe(source)} holds a classification "
                    f"head, but this bank serves a {self.task_class.__name__}."
                )
            return state
        if len(heads) != 2:
            missing = sorted(set(HEAD_KEYS) - set(heads))
            raise ValueError(
                "A classifier task needs its head: the source "
                f"{_describe(source)} lacks {missing}"
            )
        values = self._values()
        for key in HEAD_KEYS:
            expected = values[key].shape[1:]
            if state[key].shape != expected:
                raise ValueError(
                    f"The head {key!r} of {_describe(source)} has shape "
                    f"{state[key].shape}, but this bank's heads have shape "
                    f"{expected} (num_classes={self.model.num_classes}); all "
                    "tasks of a classifier bank share `num_classes`."
                )
        return state

    def _check_pooling(self, pooling, source):
        """A classifier head only fits the pooling it was trained with."""
        if self.kind != "encoder" or pooling == self.model.pooling:
            return
        raise ValueError(
            f"The task from {source!r} was trained with pooling={pooling!r}, "
            f"but this bank's classifiers use pooling={self.model.pooling!r}."
        )

    # -- saving ---------------------------------------------------------------
    def _file_metadata(self, names, prompt_length, lengths):
        metadata = self.model.backbone.prompt_metadata(names)
        metadata.update(
            prompt_length=prompt_length,
            num_prompts=len(names),
            task_class=self.task_class.__name__,
        )
        metadata.update(self.model.prompt_file_info())
        if lengths is not None:
            metadata["prompt_lengths"] = lengths
        return metadata

    def save_task(self, name, path):
        """Writes task `name` as a single-prompt file (its own length) that
        the task's standalone model loads with `load_prompts`."""
        state = self.task_state(name)
        metadata = self._file_metadata(
            [name], state["prompt"].shape[0], lengths=None
        )
        metadata["num_prompts"] = 1
        tensors = {"prompt": state["prompt"]}
        tensors.update(
            {f"extra/{k}": state[k] for k in HEAD_KEYS if k in state}
        )
        prompt_files.write_prompt_file(path, tensors, metadata)

    def save(self, path):
        """Writes all tasks to one prompt file (prompts right-aligned to the
        bank's length, their lengths in the metadata); `add_tasks(path)`
        restores them into any bank on the same backbone."""
        names = self.task_names
        if not names:
            raise ValueError("The bank holds no tasks to save.")
        slots = [self._slots[n] for n in names]
        values = self._values()
        tensors = {"prompt": values["prompt"][slots]}
        for key in HEAD_KEYS:
            if key in values:
                tensors[f"extra/{key}"] = values[key][slots]
        lengths = [self._lengths[n] for n in names]
        metadata = self._file_metadata(names, self.prompt_length, lengths)
        prompt_files.write_prompt_file(path, tensors, metadata)

    # -- data -----------------------------------------------------------------
    def _text_key(self):
        return {"seq2seq": "encoder_text", "causal": "prompts"}.get(
            self.kind, "text"
        )

    def task_table(self):
        """A `tf.lookup.StaticHashTable` `task name -> slot id` (default -1)
        of the current tasks, for `tf.data` pipelines and exported graphs."""
        import tensorflow as tf

        names = self.task_names or [""]
        slots = [self._slots.get(n, -1) for n in names]
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(names, tf.string),
                tf.constant(slots, tf.int32),
            ),
            default_value=-1,
        )

    def with_task_ids(self, data):
        """Replaces the `"task"` feature (names) by `"prompt_ids"`.

        `data` is a dict of features or a `tf.data.Dataset` whose elements
        are such a dict or an `(x, y)` / `(x, y, sample_weight)` tuple with
        such a dict `x`. An unknown name is a `ValueError` for in-memory
        data and an `InvalidArgumentError` naming the known tasks when the
        dataset is iterated.
        """
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            table = self.task_table()
            known = ", ".join(self.task_names)

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
                x = _replace_task_key(element[0], lookup)
                return (x,) + tuple(element[1:]) if len(element) > 1 else x

            return data.map(convert)
        if not isinstance(data, dict) or "task" not in data:
            raise ValueError(
                "Inputs must be a dict with a 'task' feature (task names) or "
                "a tf.data.Dataset of such dicts. Received: "
                f"{type(data).__name__}"
                + (
                    f" with keys {sorted(data)}"
                    if isinstance(data, dict)
                    else ""
                )
            )
        return _replace_task_key(data, self.task_ids)

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
        ids = self.task_ids(tasks)
        texts = _as_texts(x)
        if len(ids) != len(texts):
            raise ValueError(
                f"`tasks` must name one task per input ({len(texts)} inputs)."
                f" Received {len(ids)} task names."
            )
        if self.kind == "seq2seq" and y is not None:
            return {
                "encoder_text": texts,
                "decoder_text": y,
                "prompt_ids": ids,
            }, None
        return {self._text_key(): texts, "prompt_ids": ids}, y

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

    def predict(self, inputs, tasks, **kwargs):
        """Classifier outputs `(N, num_classes)` for inputs of mixed tasks."""
        if self.kind != "encoder":
            raise ValueError(
                "`predict` serves classifier banks; use `generate` for a "
                f"{self.task_class.__name__} bank."
            )
        x, _ = self._inputs(inputs, None, tasks)
        return self.model.predict(x, verbose=kwargs.pop("verbose", 0), **kwargs)

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
        if self.kind == "encoder":
            raise ValueError(
                "`generate` serves seq2seq and causal banks; use `predict` "
                "for a classifier bank."
            )
        texts = _as_texts(inputs)
        ids = self.task_ids(tasks)
        if len(ids) != len(texts):
            raise ValueError(
                f"`tasks` must name one task per input ({len(texts)} inputs)."
                f" Received {len(ids)} task names."
            )
        if self.preprocessor is None:
            raise ValueError("`generate` needs the model's preprocessor.")
        if self.kind == "causal":
            outputs = self.model.generate(
                {"prompts": texts, "prompt_ids": ids},
                max_length=max_length,
                stop_token_ids=stop_token_ids,
            )
            return _to_python_strings(outputs)
        preprocessor = self.preprocessor
        if stop_token_ids == "auto":
            stop_token_ids = [preprocessor.tokenizer.end_token_id]
        x = preprocessor.generate_preprocess(texts, sequence_length=max_length)
        x = dict(x, prompt_ids=ops.convert_to_tensor(ids))
        outputs = self.model.make_generate_function()(
            x, stop_token_ids=stop_token_ids
        )
        return _to_python_strings(preprocessor.generate_postprocess(outputs))


def _pick(state, count, index, source):
    """Selects prompt `index` of a bank-shaped state."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ValueError(
            f"The source {_describe(source)} holds {count} prompts; pass "
            "`source_task` (a task name or an index) to pick one. Received: "
            f"source_task={index!r}"
        )
    if not 0 <= index < count:
        raise ValueError(
            f"`source_task` must be in [0, {count}) for "
            f"{_describe(source)}. Received: source_task={index}"
        )
    return {key: np.asarray(value)[index] for key, value in state.items()}


def _describe(source):
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if hasattr(source, "name"):
        return f"model {source.name!r}"
    return type(source).__name__


def _replace_task_key(x, lookup):
    if not isinstance(x, dict) or "task" not in x:
        raise ValueError(
            "Each example needs a 'task' feature naming its task. Received "
            f"features: {sorted(x) if isinstance(x, dict) else type(x)}"
        )
    x = dict(x)
    x["prompt_ids"] = lookup(x.pop("task"))
    return x
