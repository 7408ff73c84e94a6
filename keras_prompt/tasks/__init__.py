from keras_prompt.tasks.prompt_causal_lm import PromptCausalLM
from keras_prompt.tasks.prompt_classifier import PromptClassifier
from keras_prompt.tasks.prompt_seq2seq_lm import PromptSeq2SeqLM

__all__ = [
    "PromptCausalLM",
    "PromptClassifier",
    "PromptSeq2SeqLM",
]
