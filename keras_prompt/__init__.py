"""keras_prompt: Prompt Tuning (Lester et al., 2021) for Keras 3 and keras-hub.

A frozen pretrained transformer plus a tiny learned soft prompt per task.
"""

from keras_prompt import analysis
from keras_prompt import convert
from keras_prompt import data
from keras_prompt import distribute
from keras_prompt import initializers
from keras_prompt import layers
from keras_prompt import optimizers
from keras_prompt import serving
from keras_prompt import training
from keras_prompt.convert import precision
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.layers.prompt_config import PromptConfig
from keras_prompt.layers.prompt_embedding import PromptEmbedding
from keras_prompt.serving.export import export_saved_model
from keras_prompt.tasks.prompt_causal_lm import PromptCausalLM
from keras_prompt.tasks.prompt_classifier import PromptClassifier
from keras_prompt.tasks.prompt_seq2seq_lm import PromptSeq2SeqLM
from keras_prompt.training import BestPromptCheckpoint
from keras_prompt.training import FiniteGuard
from keras_prompt.training import PromptTrainingCheckpoint
from keras_prompt.training import set_random_seed
from keras_prompt.version import __version__

__all__ = [
    "BestPromptCheckpoint",
    "FiniteGuard",
    "FrozenBackbone",
    "PromptCausalLM",
    "PromptClassifier",
    "PromptConfig",
    "PromptEmbedding",
    "PromptSeq2SeqLM",
    "PromptTrainingCheckpoint",
    "analysis",
    "convert",
    "data",
    "distribute",
    "export_saved_model",
    "initializers",
    "layers",
    "optimizers",
    "precision",
    "serving",
    "set_random_seed",
    "training",
    "__version__",
]
