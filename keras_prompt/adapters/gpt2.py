from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.decoder import DecoderAdapter
from keras_prompt.adapters.decoder import with_example
from keras_prompt.adapters.model_spec import decoder_spec


@register_adapter
@with_example("gpt2", "GPT2Backbone", num_heads=2, max_sequence_length=32)
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
    """

    family = "gpt2"
    backbone_classes = ("GPT2Backbone",)

    @classmethod
    def model_spec(cls, config, name):
        """A plain (not gated) tanh-GELU MLP, one score tensor per layer,
        learned positions and tied embeddings."""
        return decoder_spec(
            config,
            name,
            activation="gelu_tanh",
            score_tensors=1,
            gated=False,
            positions=True,
        )

    def max_sequence_length(self):
        return self.backbone.max_sequence_length

    def finish_embedding(self, x, start_index=0):
        backbone = self.backbone
        positions = backbone.position_embedding(x, start_index=start_index)
        x = backbone.embeddings_add((x, positions))
        return backbone.embeddings_dropout(x)

    def cache_heads(self):
        backbone = self.backbone
        return backbone.num_heads, backbone.hidden_dim // backbone.num_heads
