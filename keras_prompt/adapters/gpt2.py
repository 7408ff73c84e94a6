from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.decoder import DecoderAdapter


@register_adapter
class GPT2Adapter(DecoderAdapter):
    """GPT-2: the prompt joins the embedded tokens before the positions.

    The prompt is inserted right after the token lookup and before the
    learned absolute position embeddings are added, so prompt vectors get
    positions like real tokens: with right padding the prompt takes
    positions `0..P-1` and the text starts at `P`; with left padding the
    prompt follows the pads (see `keras_prompt.adapters.decoder`). The
    padding mask is extended with ones for the prompt.

    Positions are absolute, so `max_sequence_length()` is the backbone's
    `max_sequence_length` and `prompt_length + sequence_length` must fit in
    it: `PromptCausalLM` checks this against its preprocessor when built,
    and the prompted graph checks any statically known input length before
    the positions are added. In generation the prompt fills cache positions
    `0..P-1` and token `i` is written (and positioned) at `P + i`.

    Example:

    ```python
    import keras_hub
    import numpy as np
    import keras_prompt

    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    backbone = keras_prompt.FrozenBackbone(gpt2, prompt_length=4)
    hidden = backbone({
        "token_ids": np.ones((2, 6), "int32"),
        "padding_mask": np.ones((2, 6), "int32"),
    })  # (2, 10, 16), prompt positions first
    ```
    """

    family = "gpt2"
    backbone_classes = ("GPT2Backbone",)

    def max_sequence_length(self):
        return self.backbone.max_sequence_length

    def finish_embedding(self, x, start_index=0):
        backbone = self.backbone
        positions = backbone.position_embedding(x, start_index=start_index)
        x = backbone.embeddings_add((x, positions))
        return backbone.embeddings_dropout(x)

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

    def cache_heads(self):
        backbone = self.backbone
        return backbone.num_heads, backbone.hidden_dim // backbone.num_heads
