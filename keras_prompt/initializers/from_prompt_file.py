import keras
import numpy as np

from keras_prompt import prompt_files


@keras.saving.register_keras_serializable(package="keras_prompt")
class FromPromptFile(keras.initializers.Initializer):
    """Starts a prompt from another task's trained prompt (SPoT transfer).

    Vu et al. (ACL 2022) show that a prompt trained on one task is a better
    start for a related task than any generic initialisation. This
    initializer reads a prompt file (or a run folder of `keras-prompt
    tune`) through the library's one reader, `prompt_files`, and gives
    its prompt as the initial value: every layer of a deep prompt, as the
    file holds it (so `FrozenBackbone` does not propagate or re-draw the
    deep layers). The file must hold one prompt (or name `task` in a
    bank); a bank of several prompts starts each from it.

    `FrozenBackbone` checks the file against its `PromptConfig` before
    anything is built (`check_prompt_config`): the same prompt length,
    deep or not, the same start layer, and a file of the same backbone
    (width, vocabulary, embedding table); any mismatch is one
    `ValueError` naming the file and both values.

    Args:
        path: str, a prompt file (`*.prompt.safetensors`) or a run folder
            holding `prompt.safetensors`.
        task: optional str, the task of a multi-prompt file to start from.

    Example:

    ```python
    config = keras_prompt.PromptConfig(
        length=20,
        deep=True,
        initializer=keras_prompt.initializers.FromPromptFile("runs/mnli"),
    )
    model = keras_prompt.PromptClassifier.from_preset(
        preset, num_classes=2, prompt_config=config
    )
    ```
    """

    #: Gives every layer of a deep (or late) prompt: nothing is derived.
    sets_every_layer = True

    def __init__(self, path, task=None):
        source = prompt_files.read_prompt_source(path)
        self.path = source.path
        self.task = task
        self.metadata = source.metadata
        prompt = np.asarray(source.tensors["prompt"], "float32")
        names = self.metadata.get("task_names") or []
        count = self.metadata["num_prompts"]
        if count > 1:
            if task not in names:
                raise ValueError(
                    f"The prompt file {self.path!r} holds {count} prompts "
                    f"({names}); name the one to start from with `task`. "
                    f"Received: task={task!r}"
                )
            row = names.index(task)
            length = prompt_files.prompt_lengths(self.metadata)[row]
            prompt = prompt[row][..., prompt.shape[-2] - length :, :]
        elif task is not None and names and task not in names:
            raise ValueError(
                f"The prompt file {self.path!r} holds the prompt of "
                f"{names}. Received: task={task!r}"
            )
        else:
            length = prompt_files.prompt_lengths(self.metadata)[0]
            prompt = prompt[..., prompt.shape[-2] - length :, :]
        self.prompt = prompt

    def settings(self):
        """What the file's prompt is: `length`, `deep` and `start_layer`."""
        return {
            "length": int(self.prompt.shape[-2]),
            "deep": self.metadata.get("prompt_depth") is not None,
            "start_layer": prompt_files.start_layer(self.metadata),
        }

    def check_prompt_config(self, config, metadata):
        """Raises unless the file's prompt fits a model of `PromptConfig`
        `config` whose prompt-file metadata is `metadata`: the backbone
        first (another backbone explains any other difference)."""
        prompt_files.check_backbone_keys(self.metadata, metadata, self.path)
        for key, value in self.settings().items():
            expected = getattr(config, key)
            if value != expected:
                raise ValueError(
                    f"The prompt file {self.path!r} (an `initializer`) holds "
                    f"a prompt with {key}={value!r}; this model's prompt has "
                    f"{key}={expected!r}. Build it with {key}={value!r}."
                )
        prompt_files.check_same_backbone(self.metadata, metadata, self.path)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        prompt = self.prompt
        if shape[1:] == prompt.shape:
            prompt = np.broadcast_to(prompt, shape)
        if tuple(prompt.shape) != shape:
            raise ValueError(
                f"The prompt file {self.path!r} holds a prompt of shape "
                f"{tuple(self.prompt.shape)}; the prompt to start has shape "
                f"{shape} (depth, length and width must agree)."
            )
        return keras.ops.convert_to_tensor(
            np.array(prompt), dtype=dtype or "float32"
        )

    def get_config(self):
        return {"path": self.path, "task": self.task}
