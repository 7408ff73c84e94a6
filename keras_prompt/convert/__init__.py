"""Pretrained checkpoints into keras-hub models.

- `checkpoint_files`: reading Hugging Face checkpoint folders whatever the
  model: `hf://` handles, `config.json`, safetensors / torch / sharded
  weights (`TensorReader`), atomic safetensors writing.
- `registry`: the converters of checkpoints keras-hub cannot load
  (`Converter`, `register_converter`, `find_converter`).
- `hf_t5` (with `hf_t5_config`, `hf_t5_weights`): Hugging Face T5
  checkpoints <-> `keras_hub.models.T5Backbone`; its converter is
  registered when this package is imported.
- `gguf_llama`: llama.cpp GGUF Llama files -> Hugging Face folders.
- `presets`: `load_backbone` / `load_preprocessor` for any preset, through
  the converter that claims it, else keras-hub's `from_preset`.
- `precision`: which dtype the frozen weights get (`"auto"`: bfloat16
  where it is fast).
"""

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
