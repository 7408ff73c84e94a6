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
]
