"""What every prompt-tuned task shares: prompt files and `prompt_ids`."""

import keras
import numpy as np

from keras_prompt import prompt_files
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.layers import frozen_prefix
from keras_prompt.layers.frozen_weights import frozen_weights_unwatched
from keras_prompt.layers.index_checks import check_dtype
from keras_prompt.layers.index_checks import checked_indices
from keras_prompt.layers.index_checks import concrete_value
from keras_prompt.layers.prompt_config import KEYWORD_FIELDS
from keras_prompt.layers.prompt_config import PromptConfig
from keras_prompt.tasks import text_inputs
from keras_prompt.tasks.distributed_steps import first_replica_symbolic_build
from keras_prompt.tasks.distributed_steps import rank_one_logs
from keras_prompt.validation import check_kwargs

#: Keywords a task's `**kwargs` may carry to keras-hub's `Task` / Keras.
TASK_KEYWORDS = ("name", "trainable", "dtype", "compile")
#: Keywords a task's `from_preset` passes to `FrozenBackbone.from_preset`.
PROMPT_KEYWORDS = (
    "prompt_length",
    "initializer",
    "num_prompts",
    "deep",
    "deep_initializer",
    "start_layer",
    "reparameterization",
    "prompt_config",
)


def check_frozen_backbone(owner, backbone, kind, kwargs=None, known=()):
    """Raises unless `backbone` is a `FrozenBackbone` of adapter `kind` and
    every keyword of `kwargs` is one the task takes."""
    check_kwargs(owner, kwargs or {}, TASK_KEYWORDS, known)
    if not isinstance(backbone, FrozenBackbone):
        raise TypeError(
            f"`{owner}` needs a `keras_prompt.FrozenBackbone`. Wrap your "
            "backbone with `FrozenBackbone(backbone, prompt_length=...)` or "
            f"use `{owner}.from_preset(...)`. Received: "
            f"backbone={type(backbone).__name__}"
        )
    if backbone.adapter.kind != kind:
        raise ValueError(
            f"`{owner}` needs a {kind} backbone; "
            f"{type(backbone.backbone).__name__} is a "
            f"{backbone.adapter.kind} backbone. Received: "
            f"backbone={type(backbone.backbone).__name__}"
        )


def plain_prompt_keywords(settings, source):
    """`from_preset` arguments with a `prompt_config` spread into its
    keywords (the fields it sets other than the defaults), for merging
    with what the prompt file at `source` fixes; a reparameterisation is a
    `ValueError` (a file holds folded prompt vectors)."""
    settings = dict(settings)
    config = settings.pop("prompt_config", None)
    if config is not None:
        config = PromptConfig.resolve(config)
        default = PromptConfig()
        for keyword, field in KEYWORD_FIELDS.items():
            value = getattr(config, field)
            if (
                value != getattr(default, field)
                and settings.get(keyword) is None
            ):
                settings[keyword] = value
    if settings.get("reparameterization") is not None:
        raise ValueError(
            f"The prompt file {source!r} holds plain (folded) prompt vectors: "
            "load it without a reparameterization. Received: "
            f"reparameterization={settings['reparameterization']!r}"
        )
    return settings


class PromptTaskMixin(text_inputs.CheckedTextsMixin):
    """The prompt-state protocol every keras_prompt task shares.

    The task is the one owner of its prompt state: its variables
    (`trained_variables`, `state_variables`: the prompt, and a head for
    classifiers), the metadata a prompt file records
    (`prompt_file_metadata`), a validated read of a prompt file that checks
    everything before anything is assigned (`read_prompt_file`,
    `load_prompts`), the input dict for texts + `prompt_ids` + targets
    (`prompt_inputs`) and one entry point for outputs (`infer`: generated
    strings, or class probabilities). Prompt banks, ensembles, export,
    the training recipe and the CLI use only these, so a new task kind is
    one class implementing them. A `"prompt_ids"` feature of the inputs
    passes through preprocessing untouched, so banks mix tasks in a batch.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        # `training` and `mask` are named: Keras passes the training flag
        # (set by `fit`) only to a `call` whose signature names it, and a
        # `*args, **kwargs` signature ran every layer, dropout included, in
        # inference mode during training.
        if isinstance(inputs, dict) and inputs.get("prompt_ids") is not None:
            # Before the functional model casts them to int32. Concrete
            # ids are checked here, where a bank's task names are known;
            # traced ones by the prompt layer, before its gather.
            prompt_ids = inputs["prompt_ids"]
            check_dtype("prompt_ids", prompt_ids)
            if self.backbone.num_prompts > 1 and (
                concrete_value(prompt_ids) is not None
            ):
                self.checked_prompt_ids(prompt_ids)
        # Batches of a frozen-prefix cache carry the hidden states
        # entering the late prompt's layer: the backbone's call takes them.
        inputs, given = frozen_prefix.given_in(inputs, self.backbone)
        # The task reads frozen weights outside the backbone too (T5 and
        # decoder LMs project onto the frozen token embedding): keep all of
        # them out of TensorFlow's gradient tape, as `FrozenBackbone` does.
        with frozen_weights_unwatched(self.variables), given:
            return super().call(inputs, training=training, mask=mask, **kwargs)

    # -- tf.distribute: a plain `fit` works under any strategy -------------
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' TF trainer all-reduces the first distributed batch just
        # to learn its shapes, which fails for keras-hub's boolean padding
        # masks; one replica's batch has the same shapes.
        if getattr(self, "_distribute_strategy", None) is None:
            return super()._maybe_symbolic_build(
                iterator=iterator, data_batch=data_batch
            )
        return first_replica_symbolic_build(self, iterator, data_batch)

    def train_step(self, *args, **kwargs):
        return rank_one_logs(self, super().train_step(*args, **kwargs))

    def test_step(self, *args, **kwargs):
        return rank_one_logs(self, super().test_step(*args, **kwargs))

    @classmethod
    def default_optimizer(cls):
        """A fresh instance of the task's default optimizer
        (`default_optimizer_name`, with `keras_prompt.optimizers`'
        defaults)."""
        from keras_prompt import optimizers

        return optimizers.get(cls.default_optimizer_name)

    def compile(self, optimizer="auto", *args, **kwargs):
        """The keras-hub task's `compile`, with `optimizer="auto"` meaning
        `default_optimizer()` and greedy decoding by default for tasks
        that generate text."""
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = self.default_optimizer()
        if self.generates_text:
            kwargs.setdefault("sampler", "greedy")
        super().compile(optimizer, *args, **kwargs)
        # Create the optimizer's slots now (a few, for the prompt): created
        # inside the first traced train step instead, they make TensorFlow
        # trace the whole step twice, doubling the time to the first step.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        self._generate_jit_compile = kwargs.get("jit_compile", "auto")

    def make_generate_function(self):
        """The compiled generation function: XLA unless `compile` was given
        `jit_compile=False`.

        Keras' `jit_compile="auto"` turns XLA off on CPU, which suits train
        steps (large matmuls, faster without XLA there) but not generation,
        a loop of small cached steps that XLA fuses: on CPU it gives 3.6x
        the tokens/s of a T5-small-shaped model (`docs/performance.md`). On
        accelerators "auto" already means XLA.
        """
        if (
            self.generate_function is None
            and keras.config.backend() == "tensorflow"
            and not self.run_eagerly
            and getattr(self, "_distribute_strategy", None) is None
            and getattr(self, "_generate_jit_compile", "auto") == "auto"
        ):
            import tensorflow as tf

            self.generate_function = tf.function(
                self.generate_step, jit_compile=True
            )
        return super().make_generate_function()

    # == The prompt-state protocol ============================================
    # Everything outside the task classes (banks, ensembles, export, the
    # training path, the CLI) reads, checks, assigns, batches and runs
    # prompts through these methods and never asks which kind of task it
    # holds. A new task kind implements them; a new family is an adapter.

    #: The key of the input texts in the task's dict inputs.
    text_key = "text"
    #: Where targets go: `None` for `y`, else a key of the dict inputs.
    target_key = None
    #: Whether `infer` returns generated strings (else class scores).
    generates_text = True
    #: What an empty head means in messages (tasks with trained extras).
    extras_description = "extra tensors"
    #: Values of `prompt_file_info` keys implied by files that predate them.
    prompt_file_defaults = {}

    def head_variables(self):
        """Trained variables besides the prompt: `{name: variable}` (a
        classifier's head). A bank holds one row of each per prompt."""
        return {}

    def trained_variables(self):
        """What trains and what a prompt file holds: `{"prompt": ...}` and
        the task's `head_variables()`."""
        variables = {"prompt": self.backbone.prompt_embedding.embeddings}
        variables.update(self.head_variables())
        return variables

    def state_variables(self):
        """Every variable holding prompt state (the trained ones, and a
        variable-length bank's `"prompt_mask"`): what banks write and what
        export serves from its asset."""
        variables = self.backbone.prompt_embedding.state_variables()
        variables.update(self.head_variables())
        return variables

    def task_config(self):
        """Constructor arguments besides `backbone` and `preprocessor`."""
        return {}

    def with_backbone(self, backbone):
        """A task of the same class and settings on another
        `FrozenBackbone` (a bank's), sharing the preprocessor."""
        return type(self)(
            backbone, preprocessor=self.preprocessor, **self.task_config()
        )

    def prompt_file_info(self):
        """Task settings a prompt file records and a loader must match
        (JSON-able metadata)."""
        return {}

    def prompt_file_metadata(self, task_names=None):
        """The metadata `save_prompts` writes."""
        metadata = self.backbone.prompt_metadata(task_names)
        metadata["task_class"] = type(self).__name__
        metadata.update(self.prompt_file_info())
        return metadata

    def settings_description(self):
        """The settings that fix the state's shapes, for messages."""
        backbone = self.backbone
        settings = {
            "prompt_length": backbone.prompt_length,
            "num_prompts": backbone.num_prompts,
            "deep": backbone.deep,
        }
        settings.update(
            {
                key: value
                for key, value in self.task_config().items()
                if isinstance(value, int) and not isinstance(value, bool)
            }
        )
        return ", ".join(f"{k}={v}" for k, v in settings.items())

    def check_prompt_metadata(self, metadata, source):
        """Raises unless a prompt source's metadata (a file's, or another
        task's `prompt_file_metadata()`) fits this task: same backbone,
        same task class, same settings."""
        prompt_files.check_same_backbone(
            metadata, self.backbone.prompt_metadata(), source
        )
        self.check_prompt_file_class(metadata, source)
        expected = type(self).__name__
        for key, value in self.prompt_file_info().items():
            theirs = metadata.get(key, self.prompt_file_defaults.get(key))
            if theirs != value:
                raise ValueError(
                    f"The prompt file {source!r} was trained with "
                    f"{key}={theirs!r}, but this {expected} has "
                    f"{key}={value!r}: build it with {key}={theirs!r}."
                )

    @classmethod
    def check_prompt_file_class(cls, metadata, source):
        """Raises unless a prompt file was saved by this task class (files
        of a bare `FrozenBackbone` record none and pass)."""
        expected = cls.__name__
        found = metadata.get("task_class")
        if found is not None and found != expected:
            raise ValueError(
                f"The prompt file {source!r} was saved by a {found}, not a "
                f"{expected}: load it with `keras_prompt.{found}`."
            )

    def check_state_names(self, state, source):
        """Raises unless `state` holds exactly the prompt and this task's
        `head_variables()`."""
        expected = set(self.head_variables())
        missing = sorted(expected - set(state))
        if missing:
            raise ValueError(
                f"The prompt file {source!r} holds no "
                f"{self.extras_description} (missing {missing}); it was not "
                f"saved by a {type(self).__name__}."
            )
        unknown = sorted(set(state) - expected - {"prompt"})
        if unknown:
            raise ValueError(
                f"The prompt file {source!r} holds "
                f"{prompt_files.describe_tensors(unknown)} that "
                f"{type(self).__name__} does not use."
            )

    def read_prompt_file(self, path):
        """Reads and checks a prompt file for this task without assigning
        anything; returns `(state, metadata)`, `state` being
        `{"prompt": ..., **heads}` as stored (a bank file has a leading
        prompt axis)."""
        tensors, metadata = prompt_files.read_prompt_file(path)
        return self.prompt_file_state(tensors, metadata, path), metadata

    def prompt_file_state(self, tensors, metadata, path):
        """The checked state `{"prompt": ..., **heads}` of a prompt file's
        tensors and metadata (as `prompt_files.read_prompt_file` returns
        them), for this task."""
        self.check_prompt_metadata(metadata, path)
        state = {
            name[len("extra/") :] if name != "prompt" else name: value
            for name, value in tensors.items()
        }
        self.check_state_names(state, path)
        return state

    def check_state_shapes(self, state, source):
        """Raises unless every array of `state` has its variable's shape."""
        for key, variable in self.trained_variables().items():
            shape = tuple(np.shape(state[key]))
            expected = tuple(variable.shape)
            if shape != expected:
                what = "prompt" if key == "prompt" else f"tensor {key!r}"
                raise ValueError(
                    f"The {what} from {source!r} has shape {shape}, but "
                    f"this model's {what} has shape {expected} "
                    f"({self.settings_description()})."
                )

    def assign_prompt_state(self, state, source="values"):
        """Checks, then assigns, every trained array of `state`."""
        self.check_state_names(state, source)
        self.check_state_shapes(state, source)
        for key, variable in self.trained_variables().items():
            if key == "prompt":
                # Plain vectors: an additive prompt takes them as offsets
                # that fold into them.
                self.backbone.assign_prompts(state[key], source=source)
            else:
                variable.assign(np.asarray(state[key], dtype="float32"))

    def prompt_state(self):
        """The trained state as a prompt file holds it: `{"prompt": plain
        (folded) vectors, **heads}`, NumPy arrays."""
        return {"prompt": self.backbone.prompt_values(), **self.head_state()}

    def head_state(self):
        """`head_variables()` as NumPy arrays."""
        return {
            key: np.asarray(keras.ops.convert_to_numpy(variable))
            for key, variable in self.head_variables().items()
        }

    def save_prompts(self, path, task_names=None):
        """Writes the trained prompt(s) to a small file (atomically).

        Args:
            path: the file to write, e.g. `"sst2.prompt.safetensors"`.
            task_names: optional names, one per prompt of the bank.
        """
        self.backbone.save_prompts(
            path,
            task_names=task_names,
            extra_tensors=self.head_state(),
            task_class=type(self).__name__,
            **self.prompt_file_info(),
        )

    def load_prompts(self, path):
        """Loads a prompt file written by `save_prompts`.

        Everything is checked before anything is assigned: a file from
        another backbone, another kind of task or other settings, or with
        tensors of other shapes or non-finite values, raises a
        `ValueError` and leaves the model unchanged. Returns the file's
        metadata.
        """
        self.backbone.check_plain_prompt(path)
        state, metadata = self.read_prompt_file(path)
        self.load_prompt_state(state, metadata, path)
        return metadata

    def load_prompt_state(self, state, metadata, source):
        """Checks, then assigns, a prompt file's checked `state` (see
        `prompt_file_state`): the prompt as the backbone holds it (see
        `FrozenBackbone.file_prompt`), the heads, and a variable-length
        bank's prompt mask."""
        prompt = self.backbone.file_prompt(state["prompt"], metadata, source)
        self.assign_prompt_state(dict(state, prompt=prompt), source=source)
        self.backbone.assign_prompt_mask(metadata)

    # -- building from a prompt file (`from_preset(..., prompts=...)`) ------
    @classmethod
    def prompt_file_settings(cls, metadata, tensors, path):
        """The `from_preset` arguments a prompt file determines: the
        backbone's (`FrozenBackbone.prompt_file_settings`) and, in task
        classes that have them, the task's (a classifier's `pooling` and
        `num_classes`).

        Args:
            metadata: the file's metadata.
            tensors: the file's tensors, by name (`"prompt"`,
                `"extra/..."`).
            path: the file, for messages.
        """
        return FrozenBackbone.prompt_file_settings(metadata)

    @classmethod
    def read_preset_prompts(cls, prompts, settings):
        """The first half of `from_preset(..., prompts=...)`, before any
        backbone is loaded: reads the prompt file (or the run folder's
        `prompt.safetensors`) once, refuses a file of another task class,
        and completes `settings` (the caller's arguments, `None` where not
        given) with `prompt_file_settings`; a given argument that
        contradicts the file is a `ValueError` naming it, the file and
        both values.

        Returns:
            `(source, settings)`: the `prompt_files.PromptSource` to pass
            to `load_prompt_source` once the task is built, and the
            completed settings.
        """
        source = prompt_files.read_prompt_source(prompts)
        cls.check_prompt_file_class(source.metadata, source.path)
        settings = plain_prompt_keywords(settings, source.path)
        fixed = cls.prompt_file_settings(
            source.metadata, source.tensors, source.path
        )
        settings = prompt_files.merge_settings(settings, fixed, source.path)
        return source, settings

    @staticmethod
    def check_source_backbone(source, backbone):
        """Raises if the prompt file `read_preset_prompts` read (`source`,
        or `None`) was trained on another backbone than the
        `FrozenBackbone` just loaded: checked first, so that the message
        names the backbone rather than a length or a shape that follows
        from it."""
        if source is not None:
            prompt_files.check_backbone_keys(
                source.metadata, backbone.prompt_metadata(), source.path
            )

    def load_prompt_source(self, source):
        """The second half of `from_preset(..., prompts=...)`: checks the
        file read by `read_preset_prompts` against the built task and
        loads its prompt (and heads), as `load_prompts` does. Returns the
        task."""
        state = self.prompt_file_state(
            source.tensors, source.metadata, source.path
        )
        self.load_prompt_state(state, source.metadata, source.path)
        return self

    # -- batches and outputs ------------------------------------------------
    def prompt_inputs(self, texts, prompt_ids=None, targets=None):
        """`(x, y)` for `fit` / `evaluate` / `predict` from raw texts, the
        prompt id of each example (banks) and optional targets."""
        x = {self.text_key: texts}
        if prompt_ids is not None:
            x["prompt_ids"] = prompt_ids
        if targets is not None and self.target_key is not None:
            x[self.target_key] = targets
            targets = None
        return x, targets

    def stop_token_ids(self):
        """The tokenizer's end token(s): what `stop_token_ids="auto"`
        means."""
        tokenizer = self.preprocessor.tokenizer
        ids = [tokenizer.end_token_id]
        if getattr(tokenizer, "end_token2_id", None) is not None:
            ids.append(tokenizer.end_token2_id)
        return ids

    def generated_tokens(self, outputs):
        """`(token_ids, padding_mask)` of `generate_step`'s outputs."""
        return outputs["token_ids"], outputs["padding_mask"]

    def check_generation_length(self, max_length):
        """Raises before any compute if `max_length` cannot be served."""

    def generate_tokens(
        self, texts, prompt_ids=None, max_length=None, stop_token_ids="auto"
    ):
        """Preprocesses `texts` and runs the compiled generation function;
        returns `(inputs, outputs)` as token dicts."""
        if self.preprocessor is None:
            raise ValueError("`generate` needs the model's preprocessor.")
        self.check_generation_length(max_length)
        self.checked_texts(texts)
        if stop_token_ids == "auto":
            stop_token_ids = self.stop_token_ids()
        x = self.preprocessor.generate_preprocess(
            texts, sequence_length=max_length
        )
        if prompt_ids is not None:
            # Checked here: the generation function is compiled with XLA,
            # where an in-graph check cannot fail.
            prompt_ids = self.checked_prompt_ids(prompt_ids)
            x = dict(x, prompt_ids=keras.ops.convert_to_tensor(prompt_ids))
        outputs = self.make_generate_function()(
            x, stop_token_ids=stop_token_ids
        )
        return x, outputs

    def infer(
        self, texts, prompt_ids=None, max_length=None, stop_token_ids="auto"
    ):
        """The task's outputs for raw texts: generated strings, one per
        text (classifiers: class probabilities); `prompt_ids` picks each
        text's prompt in a bank."""
        _, outputs = self.generate_tokens(
            texts, prompt_ids, max_length, stop_token_ids
        )
        return self.preprocessor.generate_postprocess(outputs)

    def generate_targets(self, inputs):
        """The generated target text of each input string: what
        text-to-text scoring (`TextToTextExamples.score`) compares with
        the targets. `generate`'s outputs here; causal LMs return the
        continuation only.

        Args:
            inputs: a list of input strings.
        """
        return self.generate(inputs)

    def output_records(self, outputs, label_strings=None):
        """`infer`'s outputs as JSON-able records, one per input (what
        `keras-prompt predict` prints): `{"output": generated text}`.

        Args:
            outputs: what `infer` returned.
            label_strings: optional class names, for tasks that classify.
        """
        if hasattr(outputs, "numpy"):
            outputs = outputs.numpy()
        if isinstance(outputs, (str, bytes)):
            outputs = [outputs]
        return [
            {"output": v.decode("utf-8") if isinstance(v, bytes) else str(v)}
            for v in np.asarray(outputs, dtype=object).reshape(-1)
        ]

    def checked_prompt_ids(self, prompt_ids):
        """`prompt_ids` checked against the bank: ints in `[0,
        num_prompts)`. A `TypeError` for another dtype; out of range a
        `ValueError` for concrete values, and an assertion that fails the
        `tf.data` pipeline (or traced function) otherwise. The message
        lists the tasks of a `PromptBank`'s model (its `prompt_id_names`).

        `fit`, `evaluate` and `predict` run this in their input pipeline
        (`preprocess_samples`), outside the compiled step, so it holds
        under XLA too, where an in-graph assertion is compiled away.
        """
        names = getattr(self, "prompt_id_names", None)
        return checked_indices(
            prompt_ids,
            self.backbone.num_prompts,
            "prompt_ids",
            where=(
                f" for the bank of {self.backbone.num_prompts} prompts of "
                f"{type(self).__name__} '{self.name}'"
            ),
            known=names() if callable(names) else None,
        )

    def preprocess_samples(self, x, y=None, sample_weight=None):
        prompt_ids = None
        if isinstance(x, dict) and "prompt_ids" in x:
            x = dict(x)
            prompt_ids = self.checked_prompt_ids(x.pop("prompt_ids"))
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            super().preprocess_samples(x, y, sample_weight)
        )
        if prompt_ids is not None:
            x = dict(x)
            x["prompt_ids"] = prompt_ids
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    # -- compiling ---------------------------------------------------------
    #: The `keras_prompt.optimizers.get` name `compile()` defaults to.
    default_optimizer_name = "adafactor"
