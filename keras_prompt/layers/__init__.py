from keras_prompt.layers.classification_head import ClassificationHead
from keras_prompt.layers.prompt_config import PromptConfig
from keras_prompt.layers.prompt_embedding import PromptEmbedding
from keras_prompt.layers.residual_reparameterization import (
    ResidualReparameterization,
)

__all__ = [
    "ClassificationHead",
    "PromptConfig",
    "PromptEmbedding",
    "ResidualReparameterization",
]
