import keras
from keras import ops

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
    prompted_inputs = ("encoder_token_ids", "encoder_padding_mask")
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
        length `prompt_length + L`. A late prompt (`start_layer = k > 0`)
        is prepended to the hidden states entering encoder layer `k`, and
        the relative position bias is computed anew for the longer
        sequence there (layer 0 owns the bias table).
        """
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        if self.at_input(prompt):
            x = prompt(x, prompt_ids=prompt_ids)
            padding_mask = prompt.extend_mask(padding_mask, prompt_ids)
        x = backbone.encoder_embedding_dropout(x)

        def insert(x, mask):
            return (
                prompt(x, prompt_ids=prompt_ids),
                prompt.extend_mask(mask, prompt_ids),
            )

        layer_prompts = self.layer_prompts(prompt, prompt_ids, insert=insert)
        position_bias = None
        layers = backbone.encoder_transformer_layers
        for index, layer in enumerate(layers):
            x, padding_mask = layer_prompts(index, x, padding_mask)
            if layer_prompts.inserts_at(index):
                position_bias = RelativeBias(
                    layers[0].self_attention,
                    dtype=backbone.dtype_policy,
                    name="late_prompt_position_bias",
                )(x, padding_mask)
            x, position_bias = layer(
                x,
                attention_mask=padding_mask[:, None, :],
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


@keras.saving.register_keras_serializable(package="keras_prompt")
class RelativeBias(keras.layers.Layer):
    """T5's relative position bias for a whole (longer) sequence, the
    padding mask folded in, as the encoder's first layer computes it.

    A late prompt lengthens the sequence after layer 0, so the bias the
    first layer passed on no longer fits: this recomputes it from the
    first layer's attention (`compute_bias`), for the layers after the
    prompt enters.

    Args:
        attention: the first encoder layer's `T5MultiHeadAttention`.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        hidden_states: `(batch, T, dim)`, for the length `T`.
        padding_mask: `(batch, T)`.
    """

    def __init__(self, attention, **kwargs):
        super().__init__(**kwargs)
        self.attention = attention

    def call(self, hidden_states, padding_mask):
        length = ops.shape(hidden_states)[1]
        bias = self.attention.compute_bias(length, length)
        mask = ops.cast(padding_mask[:, None, None, :], bias.dtype)
        return bias + (1.0 - mask) * -1e9

    def compute_output_spec(self, hidden_states, padding_mask):
        shape = (
            hidden_states.shape[0],
            self.attention.num_heads,
            hidden_states.shape[1],
            hidden_states.shape[1],
        )
        return keras.KerasTensor(shape, dtype=self.compute_dtype)
