"""BERT, RoBERTa and DistilBERT: the prompt right after the first token.

The reference test (a prompt of token embeddings equals those tokens
inserted after [CLS]) runs for every family in tests/test_families.py.
"""

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt.adapters import get_adapter
from keras_prompt.adapters import supported_families
from keras_prompt.adapters.bert import BertAdapter
from keras_prompt.adapters.distil_bert import DistilBertAdapter
from keras_prompt.adapters.roberta import RobertaAdapter
from tests.test_case import TestCase
from tests.test_case import encoder_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

PROMPT_TOKENS = [5, 9, 13]
MAX_POSITIONS = 12
FAMILIES = ["bert", "roberta", "distil_bert"]


def tiny_encoder(family, num_layers=2, **kwargs):
    return tiny_backbone(
        family,
        num_layers=num_layers,
        max_sequence_length=MAX_POSITIONS,
        **kwargs,
    )


def sequence_output(outputs):
    return outputs["sequence_output"] if isinstance(outputs, dict) else outputs


class TestEncoderAdapters(TestCase):
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
        # A prompt filling every position: refused as the prompt's fault,
        # before any probe runs (no "sequence_length (1)").
        with pytest.raises(ValueError, match=r"prompt_length \(12\) leaves"):
            FrozenBackbone(backbone, prompt_length=MAX_POSITIONS)
        FrozenBackbone(backbone, prompt_length=MAX_POSITIONS - 2, deep=True)
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
