"""Looking at learned prompts: the nearest vocabulary tokens of each
prompt position (Lester et al., 2021, section 7)."""

from keras_prompt.analysis.nearest_tokens import NearestTokens
from keras_prompt.analysis.nearest_tokens import nearest_tokens
from keras_prompt.analysis.nearest_tokens import plot_nearest_tokens

__all__ = ["NearestTokens", "nearest_tokens", "plot_nearest_tokens"]
