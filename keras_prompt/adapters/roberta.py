from keras_prompt.adapters.base import register_adapter
from keras_prompt.adapters.bert import TokenAndPositionEncoderAdapter


@register_adapter
class RobertaAdapter(TokenAndPositionEncoderAdapter):
    """RoBERTa (and XLM-RoBERTa, whose keras-hub backbone subclasses it).

    keras-hub's `RobertaBackbone` embeds `token + position` in one
    `TokenAndPositionEmbedding` with positions from 0; see
    `TokenAndPositionEncoderAdapter`. The prompt goes right after `<s>`,
    which stays at position 0, where keras-hub's `RobertaTextClassifier`
    reads it. The released RoBERTa models have 512 positions for the
    prompt and the tokens.
    """

    family = "roberta"
    backbone_classes = ("RobertaBackbone",)
