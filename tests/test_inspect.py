import sys
import types
from unittest import mock

import keras
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import initializers
from keras_prompt.analysis import NearestTokens
from keras_prompt.analysis import nearest_tokens
from keras_prompt.analysis import plot_nearest_tokens
from tests.test_case import sentencepiece_proto
from tests.test_case import tiny_t5

WORDS = "red green blue cat dog bird sun moon".split()


@pytest.fixture(scope="module")
def world():
    import keras_hub

    proto = sentencepiece_proto([" ".join(WORDS)] * 4, vocab_size=11)
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    backbone = tiny_t5(vocabulary_size=tokenizer.vocabulary_size())
    return backbone, tokenizer


def test_from_tokens_prompt_is_nearest_to_its_own_tokens(world):
    backbone, tokenizer = world
    frozen = FrozenBackbone(
        backbone,
        prompt_length=3,
        initializer=initializers.FromTokens(
            text="cat red moon", tokenizer=tokenizer
        ),
    )
    table = keras_prompt.analysis.nearest_tokens(
        frozen.prompt_values(), backbone, tokenizer, k=4
    )
    assert len(table) == 3 and table.k == 4
    assert [row["tokens"][0] for row in table] == ["▁cat", "▁red", "▁moon"]
    np.testing.assert_allclose(table.similarities[:, 0], 1.0, atol=1e-6)
    # Nearest first, all in [-1, 1].
    assert np.all(np.diff(table.similarities, axis=1) <= 1e-7)
    assert np.all(np.abs(table.similarities) <= 1.0)
    # The same from the FrozenBackbone itself, ids without a tokenizer.
    same = nearest_tokens(frozen, frozen, k=4)
    np.testing.assert_array_equal(same.token_ids, table.token_ids)
    assert same.tokens[0][0] == f"<{table.token_ids[0, 0]}>"


def test_cosine_similarities_against_numpy(world):
    backbone, tokenizer = world
    rng = np.random.default_rng(0)
    prompt = rng.normal(size=(5, 16)).astype("float32")
    table = nearest_tokens(prompt, backbone, tokenizer, k=3)
    embeddings = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    sims = (prompt / np.linalg.norm(prompt, axis=1, keepdims=True)) @ (
        embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    ).T
    expected = np.argsort(-sims, axis=1)[:, :3]
    np.testing.assert_array_equal(table.token_ids, expected)
    np.testing.assert_allclose(
        table.similarities, np.take_along_axis(sims, expected, 1), atol=1e-5
    )


def test_table_text_and_markdown():
    table = NearestTokens(
        [[4, 2], [3, 1]], [[1.0, 0.5], [0.9, -0.25]], [["a|b", "c"], ["d", "e"]]
    )
    text = str(table)
    assert text.splitlines()[0].split() == ["pos", "#1", "#2"]
    assert "a|b (1.000)" in text and "e (-0.250)" in text
    markdown = table.to_markdown()
    assert markdown.splitlines()[0] == "| position | nearest 1 | nearest 2 |"
    assert "`a\\|b (1.000)`" in markdown
    assert table[1]["token_ids"] == [3, 1]
    assert table.rows[0]["similarities"] == [1.0, 0.5]


def test_bad_arguments(world):
    backbone, tokenizer = world
    prompt = np.zeros((2, 16), "float32")
    with pytest.raises(ValueError, match="k"):
        nearest_tokens(prompt, backbone, tokenizer, k=0)
    with pytest.raises(TypeError, match="k"):
        nearest_tokens(prompt, backbone, tokenizer, k=2.5)
    with pytest.raises(ValueError, match="width"):
        nearest_tokens(np.zeros((2, 7)), backbone, tokenizer)
    with pytest.raises(ValueError, match="shape \\(length, dim\\)"):
        nearest_tokens(np.zeros((2, 2, 16)), backbone, tokenizer)
    bank = FrozenBackbone(backbone, prompt_length=2, num_prompts=2)
    with pytest.raises(ValueError, match="bank"):
        nearest_tokens(bank, backbone, tokenizer)
    with pytest.raises(TypeError, match="tokenizer"):
        nearest_tokens(prompt, backbone, tokenizer=3)


def fake_matplotlib():
    """A stand-in `matplotlib.pyplot` recording what is drawn."""
    ax = mock.MagicMock()
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.subplots = mock.MagicMock(return_value=(mock.MagicMock(), ax))
    matplotlib = types.ModuleType("matplotlib")
    matplotlib.pyplot = pyplot
    return {"matplotlib": matplotlib, "matplotlib.pyplot": pyplot}, ax


def test_plot_nearest_tokens_draws_a_labelled_heatmap(world, monkeypatch):
    backbone, tokenizer = world
    modules, ax = fake_matplotlib()
    monkeypatch.setitem(sys.modules, "matplotlib", modules["matplotlib"])
    monkeypatch.setitem(
        sys.modules, "matplotlib.pyplot", modules["matplotlib.pyplot"]
    )
    prompt = np.random.default_rng(1).normal(size=(3, 16))
    result = plot_nearest_tokens(prompt, backbone, tokenizer, k=2)
    assert result is ax
    table = nearest_tokens(prompt, backbone, tokenizer, k=2)
    np.testing.assert_allclose(
        ax.imshow.call_args.args[0], table.similarities, atol=1e-6
    )
    drawn = [c.args[2] for c in ax.text.call_args_list]
    assert drawn == [t for row in table.tokens for t in row]


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    table = NearestTokens([[1]], [[1.0]], [["a"]])
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_nearest_tokens(table)
