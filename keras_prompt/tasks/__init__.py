from keras_prompt.tasks.prompt_causal_lm import PromptCausalLM
from keras_prompt.tasks.prompt_classifier import PromptClassifier
from keras_prompt.tasks.prompt_seq2seq_lm import PromptSeq2SeqLM


def task_class_for(backbone):
    """The prompt task class for a backbone's adapter kind.

    Args:
        backbone: a keras-hub backbone or a `keras_prompt.FrozenBackbone`.

    Returns:
        `PromptClassifier` (encoders), `PromptSeq2SeqLM` (T5) or
        `PromptCausalLM` (decoder-only LMs).

    Raises:
        ValueError: for a backbone no adapter supports.
    """
    from keras_prompt.adapters import get_adapter
    from keras_prompt.frozen_backbone import FrozenBackbone

    if isinstance(backbone, FrozenBackbone):
        backbone = backbone.backbone
    return _TASK_CLASSES[get_adapter(backbone).kind]


def task_class_of_prompt_file(metadata, path):
    """The prompt task class that saved a prompt file.

    Args:
        metadata: the file's metadata (`prompt_files.read_prompt_file`).
        path: the file, for messages.

    Raises:
        ValueError: for a file that records no task class (a bare
            `FrozenBackbone`'s) or one this library does not know.
    """
    name = metadata.get("task_class")
    for task_class in _TASK_CLASSES.values():
        if task_class.__name__ == name:
            return task_class
    known = sorted(c.__name__ for c in _TASK_CLASSES.values())
    raise ValueError(
        f"The prompt file path={path!r} records no known task class "
        f"(task_class={name!r}; known: {known}); it was not saved by a "
        "keras_prompt task."
    )


_TASK_CLASSES = {
    "encoder": PromptClassifier,
    "seq2seq": PromptSeq2SeqLM,
    "causal": PromptCausalLM,
}

__all__ = [
    "PromptCausalLM",
    "PromptClassifier",
    "PromptSeq2SeqLM",
    "task_class_for",
    "task_class_of_prompt_file",
]
