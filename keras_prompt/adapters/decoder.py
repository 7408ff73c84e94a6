"""What every decoder-only (causal) adapter shares.

A decoder-only backbone takes `token_ids` and `padding_mask`. Its adapter
embeds the tokens, inserts the prompt, then lets the family finish the
embedding (scaling, absolute positions) and run its transformer layers.

Where the prompt goes: immediately before the first real token. With right
padding (what keras-hub's `CausalLMPreprocessor`s produce) that is the
start of the sequence, `[p1..pP, x1..xn, pad..]`. With left padding it is
after the pads, `[pad.., p1..pP, x1..xn]`, so the prompt stays next to the
text as with right padding, and a prompt holding the embeddings of tokens
`t1..tP` gives exactly what the plain backbone gives on the row with
`t1..tP` inserted at the same place (and ones inserted in its mask). The
padding mask is extended with ones at the prompt positions.

Generation keeps the prompt in the key/value cache: the prefill pass runs
`[prompt, tokens]` through the layers once, and every later token is
written at `prompt_length + index`, so positions (absolute or rotary)
continue after the prompt. Generation inputs must be right-padded, as
keras-hub's samplers require.

Deep prompts: before each decoder layer after the first, the hidden states
at each row's prompt positions are replaced by that layer's prompt, in the
forward pass and in the prefill pass, so the cached keys and values of the
prompt positions come from the deep prompts and later cached steps need
nothing more.
"""

import textwrap

import keras
import numpy as np
from keras import ops

from keras_prompt.adapters.base import PromptAdapter

_EXAMPLE = """
    Example:

    ```python
    import keras_hub
    import numpy as np
    import keras_prompt

    {name} = keras_hub.models.{backbone_class}(
{arguments}
    )
    backbone = keras_prompt.FrozenBackbone({name}, prompt_length=4)
    hidden = backbone({{
        "token_ids": np.ones((2, 6), "int32"),
        "padding_mask": np.ones((2, 6), "int32"),
    }})  # (2, 10, 16): 4 prompt and 6 token positions
    ```
    """


# The sizes every example backbone shares, and the grouped-query heads of
# those that have them.
_TINY = dict(
    vocabulary_size=50, num_layers=2, hidden_dim=16, intermediate_dim=32
)
EXAMPLE_HEADS = dict(num_query_heads=2, num_key_value_heads=1)


def with_example(name, backbone_class, **config):
    """Class decorator ending a decoder adapter's docstring with an example.

    The example builds a tiny `keras_hub.models.<backbone_class>` (50
    tokens, 2 layers, width 16, `intermediate_dim=32`, and `config`)
    called `name`, wraps it in a `FrozenBackbone` with a 4-vector prompt
    and runs it on two rows of 6 tokens.

    Args:
        name: str, the variable holding the plain backbone.
        backbone_class: str, the keras-hub backbone class.
        **config: the family's other constructor arguments (heads, ...).
    """
    config = {**_TINY, **config}
    arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    indent = " " * 8
    arguments = "\n".join(
        textwrap.wrap(
            arguments + ",",
            width=72,
            initial_indent=indent,
            subsequent_indent=indent,
        )
    )

    def decorate(cls):
        cls.__doc__ = (
            cls.__doc__.rstrip()
            + "\n"
            + _EXAMPLE.format(
                name=name, backbone_class=backbone_class, arguments=arguments
            )
        )
        return cls

    return decorate


def _leading_padding(padding_mask):
    """Number of padded positions before the first real token, `(batch,)`.

    A row without any real token counts all its positions.
    """
    mask = ops.cast(padding_mask, "int32")
    seen = ops.cumsum(mask, axis=1)
    return ops.sum(ops.cast(ops.equal(seen, 0), "int32"), axis=1)


@keras.saving.register_keras_serializable(package="keras_prompt")
class _PlacePrompt(keras.layers.Layer):
    """Moves a prepended prompt to just before each row's first real token.

    Takes the output of `PromptEmbedding` (prompt first), its extended mask
    and the original padding mask, and returns both reordered so that in
    each row the leading padding comes first, then the prompt, then the
    tokens. Rows without leading padding are unchanged. With
    `max_sequence_length`, a statically known prompted length beyond it
    raises a `ValueError` before the transformer runs.
    """

    def __init__(self, max_sequence_length=None, backbone_name=None, **kwargs):
        super().__init__(**kwargs)
        self.max_sequence_length = max_sequence_length
        self.backbone_name = backbone_name

    def check_length(self, prompted_length, sequence_length):
        limit = self.max_sequence_length
        if limit is None or prompted_length is None or sequence_length is None:
            return
        if prompted_length > limit:
            prompt_length = prompted_length - sequence_length
            raise ValueError(
                f"prompt_length ({prompt_length}) + sequence_length "
                f"({sequence_length}) = {prompted_length} exceeds the "
                f"{limit} positions of this {self.backbone_name}. Shorten "
                "the prompt or the preprocessor's sequence_length."
            )

    def call(self, prompted, extended_mask, padding_mask):
        self.check_length(prompted.shape[1], padding_mask.shape[1])
        total = ops.shape(prompted)[1]
        prompt_length = total - ops.shape(padding_mask)[1]
        leading = ops.expand_dims(_leading_padding(padding_mask), 1)
        positions = ops.expand_dims(ops.arange(total, dtype="int32"), 0)
        # Position j of the result reads position `source` of the input,
        # whose first `prompt_length` positions are the prompt.
        source = ops.where(
            positions < leading,
            positions + prompt_length,
            ops.where(
                positions < leading + prompt_length,
                positions - leading,
                positions,
            ),
        )
        x = ops.take_along_axis(prompted, ops.expand_dims(source, -1), axis=1)
        mask = ops.take_along_axis(extended_mask, source, axis=1)
        return x, mask

    def compute_output_spec(self, prompted, extended_mask, padding_mask):
        self.check_length(prompted.shape[1], padding_mask.shape[1])
        return (
            keras.KerasTensor(prompted.shape, dtype=prompted.dtype),
            keras.KerasTensor(extended_mask.shape, dtype=extended_mask.dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_sequence_length": self.max_sequence_length,
                "backbone_name": self.backbone_name,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_prompt")
class _DropPrompt(keras.layers.Layer):
    """Removes the prompt positions placed by `_PlacePrompt`.

    `(batch, prompt_length + L, ...)` -> `(batch, L, ...)`: the result is
    aligned with the original tokens (and so with a causal LM's labels).
    """

    def call(self, sequence, padding_mask):
        length = ops.shape(padding_mask)[1]
        prompt_length = ops.shape(sequence)[1] - length
        leading = ops.expand_dims(_leading_padding(padding_mask), 1)
        positions = ops.expand_dims(ops.arange(length, dtype="int32"), 0)
        source = ops.where(
            positions < leading, positions, positions + prompt_length
        )
        if len(sequence.shape) == 3:
            source = ops.expand_dims(source, -1)
        return ops.take_along_axis(sequence, source, axis=1)

    def compute_output_spec(self, sequence, padding_mask):
        shape = (sequence.shape[0], padding_mask.shape[1]) + tuple(
            sequence.shape[2:]
        )
        return keras.KerasTensor(shape, dtype=sequence.dtype)


class DecoderAdapter(PromptAdapter):
    """Base of the decoder-only adapters (`kind = "causal"`).

    Subclasses name their decoder layers' arguments
    (`padding_mask_argument`, `cache_argument`, `cache_index_argument`;
    keras-hub's GPT-2 / Llama names by default) and, when the family needs
    them, override `finish_embedding` (embedding scale, absolute
    positions), `transformer`, `transformer_with_cache`, `cache_heads` and
    `init_cache`. Everything about the prompt (placement with left
    padding, mask extension, removal, the prompt in the generation cache)
    is shared here.

    The interface a causal task uses (no family branches):

    - `forward(inputs, prompt, prompt_ids)`: the prompted backbone; the
      sequence output has `prompt_length + L` positions.
    - `remove_prompt(sequence, padding_mask)`: back to the `L` token
      positions, aligned with the preprocessor's labels.
    - `logits(hidden_states)`: the language-model head.
    - `init_cache(batch_size, length, dtype)`: an empty key/value cache.
    - `call_with_cache(token_ids, cache, cache_update_index, prompt=None,
      prompt_ids=None, padding_mask=None)`: one cached pass; with `prompt`
      it is the prefill (the prompt enters the cache), else
      `cache_update_index` counts prompt positions too.
    """

    kind = "causal"
    prompt_position = "before_first_token"
    # Causal attention: the prompt, before the text, never reads it.
    prompt_sees_text = False
    # The keyword arguments of the family's decoder layer.
    padding_mask_argument = "decoder_padding_mask"
    cache_argument = "self_attention_cache"
    cache_index_argument = "self_attention_cache_update_index"

    def __init__(self, backbone):
        super().__init__(backbone)
        self.place_prompt = _PlacePrompt(
            max_sequence_length=self.max_sequence_length(),
            backbone_name=type(backbone).__name__,
            name="place_prompt",
        )
        self.drop_prompt = _DropPrompt(name="drop_prompt")

    # -- family hooks ---------------------------------------------------------
    def embed_tokens(self, token_ids):
        """Token embeddings, in the table's space (where prompts live)."""
        return self.backbone.token_embedding(token_ids)

    def finish_embedding(self, x, start_index=0):
        """What the family does between the token lookup and the first
        layer (scaling, absolute positions, dropout); `x` includes the
        prompt and starts at position `start_index`."""
        return x

    def transformer(self, x, padding_mask, layer_prompts):
        """The transformer layers without cache; `layer_prompts(index, x,
        mask)` (a `LayerPrompts`) runs before each."""
        for index, layer in enumerate(self.backbone.transformer_layers):
            x, padding_mask = layer_prompts(index, x, padding_mask)
            x = layer(x, **{self.padding_mask_argument: padding_mask})
        return x

    def transformer_with_cache(
        self, x, cache, cache_update_index, layer_prompts, padding_mask=None
    ):
        """The transformer layers with a cache; returns `(x, cache)`.
        `cache_update_index` is a function of the layer index (see
        `cache_indices`)."""

        def call(index, layer, x, layer_cache, mask):
            return layer(
                x,
                **{
                    self.cache_argument: layer_cache,
                    self.cache_index_argument: cache_update_index(index),
                },
            )

        return self.stacked_cache_pass(
            x, cache, call, layer_prompts, padding_mask
        )

    def cache_heads(self):
        """`(num_key_value_heads, head_dim)` of the attention cache."""
        backbone = self.backbone
        num_heads = getattr(backbone, "num_key_value_heads", None) or getattr(
            backbone, "num_heads"
        )
        head_dim = getattr(backbone, "head_dim", None) or (
            backbone.hidden_dim
            // (getattr(backbone, "num_query_heads", None) or num_heads)
        )
        return num_heads, head_dim

    def init_cache(self, batch_size, length, dtype):
        """Zeros `(batch, num_layers, 2, length, heads, head_dim)`."""
        num_heads, head_dim = self.cache_heads()
        shape = [
            batch_size,
            self.backbone.num_layers,
            2,
            length,
            num_heads,
            head_dim,
        ]
        return ops.zeros(shape, dtype=dtype)

    # -- shared ---------------------------------------------------------------
    def probe_inputs(self, batch_size):
        # A real token after the prompt: causal attention keeps it out of
        # the prompt positions, which stay at the start of the sequence.
        inputs = super().probe_inputs(batch_size)
        inputs["padding_mask"] = np.ones_like(inputs["padding_mask"])
        return inputs

    def deep_layer_prompts(self, prompt, prompt_ids, padding_mask):
        """`layer_prompts` at each row's prompt positions (after its
        leading padding); a late prompt is placed there too."""
        if prompt is None:
            return self.layer_prompts(None)

        def insert(x, mask):
            return self.insert_prompt(x, mask, prompt, prompt_ids)

        offsets = _leading_padding(padding_mask) if prompt.deep else 0
        return self.layer_prompts(prompt, prompt_ids, offsets, insert)

    def insert_prompt(self, x, padding_mask, prompt, prompt_ids=None):
        """Inserts the prompt before each row's first real token.

        Returns the prompted embeddings and the extended padding mask, both
        `prompt_length` positions longer.
        """
        prompted = prompt(x, prompt_ids=prompt_ids)
        extended_mask = prompt.extend_mask(padding_mask)
        return self.place_prompt(prompted, extended_mask, padding_mask)

    def remove_prompt(self, sequence, padding_mask):
        """Drops the prompt positions of a prompted sequence output."""
        return self.drop_prompt(sequence, padding_mask)

    def forward(self, inputs, prompt, prompt_ids=None):
        padding_mask = inputs["padding_mask"]
        before_layer = self.deep_layer_prompts(prompt, prompt_ids, padding_mask)
        x = self.embed_tokens(inputs["token_ids"])
        if self.at_input(prompt):
            x, padding_mask = self.insert_prompt(
                x, padding_mask, prompt, prompt_ids
            )
        x = self.finish_embedding(x)
        x = self.transformer(x, padding_mask, before_layer)
        return self.backbone.layer_norm(x)

    def logits(self, hidden_states):
        return self.backbone.token_embedding(hidden_states, reverse=True)

    def call_with_cache(
        self,
        token_ids,
        cache,
        cache_update_index,
        prompt=None,
        prompt_ids=None,
        padding_mask=None,
    ):
        """One cached forward pass; returns `(logits, hidden, cache)`.

        Args:
            token_ids: int tensor `(batch, n)`.
            cache: the cache from `init_cache`, `prompt_length` positions
                longer than the token sequence.
            cache_update_index: where the first position of this pass goes
                in the cache (prompt positions included).
            prompt: the `PromptEmbedding` for the prefill pass, which puts
                the prompt in the cache; `None` for later tokens.
            prompt_ids: the bank's ids `(batch,)` in the prefill pass.
            padding_mask: the tokens' padding mask in the prefill pass.

        The returned logits and hidden states include the prompt positions
        in the prefill pass.
        """
        x = self.embed_tokens(token_ids)
        layer_prompts = self.deep_layer_prompts(None, None, None)
        if prompt is not None:
            # The prefill: the prompt enters the cache.
            self.late_prompt = (prompt.start_layer, prompt.length)
            if padding_mask is None:
                padding_mask = ops.ones_like(token_ids, dtype="bool")
            layer_prompts = self.deep_layer_prompts(
                prompt, prompt_ids, padding_mask
            )
            if self.at_input(prompt):
                x, padding_mask = self.insert_prompt(
                    x, padding_mask, prompt, prompt_ids
                )
        indices = self.cache_indices(cache_update_index, prompt is not None)
        x = self.finish_embedding(x, start_index=indices(-1))
        x, cache = self.transformer_with_cache(
            x, cache, indices, layer_prompts, padding_mask
        )
        hidden_states = self.backbone.layer_norm(x)
        return self.logits(hidden_states), hidden_states, cache

    def cache_indices(self, cache_update_index, prefill):
        """`index(layer)`: where a pass's first position goes in layer
        `layer`'s cache (`-1`: the embedding's position).

        `cache_update_index` counts the prompt positions. A late prompt
        (`start_layer = k > 0`) is not in the caches of layers below `k`
        nor in the embedding's positions, so after the prefill these
        write `prompt_length` positions earlier (the rest of their caches
        stays empty and causally masked).
        """
        start, length = getattr(self, "late_prompt", (0, 0))
        if prefill or start == 0:
            return lambda layer: cache_update_index
        return lambda layer: (
            cache_update_index - length if layer < start else cache_update_index
        )

    def stacked_cache_pass(
        self, x, cache, call, layer_prompts, padding_mask=None
    ):
        """Runs each layer on its slice of a stacked cache.

        `call(index, layer, x, layer_cache, mask)` returns
        `(x, layer_cache)`; `layer_prompts(index, x, mask)` runs before
        each layer.
        """
        caches = []
        for i, layer in enumerate(self.backbone.transformer_layers):
            x, padding_mask = layer_prompts(i, x, padding_mask)
            x, layer_cache = call(i, layer, x, cache[:, i, ...], padding_mask)
            caches.append(layer_cache)
        return x, ops.stack(caches, axis=1)
