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
from keras_prompt.adapters.decoder import DecoderAdapter


class RotaryDecoderAdapter(DecoderAdapter):
    """Shared forward pass of the rotary families below.

    The prompt is inserted right after the token lookup, before each row's
    first real token (after any left padding), and the padding mask is
    extended with ones; see `keras_prompt.adapters.decoder`. Sliding-window
    attention (Mistral, Qwen) counts prompt positions like token positions.
    """

    def transformer(self, x, padding_mask):
        for layer in self.backbone.transformer_layers:
            x = layer(x, decoder_padding_mask=padding_mask)
        return x

    def transformer_with_cache(
        self, x, cache, cache_update_index, padding_mask=None
    ):
        def call(layer, x, layer_cache):
            return layer(
                x,
                self_attention_cache=layer_cache,
                self_attention_cache_update_index=cache_update_index,
            )

        return self.stacked_cache_pass(x, cache, call)


@register_adapter
class LlamaAdapter(RotaryDecoderAdapter):
    """Llama 2 and Llama 3 (`LlamaBackbone`, `Llama3Backbone`).

    The prompt goes between the token lookup and the first decoder layer,
    before the first real token; rotary positions need no change.

    Example:

    ```python
    import keras_hub
    import numpy as np
    import keras_prompt

    llama = keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
    )
    backbone = keras_prompt.FrozenBackbone(llama, prompt_length=4)
    hidden = backbone({
        "token_ids": np.ones((2, 6), "int32"),
        "padding_mask": np.ones((2, 6), "int32"),
    })  # (2, 10, 16)
    ```
    """

    family = "llama"
    backbone_classes = ("LlamaBackbone",)


@register_adapter
class MistralAdapter(RotaryDecoderAdapter):
    """Mistral (`MistralBackbone`), sliding-window attention included.

    The prompt goes between the token lookup and the first decoder layer,
    before the first real token; rotary positions need no change.

    Example:

    ```python
    import keras_hub
    import keras_prompt

    mistral = keras_hub.models.MistralBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
    )
    backbone = keras_prompt.FrozenBackbone(mistral, prompt_length=4)
    ```
    """

    family = "mistral"
    backbone_classes = ("MistralBackbone",)


@register_adapter
class QwenAdapter(RotaryDecoderAdapter):
    """Qwen 2 / 2.5 (keras-hub's `QwenBackbone`).

    The prompt goes between the token lookup and the first decoder layer,
    before the first real token; rotary positions need no change.

    Example:

    ```python
    import keras_hub
    import keras_prompt

    qwen = keras_hub.models.QwenBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
    )
    backbone = keras_prompt.FrozenBackbone(qwen, prompt_length=4)
    ```
    """

    family = "qwen"
    backbone_classes = ("QwenBackbone",)


@register_adapter
class Qwen3Adapter(RotaryDecoderAdapter):
    """Qwen 3 (`Qwen3Backbone`, dense models).

    The prompt goes between the token lookup and the first decoder layer,
    before the first real token; rotary positions need no change.

    Example:

    ```python
    import keras_hub
    import keras_prompt

    qwen3 = keras_hub.models.Qwen3Backbone(
        vocabulary_size=50, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, head_dim=8, hidden_dim=16,
        intermediate_dim=32,
    )
    backbone = keras_prompt.FrozenBackbone(qwen3, prompt_length=4)
    ```
    """

    family = "qwen3"
    backbone_classes = ("Qwen3Backbone",)
