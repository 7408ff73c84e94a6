from keras_prompt.layers.prompt_embedding import PromptEmbedding

__all__ = ["PromptEmbedding"]
