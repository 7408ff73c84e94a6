"""What every prompt-tuned task shares: prompt files and `prompt_ids`."""

import keras

from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.frozen_backbone import frozen_weights_unwatched


def check_frozen_backbone(task_name, backbone, kind):
    """Raises unless `backbone` is a `FrozenBackbone` of adapter `kind`."""
    if not isinstance(backbone, FrozenBackbone):
        raise TypeError(
            f"`{task_name}` needs a `keras_prompt.FrozenBackbone`. Wrap your "
            "backbone with `FrozenBackbone(backbone, prompt_length=...)` or "
            f"use `{task_name}.from_preset(...)`. Received: "
            f"backbone={type(backbone).__name__}"
        )
    if backbone.adapter.kind != kind:
        raise ValueError(
            f"`{task_name}` needs a {kind} backbone; "
            f"{type(backbone.backbone).__name__} is a "
            f"{backbone.adapter.kind} backbone. Received: "
            f"backbone={type(backbone.backbone).__name__}"
        )


class PromptTaskMixin:
    """Prompt files and per-example prompt ids for keras-hub tasks.

    A task mixing this in saves and loads its prompts (and any extra trained
    tensors it declares in `extra_prompt_tensors`) with `save_prompts` /
    `load_prompts`, and passes a `"prompt_ids"` feature of its inputs
    through preprocessing untouched, so banks can mix tasks in a batch.
    """

    def call(self, *args, **kwargs):
        # The task reads frozen weights outside the backbone too (T5 and
        # decoder LMs project onto the frozen token embedding): keep all of
        # them out of TensorFlow's gradient tape, as `FrozenBackbone` does.
        with frozen_weights_unwatched(self.variables):
            return super().call(*args, **kwargs)

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
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

    def extra_prompt_tensors(self):
        """Trained tensors besides the prompt that a prompt file carries."""
        return {}

    def assign_extra_prompt_tensors(self, tensors, source):
        if tensors:
            raise ValueError(
                f"The prompt file {source!r} holds extra tensors "
                f"{sorted(tensors)} that {type(self).__name__} does not use."
            )

    def prompt_file_info(self):
        """Task settings a prompt file records (JSON-able metadata)."""
        return {}

    def save_prompts(self, path, task_names=None):
        """Writes the trained prompt(s) to a small file (atomically).

        Args:
            path: the file to write, e.g. `"sst2.prompt.safetensors"`.
            task_names: optional names, one per prompt of the bank.
        """
        self.backbone.save_prompts(
            path,
            task_names=task_names,
            extra_tensors=self.extra_prompt_tensors(),
            task_class=type(self).__name__,
            **self.prompt_file_info(),
        )

    def load_prompts(self, path):
        """Loads a prompt file written by `save_prompts`.

        Raises a `ValueError` when the file comes from another backbone or
        another kind of task. Returns the file's metadata.
        """
        prompt, extras, metadata = self.backbone.read_prompts(path)
        expected = type(self).__name__
        found = metadata.get("task_class")
        if found is not None and found != expected:
            raise ValueError(
                f"The prompt file {path!r} was saved by a {found}, not a "
                f"{expected}."
            )
        self.assign_extra_prompt_tensors(extras, path)
        self.backbone.assign_prompts(prompt, source=path)
        return metadata

    def preprocess_samples(self, x, y=None, sample_weight=None):
        prompt_ids = None
        if isinstance(x, dict) and "prompt_ids" in x:
            x = dict(x)
            prompt_ids = x.pop("prompt_ids")
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            super().preprocess_samples(x, y, sample_weight)
        )
        if prompt_ids is not None:
            x = dict(x)
            x["prompt_ids"] = prompt_ids
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
