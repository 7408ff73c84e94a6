"""How prompts start.

`prompt_initializers` holds the paper's initialisers of a prompt (Lester
et al., 2021, section 3.2: uniform, sampled vocabulary, class labels, given
tokens); `deep_prompts` how the layer prompts of a deep prompt start
(a Keras initializer, or propagated from the input prompt).
"""

from keras_prompt.initializers.from_prompt_file import FromPromptFile
from keras_prompt.initializers.prompt_initializers import ClassLabel
from keras_prompt.initializers.prompt_initializers import EmbeddingInitializer
from keras_prompt.initializers.prompt_initializers import FromTokens
from keras_prompt.initializers.prompt_initializers import RandomUniform
from keras_prompt.initializers.prompt_initializers import SampledVocab
from keras_prompt.initializers.prompt_initializers import embedding_table
from keras_prompt.initializers.prompt_initializers import get

__all__ = [
    "ClassLabel",
    "EmbeddingInitializer",
    "FromPromptFile",
    "FromTokens",
    "RandomUniform",
    "SampledVocab",
    "embedding_table",
    "get",
]
