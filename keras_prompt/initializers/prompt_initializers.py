"""Prompt initialisers from the paper (Lester et al., 2021, section 3.2).

All of them are serialisable Keras initialisers and none downloads anything.
Those that read the frozen vocabulary (`SampledVocab`, `ClassLabel`,
`FromTokens`) take the backbone, its embedding layer or its embedding matrix;
used through `FrozenBackbone` they may also be left unbound and are bound to
the wrapped backbone's token embedding table automatically. Only small,
JSON-friendly facts (token ids, `top_k`, the seed) enter their config: the
table itself is never serialised.
"""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_prompt")
class RandomUniform(keras.initializers.RandomUniform):
    """Uniform initialisation on `[-0.5, 0.5]`, the paper's range.

    The paper states `[-0.5, 0.5]`; note that the official prompt-tuning
    code drew from `[0, 0.5)`. Pass `minval=0.0` to reproduce the latter.

    Args:
        minval: float, lower bound. Defaults to `-0.5`.
        maxval: float, upper bound. Defaults to `0.5`.
        seed: optional int seed.

    Example:

    ```python
    init = keras_prompt.initializers.RandomUniform(seed=1)
    values = init((20, 512))
    ```
    """

    def __init__(self, minval=-0.5, maxval=0.5, seed=None):
        super().__init__(minval=minval, maxval=maxval, seed=seed)


def embedding_table(source):
    """Returns the token embedding matrix `(vocab, dim)` of `source`.

    `source` may be a keras-hub backbone (or a `FrozenBackbone`), a task
    with a `backbone`, an embedding layer, a variable or an array.
    """
    if source is None:
        return None
    if hasattr(source, "backbone") and not hasattr(source, "embeddings"):
        source = source.backbone
    if hasattr(source, "token_embedding"):
        source = source.token_embedding
    if isinstance(source, keras.layers.Layer):
        if not hasattr(source, "embeddings"):
            raise TypeError(
                "Expected an embedding layer with an `embeddings` matrix. "
                f"Received: {source!r}"
            )
        source = source.embeddings
    shape = tuple(source.shape)
    if len(shape) != 2:
        raise ValueError(
            "The embedding matrix must have shape (vocabulary, dim). "
            f"Received: shape={shape}"
        )
    return source


class EmbeddingInitializer(keras.initializers.Initializer):
    """Base class of initialisers that read the frozen embedding table."""

    def __init__(self, embeddings=None):
        self._table = embedding_table(embeddings)

    def bind(self, embeddings):
        """Binds the table to use when none was given; returns `self`."""
        if self._table is None:
            self._table = embedding_table(embeddings)
        return self

    @property
    def table(self):
        if self._table is None:
            raise ValueError(
                f"`{type(self).__name__}` needs the frozen token embedding "
                "table. Pass the backbone (or its embedding matrix) as "
                "`embeddings=`, or use the initialiser through "
                "`FrozenBackbone`, which binds it to the wrapped backbone."
            )
        return self._table

    def rows(self, ids):
        """Embedding rows for `ids` as a float32 tensor."""
        ids = np.asarray(ids, dtype="int32")
        vocab = self.table.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(
                f"Token ids must be in [0, {vocab}). "
                f"Received: ids={ids.tolist()}"
            )
        return ops.cast(ops.take(self.table, ids, axis=0), "float32")

    def _fill(self, shape, dtype, make_prompt):
        """Calls `make_prompt(index, length, dim)` for each prompt."""
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            raise ValueError(
                "Prompt initialisers need a shape (length, dim) or "
                f"(num_prompts, length, dim). Received: shape={shape}"
            )
        length, dim = shape[-2], shape[-1]
        if dim != self.table.shape[-1]:
            raise ValueError(
                f"The prompt width {dim} differs from the embedding width "
                f"{self.table.shape[-1]} of the table this initialiser "
                f"reads. Received: shape={shape}"
            )
        count = math.prod(shape[:-2])
        prompts = [make_prompt(i, length, dim) for i in range(count)]
        values = ops.stack(prompts, axis=0)
        return ops.cast(ops.reshape(values, shape), dtype or "float32")


def _sample_ids(top_k, count, length, seed):
    """Distinct ids in [0, top_k) for each of `count` prompts."""
    if length > top_k:
        raise ValueError(
            f"Cannot sample {length} distinct tokens from the first {top_k} "
            "rows of the vocabulary. Use a larger `top_k` or a shorter "
            f"prompt. Received: top_k={top_k}, length={length}"
        )
    rng = np.random.default_rng(seed)
    return [rng.choice(top_k, size=length, replace=False) for _ in range(count)]


@keras.saving.register_keras_serializable(package="keras_prompt")
class SampledVocab(EmbeddingInitializer):
    """Prompt rows sampled from the most common vocabulary embeddings.

    Each prompt position is the embedding of a token drawn without
    replacement from the first `top_k` rows of the frozen embedding table
    (SentencePiece vocabularies are ordered by frequency, so these are the
    most common tokens; the paper uses 5,000). Each prompt of a bank gets
    its own sample.

    Args:
        embeddings: the backbone, its embedding layer or matrix, or `None`
            to be bound by `FrozenBackbone`.
        top_k: int, how many leading vocabulary rows to sample from.
        seed: optional int seed; the same seed gives the same tokens.

    Example:

    ```python
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=100, num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16,
    )
    init = keras_prompt.initializers.SampledVocab(backbone, top_k=50, seed=0)
    prompt = init((4, 8))
    ```
    """

    def __init__(self, embeddings=None, top_k=5000, seed=None):
        super().__init__(embeddings)
        if top_k < 1:
            raise ValueError(f"`top_k` must be >= 1. Received: top_k={top_k}")
        self.top_k = int(top_k)
        self.seed = seed

    def sampled_ids(self, length, count=1):
        top_k = min(self.top_k, self.table.shape[0])
        return _sample_ids(top_k, count, length, self.seed)

    def __call__(self, shape, dtype=None):
        count = math.prod(tuple(shape)[:-2])
        ids = self.sampled_ids(int(shape[-2]), count)
        return self._fill(shape, dtype, lambda i, n, d: self.rows(ids[i]))

    def get_config(self):
        return {"top_k": self.top_k, "seed": self.seed}


def _token_ids(tokenizer, text):
    ids = tokenizer(text)
    ids = np.asarray(ops.convert_to_numpy(ids)).reshape(-1).tolist()
    return [int(i) for i in ids]


@keras.saving.register_keras_serializable(package="keras_prompt")
class ClassLabel(EmbeddingInitializer):
    """Prompt positions initialised to the embeddings of the class labels.

    Position `i` is the mean embedding of the tokens of label `i` (labels
    that split into several tokens are averaged, as in the paper); the
    positions beyond the labels are filled as `SampledVocab` does. With
    more labels than positions, the first `length` labels are used.

    Args:
        labels: list of label strings (e.g. `["negative", "positive"]`).
        tokenizer: a keras-hub tokenizer used to split the labels. Not
            needed when `label_token_ids` is given.
        embeddings: the backbone, its embedding layer or matrix, or `None`
            to be bound by `FrozenBackbone`.
        top_k: int, `SampledVocab`'s range for the remaining positions.
        seed: optional int seed for the sampled positions.
        label_token_ids: optional list of token-id lists, one per label,
            instead of `labels` + `tokenizer`.

    Example:

    ```python
    init = keras_prompt.initializers.ClassLabel(
        labels=["negative", "positive"], tokenizer=tokenizer,
        embeddings=backbone,
    )
    ```
    """

    def __init__(
        self,
        labels=None,
        tokenizer=None,
        embeddings=None,
        top_k=5000,
        seed=None,
        label_token_ids=None,
    ):
        super().__init__(embeddings)
        if label_token_ids is None:
            if labels is None or tokenizer is None:
                raise ValueError(
                    "`ClassLabel` needs `labels` and a `tokenizer`, or "
                    "`label_token_ids`. Received: "
                    f"labels={labels!r}, tokenizer={tokenizer!r}"
                )
            if isinstance(labels, str):
                raise TypeError(
                    "`labels` must be a list of strings. "
                    f"Received: labels={labels!r}"
                )
            label_token_ids = [_token_ids(tokenizer, label) for label in labels]
        label_token_ids = [[int(i) for i in ids] for ids in label_token_ids]
        for label, ids in zip(labels or label_token_ids, label_token_ids):
            if not ids:
                raise ValueError(
                    "A class label tokenised to no tokens. "
                    f"Received: label={label!r}"
                )
        if not label_token_ids:
            raise ValueError("`labels` must not be empty.")
        self.labels = list(labels) if labels is not None else None
        self.label_token_ids = label_token_ids
        self.top_k = int(top_k)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        length = int(shape[-2])
        count = math.prod(tuple(shape)[:-2])
        label_rows = [
            ops.mean(self.rows(ids), axis=0)
            for ids in self.label_token_ids[:length]
        ]
        rest = length - len(label_rows)
        fill = SampledVocab(self.table, self.top_k, self.seed)

        def make(i, n, d):
            rows = list(label_rows)
            if rest:
                sampled = fill.rows(fill.sampled_ids(rest, count)[i])
                rows += [sampled[j] for j in range(rest)]
            return ops.stack(rows, axis=0)

        return self._fill(shape, dtype, make)

    def get_config(self):
        return {
            "labels": self.labels,
            "label_token_ids": self.label_token_ids,
            "top_k": self.top_k,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="keras_prompt")
class FromTokens(EmbeddingInitializer):
    """A prompt initialised to the embeddings of given tokens or text.

    Args:
        token_ids: list of ints, one per prompt position.
        text: a string, tokenised with `tokenizer` instead of `token_ids`.
        tokenizer: a keras-hub tokenizer, needed with `text`.
        embeddings: the backbone, its embedding layer or matrix, or `None`
            to be bound by `FrozenBackbone`.

    The number of tokens must equal the prompt length.

    Example:

    ```python
    init = keras_prompt.initializers.FromTokens([5, 6, 7], embeddings=backbone)
    prompt = init((3, backbone.hidden_dim))
    ```
    """

    def __init__(
        self, token_ids=None, text=None, tokenizer=None, embeddings=None
    ):
        super().__init__(embeddings)
        if token_ids is None:
            if text is None or tokenizer is None:
                raise ValueError(
                    "`FromTokens` needs `token_ids`, or `text` and a "
                    f"`tokenizer`. Received: token_ids={token_ids!r}, "
                    f"text={text!r}, tokenizer={tokenizer!r}"
                )
            token_ids = _token_ids(tokenizer, text)
        self.token_ids = [int(i) for i in token_ids]
        if not self.token_ids:
            raise ValueError("`token_ids` must not be empty.")
        self.text = text

    def __call__(self, shape, dtype=None):
        length = int(shape[-2])
        if length != len(self.token_ids):
            raise ValueError(
                f"`FromTokens` holds {len(self.token_ids)} tokens but the "
                f"prompt has length {length}. Received: shape={tuple(shape)}"
            )
        return self._fill(
            shape, dtype, lambda i, n, d: self.rows(self.token_ids)
        )

    def get_config(self):
        return {"token_ids": self.token_ids, "text": self.text}


_ALIASES = {
    "random_uniform": RandomUniform,
    "uniform": RandomUniform,
    "sampled_vocab": SampledVocab,
    "vocab": SampledVocab,
}


def get(identifier):
    """Resolves a prompt initialiser from a name, config or instance.

    Names: `"random_uniform"` (alias `"uniform"`) and `"sampled_vocab"`
    (alias `"vocab"`) are this module's; any other name goes to
    `keras.initializers.get`. `ClassLabel` and `FromTokens` need arguments,
    so pass instances.
    """
    if isinstance(identifier, str) and identifier in _ALIASES:
        return _ALIASES[identifier]()
    if isinstance(identifier, str) and identifier in ("class_label", "tokens"):
        raise ValueError(
            f"The '{identifier}' initialiser needs arguments: pass an "
            "instance such as `keras_prompt.initializers.ClassLabel(labels="
            "..., tokenizer=...)`. Received: initializer="
            f"{identifier!r}"
        )
    try:
        return keras.initializers.get(identifier)
    except ValueError as error:
        raise ValueError(
            "Unknown prompt initializer. Use one of "
            f"{sorted(_ALIASES)}, a keras_prompt.initializers instance or "
            f"any Keras initializer. Received: initializer={identifier!r}"
        ) from error
