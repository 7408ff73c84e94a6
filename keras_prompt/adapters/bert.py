"""Encoder families: the prompt goes right after the first token ([CLS]).

`EncoderPromptAdapter` holds what BERT, RoBERTa and DistilBERT share; each
family has its own registered subclass (`BertAdapter` here, `RobertaAdapter`
in `roberta.py`, `DistilBertAdapter` in `distil_bert.py`, both through
`TokenAndPositionEncoderAdapter`).
"""

import keras
from keras import ops

from keras_prompt.adapters.base import PromptAdapter
from keras_prompt.adapters.base import register_adapter


def length_error(prompt_length, sequence_length, limit, backbone_name):
    """The `ValueError` for a prompt + sequence over the position limit."""
    return ValueError(
        f"prompt_length ({prompt_length}) + sequence_length "
        f"({sequence_length}) = {prompt_length + sequence_length} "
        f"exceeds the {limit} positions of this {backbone_name}. Shorten "
        "the prompt or the preprocessor's sequence_length."
    )


@keras.saving.register_keras_serializable(package="keras_prompt")
class SequenceLengthCheck(keras.layers.Layer):
    """Identity on the prompted embeddings that checks the position limit.

    Raises a `ValueError` as soon as the static length of the prompted
    sequence is known (eager calls, and traced functions of padded inputs)
    and exceeds `limit`, instead of an opaque slicing error deep inside the
    position embedding.

    Args:
        limit: int, the number of absolute positions of the backbone.
        prompt_length: int, prompt vectors in the sequence.
        backbone_name: str, shown in the error.
        **kwargs: other keyword arguments of `keras.layers.Layer`.

    Call arguments:
        inputs: float tensor `(batch, prompt_length + L, dim)`.
    """

    def __init__(self, limit, prompt_length, backbone_name, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit
        self.prompt_length = prompt_length
        self.backbone_name = backbone_name

    def call(self, inputs):
        length = inputs.shape[1]
        if length is not None and length > self.limit:
            raise length_error(
                self.prompt_length,
                length - self.prompt_length,
                self.limit,
                self.backbone_name,
            )
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "limit": self.limit,
                "prompt_length": self.prompt_length,
                "backbone_name": self.backbone_name,
            }
        )
        return config


def insert_after_first(sequence, inserted):
    """`sequence[:, :1] + inserted + sequence[:, 1:]` along axis 1."""
    return ops.concatenate([sequence[:, :1], inserted, sequence[:, 1:]], 1)


def prepend_after_first(x, prompt, prompt_ids=None):
    """`x[:, :1] + prompt + x[:, 1:]` along axis 1 (embedded tokens or
    hidden states)."""
    return ops.concatenate(
        [x[:, :1], prompt(x[:, 1:], prompt_ids=prompt_ids)], axis=1
    )


class EncoderPromptAdapter(PromptAdapter):
    """Shared logic of the BERT-like encoder families.

    The prompt enters right after the token embedding and is then treated
    exactly like embedded tokens: the family's absolute position embeddings
    (and segment embeddings) are added to it, then the embedding layer norm
    and dropout apply. A prompt equal to the embeddings of tokens `t1..tP`
    thus reproduces the plain backbone on `[CLS] t1..tP x1..xL`.

    The prompt is inserted after the first token, not before it, so the
    first token (`[CLS]` / `<s>`) keeps position 0: the pretrained position-0
    embedding stays on it, BERT's pooler (which reads position 0) and the
    keras-hub classifiers (which read the start token) keep working. The
    padding mask gets ones at the prompt positions, segment ids get `0`.
    Sequence outputs hold `1 + prompt_length + L` positions: `[CLS]`, then
    the prompt, then the tokens after `[CLS]`.
    """

    kind = "encoder"
    prompt_position = 1
    # No size facts: the memory planner models encoder-decoder and
    # decoder-only stacks.
    model_spec = None

    def max_sequence_length(self):
        return int(self.backbone.max_sequence_length)

    def prompt_positions(self, prompt_length):
        """The positions of the prompt in the sequence outputs."""
        return slice(self.prompt_position, self.prompt_position + prompt_length)

    # -- pieces -------------------------------------------------------------
    def check_static_length(self, token_ids, prompt):
        self.check_sequence_length(token_ids.shape[1], prompt.length)

    def insert_prompt(self, embedded, prompt, prompt_ids=None):
        """Embedded tokens `(batch, L, dim)` -> `(batch, P + L, dim)` with the
        prompt after the first position, checked against the limit."""
        prompted = prepend_after_first(embedded, prompt, prompt_ids)
        check = SequenceLengthCheck(
            self.max_sequence_length(),
            prompt.length,
            type(self.backbone).__name__,
            dtype=prompt.dtype_policy,
            name="prompt_length_check",
        )
        return check(prompted)

    def extend_padding_mask(self, padding_mask, prompt):
        """Ones at the prompt positions (after the first token)."""
        return ops.concatenate(
            [padding_mask[:, :1], prompt.extend_mask(padding_mask[:, 1:])],
            axis=1,
        )

    def extend_segment_ids(self, segment_ids, prompt):
        """Segment `0` at the prompt positions (after the first token)."""
        zeros = ops.repeat(ops.zeros_like(segment_ids[:, :1]), prompt.length, 1)
        return insert_after_first(segment_ids, zeros)

    def insert_hidden(self, prompt, prompt_ids=None):
        """`insert(x, mask)` for a late prompt: after the first position
        of the hidden states, the mask extended with it."""

        def insert(x, padding_mask):
            x = prepend_after_first(x, prompt, prompt_ids)
            return x, self.extend_padding_mask(padding_mask, prompt)

        return insert

    def encode(self, x, padding_mask, prompt, prompt_ids=None):
        """Embedding layer norm, dropout and the transformer layers (a
        late prompt inserted, deep prompts replaced, before each layer as
        `LayerPrompts` says)."""
        backbone = self.backbone
        x = backbone.embeddings_layer_norm(x)
        x = backbone.embeddings_dropout(x)
        layer_prompts = self.layer_prompts(
            prompt,
            prompt_ids,
            offsets=self.prompt_position,
            insert=self.insert_hidden(prompt, prompt_ids),
        )
        for index, layer in enumerate(backbone.transformer_layers):
            x, padding_mask = layer_prompts(index, x, padding_mask)
            x = layer(x, padding_mask=padding_mask)
        return x


class TokenAndPositionEncoderAdapter(EncoderPromptAdapter):
    """An encoder embedding `token + position` with one `embeddings` layer.

    keras-hub's RoBERTa and DistilBERT backbones embed through a
    `TokenAndPositionEmbedding` (no segment embeddings), apply layer norm
    and dropout and run the encoder; their output is the sequence output
    alone (no pooler). The prompt replaces token embeddings right after
    the first token (see `EncoderPromptAdapter`), which keeps position 0;
    the output is the sequence output with `1 + P + L` positions, as the
    backbone's. `prompt_length + sequence_length` must not exceed the
    backbone's `max_sequence_length`.
    """

    def forward(self, inputs, prompt, prompt_ids=None):
        embeddings = self.backbone.embeddings
        token_ids = inputs["token_ids"]
        tokens = embeddings.token_embedding(token_ids)
        padding_mask = inputs["padding_mask"]
        if self.at_input(prompt):
            self.check_static_length(token_ids, prompt)
            tokens = self.insert_prompt(tokens, prompt, prompt_ids)
            padding_mask = self.extend_padding_mask(padding_mask, prompt)
        x = ops.add(tokens, embeddings.position_embedding(tokens))
        return self.encode(x, padding_mask, prompt, prompt_ids)


@register_adapter
class BertAdapter(EncoderPromptAdapter):
    """BERT (and BERT-architecture models such as MiniLM).

    keras-hub's `BertBackbone` embeds `token + position + segment`, applies
    layer norm and dropout, runs the encoder and pools position 0 through a
    dense `tanh` layer. Here the prompt replaces token embeddings right after
    `[CLS]` (see `EncoderPromptAdapter`): it gets the position embeddings of
    positions `1..P` and segment `0`, so `[CLS]` stays at position 0 and
    `pooled_output` still pools `[CLS]`. Outputs: `sequence_output`
    (`1 + P + L` positions) and `pooled_output`, as the backbone.

    `prompt_length + sequence_length` must not exceed the backbone's
    `max_sequence_length` (512 for the original BERTs).
    """

    family = "bert"
    backbone_classes = ("BertBackbone",)

    def forward(self, inputs, prompt, prompt_ids=None):
        backbone = self.backbone
        token_ids = inputs["token_ids"]
        tokens = backbone.token_embedding(token_ids)
        segment_ids = inputs["segment_ids"]
        padding_mask = inputs["padding_mask"]
        if self.at_input(prompt):
            self.check_static_length(token_ids, prompt)
            tokens = self.insert_prompt(tokens, prompt, prompt_ids)
            segment_ids = self.extend_segment_ids(segment_ids, prompt)
            padding_mask = self.extend_padding_mask(padding_mask, prompt)
        positions = backbone.position_embedding(tokens)
        segments = backbone.segment_embedding(segment_ids)
        x = backbone.embeddings_add((tokens, positions, segments))
        x = self.encode(x, padding_mask, prompt, prompt_ids)
        pooled = backbone.pooled_dense(x[:, backbone.cls_token_index, :])
        return {"sequence_output": x, "pooled_output": pooled}
