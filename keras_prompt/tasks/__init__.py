from keras_prompt.tasks.prompt_seq2seq_lm import PromptSeq2SeqLM

__all__ = ["PromptSeq2SeqLM"]
