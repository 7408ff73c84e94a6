from keras import ops

from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.bert import EncoderPromptAdapter


@register_adapter
class DistilBertAdapter(EncoderPromptAdapter):
    """DistilBERT.

    keras-hub's `DistilBertBackbone` embeds `token + position` (no segment
    embeddings), applies layer norm and dropout and runs the encoder; its
    output is the sequence output alone (no pooler). The prompt replaces
    token embeddings right after `[CLS]` (see `EncoderPromptAdapter`), so
    `[CLS]` stays at position 0, where keras-hub's
    `DistilBertTextClassifier` reads it. The output is the sequence output
    with `1 + P + L` positions, as the backbone's.

    `prompt_length + sequence_length` must not exceed the backbone's
    `max_sequence_length` (512 for the released DistilBERT models).
    """

    family = "distil_bert"
    backbone_classes = ("DistilBertBackbone",)

    def forward(self, inputs, prompt, prompt_ids=None):
        embeddings = self.backbone.embeddings
        token_ids = inputs["token_ids"]
        self.check_static_length(token_ids, prompt)
        tokens = embeddings.token_embedding(token_ids)
        tokens = self.insert_prompt(tokens, prompt, prompt_ids)
        x = ops.add(tokens, embeddings.position_embedding(tokens))
        padding_mask = self.extend_padding_mask(inputs["padding_mask"], prompt)
        return self.encode(x, padding_mask)
