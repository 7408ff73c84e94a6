"""Gemma, Gemma 2 (both `GemmaBackbone`) and Gemma 3 text (`Gemma3Backbone`).

Gemma multiplies the token embeddings by `sqrt(hidden_dim)` inside the
backbone. The prompt is stored PRE-scale, in the space of the embedding
table: it is inserted right after the token lookup and scaled together
with the real tokens. A prompt holding rows of the embedding table is then
treated exactly like those tokens, and vocabulary-based initialisers
(`"sampled_vocab"`, `ClassLabel`, `FromTokens`) start the prompt as
embeddings of real tokens.
"""

from keras import ops

from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.decoder import EXAMPLE_HEADS
from keras_prompt.adapters.decoder import DecoderAdapter
from keras_prompt.adapters.decoder import with_example
from keras_prompt.adapters.model_spec import decoder_spec


class _ScaledEmbeddingAdapter(DecoderAdapter):
    padding_mask_argument = "padding_mask"
    cache_argument = "cache"
    cache_index_argument = "cache_update_index"

    def finish_embedding(self, x, start_index=0):
        # The same expression as the backbone, for bit-identical scaling.
        return x * ops.cast(ops.sqrt(self.backbone.hidden_dim), x.dtype)

    def cache_heads(self):
        return self.backbone.num_key_value_heads, self.backbone.head_dim


@register_adapter
@with_example("gemma", "GemmaBackbone", **EXAMPLE_HEADS, head_dim=8)
class GemmaAdapter(_ScaledEmbeddingAdapter):
    """Gemma and Gemma 2: the prompt is stored before the embedding scale.

    The prompt is inserted after the token lookup and before the
    `sqrt(hidden_dim)` scaling, before each row's first real token (after
    any left padding), and the padding mask is extended with ones; see
    `keras_prompt.adapters.decoder`. Rotary positions need no change.
    Gemma 2's alternating sliding-window layers and logit soft caps count
    prompt positions like token positions.
    """

    family = "gemma"
    backbone_classes = ("GemmaBackbone",)

    @classmethod
    def model_spec(cls, config, name):
        """GeGLU (tanh GELU) feed-forward whose two gated branches
        keras-hub stores together in `intermediate_dim`, two tensors of the
        scores' size per layer, tied embeddings unless the config says
        otherwise."""
        return decoder_spec(
            config,
            name,
            activation="gelu_tanh",
            score_tensors=2,
            branches=2,
            tied=True,
        )


@register_adapter
@with_example(
    "gemma3",
    "Gemma3Backbone",
    image_size=16,
    **EXAMPLE_HEADS,
    head_dim=8,
    vision_encoder=None,
)
class Gemma3Adapter(_ScaledEmbeddingAdapter):
    """Gemma 3 text-only: the prompt is stored before the embedding scale.

    As for Gemma, the prompt is inserted after the token lookup and before
    the `sqrt(hidden_dim)` scaling, before each row's first real token. The
    local (sliding-window) and global layers count prompt positions like
    token positions, both in the prompted forward pass and in the cache.
    The cache is keras-hub's Gemma 3 layout, one `(key, value)` pair per
    layer, and the prefill pass gets the extended padding mask as in
    keras-hub.

    Only text-only, causal backbones are supported: a `Gemma3Backbone` with
    a vision encoder, or an embedding model (bidirectional attention,
    pooled output) raises a `ValueError`.
    """

    family = "gemma3"
    backbone_classes = ("Gemma3Backbone",)
    # No size facts yet: `ModelSpec` has no per-head query and key norms,
    # and Gemma 3's `intermediate_dim` is one branch's, not Gemma's two.
    model_spec = None

    def __init__(self, backbone):
        unsupported = []
        if getattr(backbone, "vision_encoder", None) is not None:
            unsupported.append("a vision encoder")
        if getattr(backbone, "is_embedding_model", False):
            unsupported.append("is_embedding_model=True")
        if getattr(backbone, "use_bidirectional_attention", False):
            unsupported.append("use_bidirectional_attention=True")
        if unsupported:
            raise ValueError(
                "keras_prompt supports text-only, causal Gemma3Backbone "
                f"models. Received: a Gemma3Backbone with "
                f"{' and '.join(unsupported)}."
            )
        super().__init__(backbone)

    def transformer(self, x, padding_mask, layer_prompts):
        for index, layer in enumerate(self.backbone.transformer_layers):
            x, padding_mask = layer_prompts(index, x, padding_mask)
            x = layer(x, padding_mask=padding_mask, vision_mask=None)
        return x

    def init_cache(self, batch_size, length, dtype):
        """One `(key, value)` pair per layer, each
        `(batch, length, num_key_value_heads, head_dim)`."""
        num_heads, head_dim = self.cache_heads()
        shape = [batch_size, length, num_heads, head_dim]
        return tuple(
            (ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype=dtype))
            for _ in range(self.backbone.num_layers)
        )

    def transformer_with_cache(
        self, x, cache, cache_update_index, layer_prompts, padding_mask=None
    ):
        caches = []
        layers = self.backbone.transformer_layers
        for index, (layer, layer_cache) in enumerate(zip(layers, cache)):
            x, padding_mask = layer_prompts(index, x, padding_mask)
            layer_mask = padding_mask
            if padding_mask is not None and index < layer_prompts.start:
                # A late prompt's prefill below its layer: the text alone,
                # the cache's last `prompt_length` positions empty.
                empty = ops.zeros_like(padding_mask[:, :1])
                empty = ops.repeat(empty, layer_prompts.prompt.length, 1)
                layer_mask = ops.concatenate([padding_mask, empty], axis=1)
            x, layer_cache = layer(
                x,
                cache=layer_cache,
                cache_update_index=cache_update_index(index),
                padding_mask=layer_mask,
            )
            caches.append(layer_cache)
        return x, tuple(caches)
