"""Prompt inspection (Lester et al., 2021, section 7).

A learned prompt is a sequence of vectors in the frozen model's embedding
space. Listing, for each prompt position, the vocabulary tokens whose
embeddings are nearest by cosine similarity shows what the prompt "says":
the paper finds semantic clusters and, with class-label initialisation,
the label words themselves.

```python
import keras_prompt

table = keras_prompt.analysis.nearest_tokens(
    model.backbone.prompt_values(), model.backbone, model.preprocessor.tokenizer
)
print(table)  # or table.to_markdown(); table.rows for the numbers
keras_prompt.analysis.plot_nearest_tokens(table)  # in a notebook
```
"""

import numpy as np

_CHUNK_ROWS = 16384


class NearestTokens:
    """The nearest vocabulary tokens of each prompt position.

    A small table: row `i` holds, for prompt position `i`, the `k` nearest
    tokens by cosine similarity, nearest first. `str(table)` prints it,
    `to_markdown()` gives a Markdown table and `rows` the values as plain
    Python data.

    Attributes:
        token_ids: int array `(length, k)`.
        similarities: float array `(length, k)`, cosine similarities in
            `[-1, 1]`, decreasing along each row.
        tokens: list of `length` lists of `k` token strings.
    """

    def __init__(self, token_ids, similarities, tokens):
        self.token_ids = np.asarray(token_ids)
        self.similarities = np.asarray(similarities)
        self.tokens = [list(row) for row in tokens]

    @property
    def k(self):
        return self.token_ids.shape[1]

    def __len__(self):
        return self.token_ids.shape[0]

    @property
    def rows(self):
        """One dict per prompt position: `position`, `tokens`,
        `token_ids` and `similarities` (nearest first)."""
        return [
            {
                "position": i,
                "tokens": self.tokens[i],
                "token_ids": self.token_ids[i].tolist(),
                "similarities": [float(s) for s in self.similarities[i]],
            }
            for i in range(len(self))
        ]

    def __getitem__(self, position):
        return self.rows[position]

    def __iter__(self):
        return iter(self.rows)

    def _cells(self):
        return [
            [
                f"{token} ({similarity:.3f})"
                for token, similarity in zip(tokens, similarities)
            ]
            for tokens, similarities in zip(self.tokens, self.similarities)
        ]

    def __str__(self):
        header = ["pos"] + [f"#{j + 1}" for j in range(self.k)]
        body = [[str(i)] + row for i, row in enumerate(self._cells())]
        widths = [
            max(len(r[j]) for r in [header] + body) for j in range(len(header))
        ]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths))
            for row in [header] + body
        ]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self):
        return (
            f"<NearestTokens: {len(self)} prompt positions, k={self.k}>\n{self}"
        )

    def to_markdown(self):
        """The table in Markdown (tokens escaped for `|`)."""
        header = ["position"] + [f"nearest {j + 1}" for j in range(self.k)]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
        ]
        for i, row in enumerate(self._cells()):
            cells = [f"`{c}`".replace("|", "\\|") for c in row]
            lines.append("| " + " | ".join([str(i)] + cells) + " |")
        return "\n".join(lines)


def _prompt_array(prompt):
    from keras_prompt.frozen_backbone import FrozenBackbone

    source = prompt
    if hasattr(prompt, "backbone") and isinstance(
        prompt.backbone, FrozenBackbone
    ):
        prompt = prompt.backbone
    if isinstance(prompt, FrozenBackbone):
        if prompt.num_prompts > 1:
            raise ValueError(
                "This model holds a bank of prompts; pass one of them, e.g. "
                "`backbone.prompt_values()[i]` or `bank.prompt(name)`. "
                f"Received: prompt={type(source).__name__}"
            )
        values = prompt.prompt_values()
        # Deep prompts: only the input layer (0) is in the token space.
        prompt = values[0] if prompt.deep else values
    try:
        import keras

        prompt = keras.ops.convert_to_numpy(prompt)
    except Exception:
        pass
    prompt = np.asarray(prompt, dtype="float32")
    if prompt.ndim != 2:
        raise ValueError(
            "`prompt` must have shape (length, dim) (pick one prompt of a "
            f"bank). Received: prompt of shape {prompt.shape}"
        )
    return prompt


def _token_strings(tokenizer, ids):
    if tokenizer is None:
        return [[f"<{i}>" for i in row] for row in ids]
    if hasattr(tokenizer, "id_to_token"):
        return [
            [str(tokenizer.id_to_token(int(i))) for i in row] for row in ids
        ]
    if isinstance(tokenizer, (list, tuple)):
        return [[str(tokenizer[int(i)]) for i in row] for row in ids]
    raise TypeError(
        "`tokenizer` must be a keras-hub tokenizer, a list of vocabulary "
        f"strings or None. Received: tokenizer={type(tokenizer).__name__}"
    )


def nearest_tokens(prompt, backbone, tokenizer=None, k=5):
    """The `k` vocabulary tokens nearest to each prompt position.

    Cosine similarity between each prompt vector and every row of the
    frozen token embedding table (computed in chunks of the vocabulary, so
    large tables are never normalised in one copy).

    Args:
        prompt: the prompt, `(length, dim)`: an array or tensor, or a
            single-prompt `FrozenBackbone` or task model. For a bank pass
            one prompt, e.g. `bank.prompt("sst2")`.
        backbone: where the vocabulary embeddings are: a keras-hub backbone,
            a `FrozenBackbone`, a task model, an embedding layer or the
            embedding matrix `(vocabulary, dim)`.
        tokenizer: a keras-hub tokenizer (`id_to_token`), a list of the
            vocabulary's strings, or `None` to show ids as `<id>`.
        k: int, tokens per position. Defaults to `5`.

    Returns:
        A `NearestTokens` table.

    Example:

    ```python
    table = keras_prompt.analysis.nearest_tokens(
        model.backbone.prompt_values(), model.backbone,
        model.preprocessor.tokenizer, k=5,
    )
    print(table)
    ```
    """
    import keras

    from keras_prompt.initializers import embedding_table

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"`k` must be an int. Received: k={k!r}")
    prompt = _prompt_array(prompt)
    table = embedding_table(backbone)
    if table is None:
        raise ValueError("`backbone` must be given. Received: backbone=None")
    vocabulary, dim = tuple(table.shape)
    if not 1 <= k <= vocabulary:
        raise ValueError(
            f"`k` must be in [1, {vocabulary}] (the vocabulary size). "
            f"Received: k={k}"
        )
    if prompt.shape[1] != dim:
        raise ValueError(
            f"The prompt width {prompt.shape[1]} differs from the embedding "
            f"width {dim}. Received: prompt of shape {prompt.shape}"
        )
    table = np.asarray(keras.ops.convert_to_numpy(table))
    queries = prompt / np.maximum(
        np.linalg.norm(prompt, axis=1, keepdims=True), 1e-12
    )
    best_ids = np.zeros((prompt.shape[0], 0), dtype="int64")
    best_sims = np.zeros((prompt.shape[0], 0), dtype="float32")
    for start in range(0, vocabulary, _CHUNK_ROWS):
        rows = np.asarray(table[start : start + _CHUNK_ROWS], dtype="float32")
        norms = np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
        sims = (queries @ rows.T) / norms[None, :]
        ids = np.broadcast_to(
            np.arange(start, start + rows.shape[0]), sims.shape
        )
        best_sims = np.concatenate([best_sims, sims], axis=1)
        best_ids = np.concatenate([best_ids, ids], axis=1)
        # Stable sort: ties keep the lower token id first.
        order = np.argsort(-best_sims, axis=1, kind="stable")[:, :k]
        best_sims = np.take_along_axis(best_sims, order, axis=1)
        best_ids = np.take_along_axis(best_ids, order, axis=1)
    best_sims = np.clip(best_sims, -1.0, 1.0)
    return NearestTokens(
        best_ids, best_sims, _token_strings(tokenizer, best_ids)
    )


def plot_nearest_tokens(
    table, backbone=None, tokenizer=None, k=5, ax=None, cmap="viridis"
):
    """A heatmap of the nearest tokens' similarities, labelled with them.

    Rows are prompt positions, columns the 1st..k-th nearest token; each
    cell shows its token. Needs matplotlib (`pip install matplotlib`),
    imported only here.

    Args:
        table: a `NearestTokens`, or a prompt (then `backbone`,
            `tokenizer` and `k` are passed to `nearest_tokens`).
        backbone: see `nearest_tokens` (only with a prompt).
        tokenizer: see `nearest_tokens` (only with a prompt).
        k: see `nearest_tokens` (only with a prompt).
        ax: a matplotlib `Axes` to draw on; a new figure by default.
        cmap: the colour map. Defaults to `"viridis"`.

    Returns:
        The matplotlib `Axes`.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "`plot_nearest_tokens` needs matplotlib: `pip install "
            "matplotlib`. `nearest_tokens(...)` gives the same table as text."
        ) from error
    if not isinstance(table, NearestTokens):
        if backbone is None:
            raise ValueError(
                "Pass a `NearestTokens` table, or a prompt with its "
                "`backbone`. Received: backbone=None"
            )
        table = nearest_tokens(table, backbone, tokenizer, k=k)
    length, k = table.similarities.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * k + 1.5, 0.45 * length + 1.2))
    image = ax.imshow(
        table.similarities, cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto"
    )
    for i in range(length):
        for j in range(k):
            ax.text(
                j,
                i,
                table.tokens[i][j],
                ha="center",
                va="center",
                fontsize=8,
                color="white" if table.similarities[i, j] < 0.5 else "black",
            )
    ax.set_xticks(range(k))
    ax.set_xticklabels([f"#{j + 1}" for j in range(k)])
    ax.set_yticks(range(length))
    ax.set_yticklabels([str(i) for i in range(length)])
    ax.set_xlabel("nearest tokens (cosine similarity)")
    ax.set_ylabel("prompt position")
    ax.figure.colorbar(image, ax=ax)
    return ax
