"""Checkpoint converters into keras-hub models."""

from keras_prompt.convert.hf_t5 import is_hf_t5_checkpoint
from keras_prompt.convert.hf_t5 import load_hf_t5_backbone
from keras_prompt.convert.hf_t5 import load_hf_t5_preprocessor
from keras_prompt.convert.hf_t5 import load_hf_t5_tokenizer
from keras_prompt.convert.hf_t5 import save_hf_t5_checkpoint

__all__ = [
    "is_hf_t5_checkpoint",
    "load_hf_t5_backbone",
    "load_hf_t5_preprocessor",
    "load_hf_t5_tokenizer",
    "save_hf_t5_checkpoint",
]
