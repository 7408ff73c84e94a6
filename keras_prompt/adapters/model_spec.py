"""The shape of a transformer as the memory planner sees it.

`ModelSpec` holds the few numbers `keras_prompt.distribute.plan` needs.
Each adapter reads its family's keras-hub backbone config into one
(`PromptAdapter.model_spec`); `decoder_spec` is the reader the decoder-only
families share.
"""

import dataclasses

from keras_prompt.validation import check_positive_int

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
# Whether each `ModelSpec.family` runs a decoder stack next to an encoder
# (and so reads target sequences) or is decoder-only.
ENCODER_DECODER = {"t5": True, "decoder": False}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The shape of a transformer, as far as memory is concerned.

    Args:
        name: str, a label.
        family: `"t5"` (encoder-decoder) or `"decoder"` (decoder-only);
            sets the `encoder_decoder` property the planner reads.
        vocabulary_size: int.
        hidden_dim: int, the model width `h`.
        num_layers: int, transformer blocks (the encoder's for T5).
        num_heads: int, query heads `a`.
        head_dim: int, width of one head `d_k` (`a * d_k` is the attention
            width, which T5 XL/XXL make different from `h`).
        intermediate_dim: int, the feed-forward width `f` of one branch
            (for a gated MLP each of the two input projections has `f`).
        gated: bool, gated feed-forward (GEGLU / SwiGLU: three matrices).
        num_decoder_layers: int, T5 decoder blocks (defaults to
            `num_layers`; unused for decoder-only models).
        num_kv_heads: int, key/value heads (grouped-query attention);
            defaults to `num_heads`.
        tied_embeddings: bool, whether the output projection reuses the
            token embedding.
        max_positions: int, learned absolute positions (GPT-2) or 0.
        activation: the feed-forward activation as implemented:
            `"relu"`, `"gelu"` (exact, erf), `"gelu_tanh"` (tanh
            approximation) or `"silu"`; sets how many feed-forward tensors
            the backward pass keeps (see `planner`).
        score_tensors: int, tensors of the attention scores' size kept per
            layer (`1` for keras-hub T5 and GPT-2 attention; `2` for the
            Gemma / Llama-style attention, measured by
            `benchmarks/planner_accuracy.py`).
    """

    name: str
    family: str
    vocabulary_size: int
    hidden_dim: int
    num_layers: int
    num_heads: int
    head_dim: int
    intermediate_dim: int
    gated: bool = True
    num_decoder_layers: int = None
    num_kv_heads: int = None
    tied_embeddings: bool = False
    max_positions: int = 0
    activation: str = "gelu"
    score_tensors: int = 1

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {ACTIVATIONS}. "
                f"Received: activation={self.activation!r}"
            )
        if self.family not in ENCODER_DECODER:
            raise ValueError(
                "`family` must be 't5' or 'decoder'. "
                f"Received: family={self.family!r}"
            )
        for field in (
            "vocabulary_size",
            "hidden_dim",
            "num_layers",
            "num_heads",
            "head_dim",
            "intermediate_dim",
            "score_tensors",
        ):
            check_positive_int(field, getattr(self, field))
        if self.num_decoder_layers is None:
            object.__setattr__(self, "num_decoder_layers", self.num_layers)
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)

    @property
    def encoder_decoder(self):
        """Whether the model is encoder-decoder (T5): a decoder stack with
        cross-attention reads target sequences next to the encoder."""
        return ENCODER_DECODER[self.family]

    @property
    def attention_dim(self):
        """`a * d_k`, the width of queries, keys and values."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self):
        return self.num_kv_heads * self.head_dim

    def _mlp_params(self):
        matrices = 3 if self.gated else 2
        return matrices * self.hidden_dim * self.intermediate_dim

    def num_parameters(self):
        """Weights of the model (biases other than GPT-2's are ignored)."""
        h, v = self.hidden_dim, self.vocabulary_size
        embeddings = v * h * (1 if self.tied_embeddings else 2)
        if self.encoder_decoder:
            attention = 4 * h * self.attention_dim
            encoder = self.num_layers * (attention + self._mlp_params() + 2 * h)
            decoder = self.num_decoder_layers * (
                2 * attention + self._mlp_params() + 3 * h
            )
            # Relative position buckets (32) of the first layer of each
            # stack, and the two final norms.
            extra = 2 * 32 * self.num_heads + 2 * h
            return embeddings + encoder + decoder + extra
        attention = 2 * h * self.attention_dim + 2 * h * self.kv_dim
        layer = attention + self._mlp_params() + 2 * h
        if self.max_positions:  # GPT-2: biases and learned positions.
            layer += 4 * h + 3 * self.attention_dim + self.intermediate_dim
            embeddings += self.max_positions * h + h
        return embeddings + self.num_layers * layer + h

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(
        cls, config, name, family, head_dim_key="head_dim", branches=1, **fields
    ):
        """A spec from the sizes every keras-hub transformer config names.

        Args:
            config: dict, a keras-hub backbone's config.
            name: str, the spec's name.
            family: `"t5"` or `"decoder"`.
            head_dim_key: str, the config key of the head width (when
                absent, `hidden_dim // heads`).
            branches: int, gated branches `intermediate_dim` holds
                together.
            **fields: the other `ModelSpec` fields.

        Returns:
            A `ModelSpec`. A size the config lacks is a `TypeError`.
        """
        get = config.get
        h = get("hidden_dim")
        heads = get("num_heads") or get("num_query_heads")
        intermediate = get("intermediate_dim")
        if branches > 1:
            intermediate //= branches
        return cls(
            name=name,
            family=family,
            vocabulary_size=get("vocabulary_size"),
            hidden_dim=h,
            num_layers=get("num_layers"),
            num_heads=heads,
            head_dim=get(head_dim_key) or h // heads,
            intermediate_dim=intermediate,
            **fields,
        )


def decoder_spec(
    config,
    name,
    activation,
    score_tensors,
    gated=True,
    branches=1,
    tied=False,
    positions=False,
):
    """Reads a keras-hub decoder-only backbone config into a `ModelSpec`.

    Args:
        config: dict, the backbone's config.
        name: str, the spec's name.
        activation: str, the feed-forward activation as the family
            implements it (see `ModelSpec`).
        score_tensors: int, tensors of the attention scores' size kept per
            layer (see `ModelSpec`).
        gated: bool, gated feed-forward.
        branches: int, gated branches `intermediate_dim` holds together.
        tied: bool, whether embeddings are tied when the config does not
            say.
        positions: bool, learned absolute positions (`max_sequence_length`
            of them); such a model (GPT-2) always ties its embeddings.

    Returns:
        A `ModelSpec` of family `"decoder"`. A size the config lacks is a
        `TypeError`.
    """
    get = config.get
    return ModelSpec.from_config(
        config,
        name,
        "decoder",
        branches=branches,
        gated=gated,
        num_kv_heads=get("num_key_value_heads"),
        tied_embeddings=bool(get("tie_word_embeddings", tied) or positions),
        max_positions=get("max_sequence_length", 0) if positions else 0,
        activation=activation,
        score_tensors=score_tensors,
    )
