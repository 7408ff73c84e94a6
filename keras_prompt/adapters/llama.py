"""Rotary-position decoder families: Llama (and Llama 3), Mistral, Qwen
(Qwen 2 / 2.5 checkpoints) and Qwen 3.

Their keras-hub forward passes are the same: token lookup (no scaling, no
absolute positions), decoder layers taking `decoder_padding_mask` or a
stacked `self_attention_cache`, a final norm. Rotary positions are
computed inside attention from the sequence position (and, with a cache,
from `cache_update_index`), so a prompt in the sequence or in the cache
needs nothing for positions and there is no length limit to check.
"""

from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.decoder import EXAMPLE_HEADS
from keras_prompt.adapters.decoder import DecoderAdapter
from keras_prompt.adapters.decoder import with_example
from keras_prompt.adapters.model_spec import decoder_spec


class RotaryDecoderAdapter(DecoderAdapter):
    """Shared forward pass of the rotary families below.

    The prompt is inserted right after the token lookup, before each row's
    first real token (after any left padding), and the padding mask is
    extended with ones; see `keras_prompt.adapters.decoder`. The prompt
    goes between the token lookup and the first decoder layer; rotary
    positions need no change. Sliding-window attention (Mistral, Qwen)
    counts prompt positions like token positions.
    The layers take keras-hub's `decoder_padding_mask` and stacked
    `self_attention_cache`, `DecoderAdapter`'s defaults.
    """

    @classmethod
    def model_spec(cls, config, name):
        """SwiGLU feed-forward, grouped-query attention keeping two
        tensors of the scores' size per layer, untied embeddings unless the
        config ties them. `ModelSpec` leaves out Qwen's query/key/value
        biases."""
        return decoder_spec(config, name, activation="silu", score_tensors=2)


@register_adapter
@with_example("llama", "LlamaBackbone", **EXAMPLE_HEADS)
class LlamaAdapter(RotaryDecoderAdapter):
    """Llama 2 and Llama 3 (`LlamaBackbone`, `Llama3Backbone`).

    `Llama3Backbone` subclasses `LlamaBackbone` and so matches this
    adapter; Llama 3's larger rotary base changes nothing for the prompt.
    """

    family = "llama"
    backbone_classes = ("LlamaBackbone",)


@register_adapter
@with_example("mistral", "MistralBackbone", **EXAMPLE_HEADS)
class MistralAdapter(RotaryDecoderAdapter):
    """Mistral (`MistralBackbone`), sliding-window attention included.

    Each layer's sliding window counts the prompt positions like token
    positions, in the prompted pass and in the generation cache.
    """

    family = "mistral"
    backbone_classes = ("MistralBackbone",)


@register_adapter
@with_example("qwen", "QwenBackbone", **EXAMPLE_HEADS)
class QwenAdapter(RotaryDecoderAdapter):
    """Qwen 2 / 2.5 (keras-hub's `QwenBackbone`).

    With `use_sliding_window_attention=True` the window counts the prompt
    positions like token positions.
    """

    family = "qwen"
    backbone_classes = ("QwenBackbone",)


@register_adapter
@with_example("qwen3", "Qwen3Backbone", **EXAMPLE_HEADS, head_dim=8)
class Qwen3Adapter(RotaryDecoderAdapter):
    """Qwen 3 (`Qwen3Backbone`, dense models).

    The per-head query and key norms act on the prompt positions as on
    the tokens'; `head_dim` is the backbone's own, not
    `hidden_dim // num_query_heads`.
    """

    family = "qwen3"
    backbone_classes = ("Qwen3Backbone",)
    # No size facts yet: `ModelSpec` has no per-head query and key norms.
    model_spec = None
