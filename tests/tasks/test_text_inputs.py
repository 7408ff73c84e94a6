"""Raw texts are checked where they enter a task model: no texts give an
empty result, a non-text one `TypeError` naming the argument, a NUL
character one `ValueError` (never a silently shortened text)."""

import numpy as np
import pytest

from keras_prompt.tasks import text_inputs
from tests.test_case import STRING_FAMILIES
from tests.test_case import TEXTS
from tests.test_case import tiny_backbone
from tests.test_case import tiny_preprocessor
from tests.test_case import tiny_task

KINDS = sorted(STRING_FAMILIES)


@pytest.fixture(scope="module")
def models():
    """`{kind: compiled tiny task model with its preprocessor}`."""
    built = {}
    for kind in KINDS:
        family = STRING_FAMILIES[kind]
        preprocessor = tiny_preprocessor(family)
        vocabulary = preprocessor.tokenizer.vocabulary_size()
        backbone = tiny_backbone(family, vocabulary_size=vocabulary)
        model = tiny_task(backbone, preprocessor=preprocessor)
        model.compile()
        built[kind] = model
    return built


def inputs(model, texts):
    """`texts` as the model's `predict` input (text-to-text models take
    an input dict)."""
    if model.target_key is None:
        return texts
    return {model.text_key: texts, model.target_key: [""] * len(texts)}


@pytest.mark.parametrize("kind", KINDS)
def test_predict_of_no_texts_is_empty_with_the_outputs_shape(models, kind):
    model = models[kind]
    full = model.predict(inputs(model, TEXTS[:2]), verbose=0)
    empty = model.predict(inputs(model, []), verbose=0)
    assert empty.shape == (0,) + full.shape[1:]
    assert empty.dtype == full.dtype
    if kind == "encoder":
        assert empty.shape == (0, model.num_classes)
        assert model.infer([]).shape == (0, model.num_classes)


@pytest.mark.parametrize("kind", KINDS)
def test_non_texts_are_one_type_error_naming_the_argument(models, kind):
    model = models[kind]
    with pytest.raises(TypeError, match=r"`x.*` must hold texts.*item 1 is"):
        model.predict(inputs(model, ["red cat", 7]), verbose=0)
    with pytest.raises(TypeError, match="must hold texts"):
        model.predict(inputs(model, np.array([1.5, 2.5])), verbose=0)
    if model.generates_text:
        with pytest.raises(TypeError, match="item 0 is a int"):
            model.generate([3])


@pytest.mark.parametrize("kind", KINDS)
def test_a_nul_character_is_refused_everywhere(models, kind):
    model = models[kind]
    bad = ["red cat", "blue\x00 dog"]
    words = r"item 1 holds a NUL character \(\\x00\) at position 4"
    with pytest.raises(ValueError, match=words):
        model.predict(inputs(model, bad), verbose=0)
    with pytest.raises(ValueError, match=words):
        model.predict(inputs(model, np.array(bad, dtype=object)), verbose=0)
    if model.generates_text:
        with pytest.raises(ValueError, match=words):
            model.generate(bad)
        with pytest.raises(ValueError, match=words):
            model.infer(bad)
        return
    import tensorflow as tf

    y = np.array([0, 1])
    with pytest.raises(ValueError, match=words):
        model.evaluate(tf.constant([t.encode() for t in bad]), y, verbose=0)
    with pytest.raises(ValueError, match=words):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=words):
        model.fit(TEXTS[:2], y, validation_data=(bad, y), verbose=0)


def test_what_is_checked():
    assert text_inputs.check_texts([], "x") == 0
    assert text_inputs.check_texts([["a", b"b"], ("c",)], "x") == 3
    assert text_inputs.check_texts("one", "x") == 1
    # Not in memory: not read ahead.
    assert text_inputs.check_texts(iter(["a\x00"]), "x") is None
    with pytest.raises(ValueError, match="position 1"):
        text_inputs.check_texts([b"a\x00"], "texts")
    with pytest.raises(TypeError, match="`texts` must hold texts"):
        text_inputs.check_texts([None], "texts")
