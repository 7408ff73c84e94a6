"""One adapter per model family; importing this package registers them."""

from keras_prompt.adapters import bert  # noqa: F401
from keras_prompt.adapters import distil_bert  # noqa: F401
from keras_prompt.adapters import gemma  # noqa: F401
from keras_prompt.adapters import gpt2  # noqa: F401
from keras_prompt.adapters import llama  # noqa: F401
from keras_prompt.adapters import roberta  # noqa: F401
from keras_prompt.adapters import t5  # noqa: F401
from keras_prompt.adapters.base import PromptAdapter
from keras_prompt.adapters.base import get_adapter
from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.base import supported_families

__all__ = [
    "PromptAdapter",
    "get_adapter",
    "register_adapter",
    "supported_families",
]
