from keras_prompt.adapters.base import PromptAdapter
from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.model_spec import ModelSpec


@register_adapter
class T5Adapter(PromptAdapter):
    """T5 / T5 1.1: the prompt is prepended to the embedded encoder input.

    The paper puts the prompt on the encoder only. Deep prompts are on the
    encoder layers too (layer `i` of the prompt replaces the encoder hidden
    states at the prompt positions before encoder layer `i`); the decoder
    gets none, it reads the deep-prompted encoder output through
    cross-attention. The encoder padding mask
    is extended with ones, so the encoder's self-attention and the
    decoder's cross-attention both see the prompt; relative position
    buckets need no change. The decoder is untouched. The
    `encoder_sequence_output` has `prompt_length + L` positions, the prompt
    first.
    """

    family = "t5"
    backbone_classes = ("T5Backbone",)
    kind = "seq2seq"
    # Relative position buckets see only distances, so a shorter prompt
    # right-aligned in a bank and masked in front is exactly that prompt.
    supports_mixed_prompt_lengths = True

    @classmethod
    def model_spec(cls, config, name):
        """keras-hub's T5 config: the original T5's ReLU or T5 1.1's
        gated GELU (exact or tanh-approximated), tied or untied
        embeddings, `key_value_dim` wider heads (T5 XL/XXL)."""
        get = config.get
        activation = str(get("activation", "relu"))
        if "relu" in activation:
            activation = "relu"
        elif "approx" in activation or "tanh" in activation:
            activation = "gelu_tanh"
        else:
            activation = "gelu"
        return ModelSpec.from_config(
            config,
            name,
            "t5",
            head_dim_key="key_value_dim",
            activation=activation,
            gated=bool(get("use_gated_activation", True)),
            tied_embeddings=bool(get("tie_embedding_weights", True)),
        )

    def encode(self, token_ids, padding_mask, prompt, prompt_ids=None):
        """Runs the encoder with the prompt.

        Returns `(encoder_hidden_states, extended_padding_mask)`, both of
        length `prompt_length + L`.
        """
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = prompt(x, prompt_ids=prompt_ids)
        padding_mask = prompt.extend_mask(padding_mask, prompt_ids)
        x = backbone.encoder_embedding_dropout(x)
        attention_mask = padding_mask[:, None, :]
        position_bias = None
        before_layer = self.layer_prompts(prompt, prompt_ids)
        for index, layer in enumerate(backbone.encoder_transformer_layers):
            x = before_layer(index, x)
            x, position_bias = layer(
                x,
                attention_mask=attention_mask,
                position_bias=position_bias,
                use_causal_mask=False,
            )
        x = backbone.encoder_layer_norm(x)
        x = backbone.encoder_dropout(x)
        return x, padding_mask

    def num_prompted_layers(self):
        return len(self.backbone.encoder_transformer_layers)

    def decode(self, token_ids, padding_mask, encoder_output, encoder_mask):
        """Runs the (unchanged) decoder over the prompted encoder output."""
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = backbone.decoder_embedding_dropout(x)
        position_bias = None
        for layer in backbone.decoder_transformer_layers:
            x, position_bias = layer(
                x,
                attention_mask=padding_mask[:, None, :],
                position_bias=position_bias,
                encoder_hidden_states=encoder_output,
                encoder_attention_mask=encoder_mask[:, None, :],
                use_causal_mask=True,
            )
        x = backbone.decoder_layer_norm(x)
        return backbone.decoder_dropout(x)

    def forward(self, inputs, prompt, prompt_ids=None):
        encoder_output, encoder_mask = self.encode(
            inputs["encoder_token_ids"],
            inputs["encoder_padding_mask"],
            prompt,
            prompt_ids,
        )
        decoder_output = self.decode(
            inputs["decoder_token_ids"],
            inputs["decoder_padding_mask"],
            encoder_output,
            encoder_mask,
        )
        return {
            "encoder_sequence_output": encoder_output,
            "decoder_sequence_output": decoder_output,
        }
