from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.bert import TokenAndPositionEncoderAdapter


@register_adapter
class DistilBertAdapter(TokenAndPositionEncoderAdapter):
    """DistilBERT.

    keras-hub's `DistilBertBackbone` embeds `token + position`, without
    segment embeddings, and has no pooler; see
    `TokenAndPositionEncoderAdapter`. `[CLS]` stays at position 0, where
    keras-hub's `DistilBertTextClassifier` reads it. The released
    DistilBERT models have 512 positions for the prompt and the tokens.
    """

    family = "distil_bert"
    backbone_classes = ("DistilBertBackbone",)
