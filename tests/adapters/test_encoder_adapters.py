"""BERT, RoBERTa and DistilBERT: the prompt right after the first token."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt.adapters import get_adapter
from keras_prompt.adapters import supported_families
from keras_prompt.adapters.bert import BertAdapter
from keras_prompt.adapters.distil_bert import DistilBertAdapter
from keras_prompt.adapters.roberta import RobertaAdapter
from tests.test_case import TestCase
from tests.test_case import to_numpy

PROMPT_TOKENS = [5, 9, 13]
MAX_POSITIONS = 12
FAMILIES = {
    "bert": keras_hub.models.BertBackbone,
    "roberta": keras_hub.models.RobertaBackbone,
    "distil_bert": keras_hub.models.DistilBertBackbone,
}


def tiny_encoder(family, num_layers=2, **kwargs):
    config = dict(
        vocabulary_size=40,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=MAX_POSITIONS,
        dropout=0.0,
    )
    config.update(kwargs)
    return FAMILIES[family](**config)


def encoder_inputs(family):
    """Two rows with padding; BERT rows also use segment 1."""
    token_ids = np.array(
        [[2, 10, 11, 3, 12, 3, 0], [2, 14, 3, 0, 0, 0, 0]], "int32"
    )
    inputs = {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype("int32"),
    }
    if family == "bert":
        inputs["segment_ids"] = np.array(
            [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]], "int32"
        )
    return inputs


def insert_after_first(array, values):
    rows = np.tile(np.asarray([values], array.dtype), (array.shape[0], 1))
    return np.concatenate([array[:, :1], rows, array[:, 1:]], axis=1)


def insert_tokens(tokens):
    """The reference inputs: `tokens` right after [CLS], mask ones,
    segment 0."""

    def insert(inputs):
        out = {
            "token_ids": insert_after_first(inputs["token_ids"], tokens),
            "padding_mask": insert_after_first(
                inputs["padding_mask"], [1] * len(tokens)
            ),
        }
        if "segment_ids" in inputs:
            out["segment_ids"] = insert_after_first(
                inputs["segment_ids"], [0] * len(tokens)
            )
        return out

    return insert


def sequence_output(outputs):
    return outputs["sequence_output"] if isinstance(outputs, dict) else outputs


class TestEncoderAdapters(TestCase):
    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_reference_prompt_equals_inserted_tokens(self, family):
        backbone = tiny_encoder(family)
        wrapped = FrozenBackbone(backbone, prompt_length=len(PROMPT_TOKENS))
        inputs = encoder_inputs(family)
        compare = {"sequence_output": lambda x: x}
        if family == "bert":
            compare["pooled_output"] = lambda x: x
        else:
            # RoBERTa / DistilBERT output the sequence alone; compare it
            # under the key the helper indexes.
            wrapped = _DictOutput(wrapped)
            backbone = _DictOutput(backbone)
        self.run_prompt_reference_test(
            backbone,
            wrapped,
            inputs,
            PROMPT_TOKENS,
            insert_tokens(PROMPT_TOKENS),
            compare,
        )

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_cls_keeps_position_zero(self, family):
        # Without transformer layers each output position is its own
        # embedding: [CLS] (position 0) is untouched by the prompt, the
        # prompt gets positions 1..P and the tokens move by P.
        backbone = tiny_encoder(family, num_layers=0)
        prompt_length = 3
        wrapped = FrozenBackbone(backbone, prompt_length=prompt_length)
        wrapped.assign_prompts(np.random.rand(prompt_length, 16))
        inputs = encoder_inputs(family)
        plain = to_numpy(sequence_output(backbone(inputs)))
        prompted = to_numpy(sequence_output(wrapped(inputs)))
        assert prompted.shape == (2, 1 + prompt_length + 6, 16)
        self.assertAllClose(prompted[:, 0], plain[:, 0], atol=1e-6)
        assert not np.allclose(prompted[:, 1], plain[:, 1], atol=1e-3)
        assert wrapped.adapter.prompt_position == 1
        if family == "bert":
            pooled = to_numpy(wrapped(inputs)["pooled_output"])
            self.assertAllClose(
                pooled, to_numpy(backbone(inputs))["pooled_output"]
            )

    def test_masks_and_segments_extended_after_cls(self):
        wrapped = FrozenBackbone(tiny_encoder("bert"), prompt_length=2)
        adapter, prompt = wrapped.adapter, wrapped.prompt_embedding
        mask = np.array([[1, 1, 0], [1, 0, 0]], "int32")
        segments = np.array([[0, 1, 1], [0, 1, 0]], "int32")
        self.assertAllEqual(
            adapter.extend_padding_mask(mask, prompt),
            np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], "int32"),
        )
        self.assertAllEqual(
            adapter.extend_segment_ids(segments, prompt),
            np.array([[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]], "int32"),
        )

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_too_long_prompt_and_sequence_raise(self, family):
        backbone = tiny_encoder(family)
        wrapped = FrozenBackbone(backbone, prompt_length=4)
        adapter = wrapped.adapter
        assert adapter.max_sequence_length() == MAX_POSITIONS
        adapter.check_sequence_length(8, 4)  # exactly fits
        with pytest.raises(ValueError, match="exceeds the 12 positions"):
            adapter.check_sequence_length(9, 4)
        # At call time, from the static shape, before the position lookup.
        token_ids = np.full((1, 9), 7, "int32")
        inputs = {k: np.zeros_like(token_ids) for k in backbone.input}
        inputs.update(token_ids=token_ids, padding_mask=token_ids * 0 + 1)
        with pytest.raises(ValueError, match=r"\(4\) \+ sequence_length"):
            wrapped(inputs)
        # When a graph is built on static shapes.
        static = {
            name: keras.Input(shape=(9,), dtype="int32", name=name)
            for name in backbone.input
        }
        with pytest.raises(ValueError, match="exceeds the 12 positions"):
            adapter.forward(static, wrapped.prompt_embedding)

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_only_prompt_trains_and_outputs_keep_structure(self, family):
        backbone = tiny_encoder(family)
        wrapped = FrozenBackbone(backbone, prompt_length=4)
        assert wrapped.trainable_weights == [
            wrapped.prompt_embedding.embeddings
        ]
        outputs = wrapped(encoder_inputs(family))
        if family == "bert":
            assert set(outputs) == {"sequence_output", "pooled_output"}
            assert tuple(outputs["pooled_output"].shape) == (2, 16)
        assert tuple(sequence_output(outputs).shape) == (2, 11, 16)

    def test_bank_matches_single_prompts(self):
        backbone = tiny_encoder("roberta")
        bank = FrozenBackbone(backbone, prompt_length=2, num_prompts=2)
        inputs = encoder_inputs("roberta")
        ids = np.array([1, 0], "int32")
        mixed = to_numpy(bank(dict(inputs, prompt_ids=ids)))
        for pid in (0, 1):
            single = FrozenBackbone(backbone, prompt_length=2)
            single.assign_prompts(bank.prompt_values()[pid])
            rows = ids == pid
            self.assertAllClose(mixed[rows], to_numpy(single(inputs))[rows])

    def test_registry(self):
        for family in FAMILIES:
            assert family in supported_families()
        assert isinstance(get_adapter(tiny_encoder("bert")), BertAdapter)
        assert isinstance(get_adapter(tiny_encoder("roberta")), RobertaAdapter)
        assert isinstance(
            get_adapter(tiny_encoder("distil_bert")), DistilBertAdapter
        )
        for cls in (BertAdapter, RobertaAdapter, DistilBertAdapter):
            assert cls.kind == "encoder"

    def test_serialization_round_trip(self):
        wrapped = FrozenBackbone(tiny_encoder("bert"), prompt_length=3)
        revived = self.run_serialization_test(wrapped)
        assert isinstance(revived.adapter, BertAdapter)


class _DictOutput:
    """Presents a single-output encoder as `{"sequence_output": x}`."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, inputs, **kwargs):
        return {"sequence_output": self.model(inputs, **kwargs)}
