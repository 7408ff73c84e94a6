from keras_prompt.layers.classification_head import ClassificationHead
from keras_prompt.layers.prompt_embedding import PromptEmbedding

__all__ = ["ClassificationHead", "PromptEmbedding"]
