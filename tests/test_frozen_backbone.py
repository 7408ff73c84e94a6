import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import initializers
from tests.test_case import TestCase
from tests.test_case import prepend_encoder
from tests.test_case import t5_inputs
from tests.test_case import tiny_backbone
from tests.test_case import tiny_t5

PROMPT_TOKENS = [5, 9, 13]


@pytest.fixture
def t5():
    return tiny_t5()


class TestFrozenBackboneT5(TestCase):
    @pytest.mark.parametrize("tied", [True, False])
    def test_reference_prompt_equals_prepended_tokens(self, tied):
        t5 = tiny_t5(tie_embedding_weights=tied, activation="relu")
        wrapped = FrozenBackbone(t5, prompt_length=len(PROMPT_TOKENS))
        self.run_prompt_reference_test(
            t5,
            wrapped,
            t5_inputs(),
            PROMPT_TOKENS,
            prepend_encoder(PROMPT_TOKENS),
            {
                "encoder_sequence_output": lambda x: x,
                "decoder_sequence_output": lambda x: x,
            },
        )

    def test_prompt_changes_decoder_through_cross_attention(self, t5):
        wrapped = FrozenBackbone(t5, prompt_length=2)
        plain = t5(t5_inputs())["decoder_sequence_output"]
        prompted = wrapped(t5_inputs())["decoder_sequence_output"]
        assert not np.allclose(
            keras.ops.convert_to_numpy(plain),
            keras.ops.convert_to_numpy(prompted),
        )

    def test_only_prompt_trains(self, t5):
        wrapped = FrozenBackbone(t5, prompt_length=4)
        assert wrapped.trainable_weights == [
            wrapped.prompt_embedding.embeddings
        ]
        assert len(wrapped.non_trainable_weights) == len(t5.weights)
        assert wrapped.prompt_embedding.embeddings.shape == (4, 16)

    def test_attributes_reachable(self, t5):
        wrapped = FrozenBackbone(t5, prompt_length=4)
        assert wrapped.hidden_dim == 16
        assert wrapped.num_layers == 2
        assert wrapped.vocabulary_size == 64
        assert wrapped.token_embedding is t5.token_embedding
        assert wrapped.backbone is t5
        assert wrapped.family == "t5"

    def test_bank_inputs(self, t5):
        wrapped = FrozenBackbone(t5, prompt_length=3, num_prompts=2)
        assert "prompt_ids" in wrapped.input
        bank = wrapped.prompt_values()
        bank[1] = keras.ops.convert_to_numpy(t5.token_embedding.embeddings)[
            PROMPT_TOKENS
        ]
        wrapped.assign_prompts(bank)
        inputs = dict(t5_inputs(), prompt_ids=np.array([1, 0], "int32"))
        out = wrapped(inputs)["encoder_sequence_output"]
        ref = t5(prepend_encoder(PROMPT_TOKENS)(t5_inputs()))
        self.assertAllClose(
            keras.ops.convert_to_numpy(out)[0],
            keras.ops.convert_to_numpy(ref["encoder_sequence_output"])[0],
            atol=1e-4,
        )

    def test_unsupported_backbone(self):
        other = keras_hub.models.OPTBackbone(
            vocabulary_size=20,
            num_layers=1,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=16,
        )
        with pytest.raises(
            ValueError, match="Supported backbone families:.*t5"
        ):
            FrozenBackbone(other, prompt_length=2)

    def test_bad_arguments(self, t5):
        with pytest.raises(ValueError, match="length=0"):
            FrozenBackbone(t5, prompt_length=0)
        with pytest.raises(TypeError, match="keras-hub Backbone"):
            FrozenBackbone(keras.layers.Dense(2), prompt_length=2)
        wrapped = FrozenBackbone(t5, prompt_length=2)
        with pytest.raises(TypeError, match="already a FrozenBackbone"):
            FrozenBackbone(wrapped, prompt_length=2)
        with pytest.raises(ValueError, match=r"shape \(3, 16\).*\(2, 16\)"):
            wrapped.assign_prompts(np.zeros((3, 16)))

    def test_prompt_ids_out_of_range(self, t5):
        wrapped = FrozenBackbone(t5, prompt_length=2, num_prompts=2)
        with pytest.raises(ValueError, match="prompt_ids"):
            wrapped(dict(t5_inputs(), prompt_ids=np.array([0, 5], "int32")))

    def test_config_round_trip(self, t5):
        wrapped = FrozenBackbone(
            t5, prompt_length=3, initializer="sampled_vocab", num_prompts=2
        )
        revived = self.run_serialization_test(wrapped)
        assert revived.prompt_length == 3 and revived.num_prompts == 2
        assert not revived.backbone.trainable
        assert isinstance(revived.initializer, initializers.SampledVocab)

    def test_keras_saving(self, t5, tmp_path):
        wrapped = FrozenBackbone(t5, prompt_length=3)
        restored = self.run_model_saving_test(wrapped, t5_inputs(), tmp_path)
        self.assertAllClose(restored.prompt_values(), wrapped.prompt_values())
        assert len(restored.trainable_weights) == 1

    def test_from_preset_loads_weights_before_prompt(self, t5, tmp_path):
        preset = os.path.join(str(tmp_path), "preset")
        t5.save_to_preset(preset)
        wrapped = FrozenBackbone.from_preset(
            preset, prompt_length=3, initializer="sampled_vocab"
        )
        for saved, loaded in zip(t5.weights, wrapped.backbone.weights):
            self.assertAllEqual(saved, loaded)
        # The vocabulary-sampled prompt reads the loaded (not random) table.
        table = keras.ops.convert_to_numpy(t5.token_embedding.embeddings)
        for row in wrapped.prompt_values():
            assert np.abs(table - row).sum(-1).min() < 1e-6


class TestPromptFiles(TestCase):
    def test_round_trip_and_size(self, t5, tmp_path):
        wrapped = FrozenBackbone(t5, prompt_length=3, num_prompts=2)
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        wrapped.save_prompts(path, task_names=["a", "b"])
        assert os.path.getsize(path) < 4096
        other = FrozenBackbone(t5, prompt_length=3, num_prompts=2)
        metadata = other.load_prompts(path)
        self.assertAllEqual(other.prompt_values(), wrapped.prompt_values())
        assert metadata["task_names"] == ["a", "b"]
        assert metadata["backbone_class"] == "T5Backbone"
        assert metadata["hidden_dim"] == 16
        assert metadata["vocabulary_size"] == 64
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]

    def test_other_backbone_rejected(self, t5, tmp_path):
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        FrozenBackbone(t5, prompt_length=3).save_prompts(path)
        same_shape = FrozenBackbone(tiny_t5(), prompt_length=3)
        with pytest.raises(ValueError, match="another backbone"):
            same_shape.load_prompts(path)
        wider = FrozenBackbone(tiny_t5(hidden_dim=32), prompt_length=3)
        with pytest.raises(ValueError, match="hidden_dim differs"):
            wider.load_prompts(path)

    def test_shape_mismatch_rejected(self, t5, tmp_path):
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        FrozenBackbone(t5, prompt_length=3).save_prompts(path)
        with pytest.raises(ValueError, match=r"shape \(3, 16\)"):
            FrozenBackbone(t5, prompt_length=5).load_prompts(path)

    def test_not_a_prompt_file(self, t5, tmp_path):
        path = os.path.join(str(tmp_path), "junk.safetensors")
        with open(path, "wb") as f:
            f.write(b"not a prompt")
        with pytest.raises(ValueError, match="Not a keras_prompt prompt file"):
            FrozenBackbone(t5, prompt_length=3).load_prompts(path)

    def test_atomic_write_leaves_old_file_on_failure(
        self, t5, tmp_path, monkeypatch
    ):
        wrapped = FrozenBackbone(t5, prompt_length=3)
        path = os.path.join(str(tmp_path), "p.prompt.safetensors")
        wrapped.save_prompts(path)
        before = open(path, "rb").read()

        def broken_replace(src, dst):
            raise OSError("disk full")

        monkeypatch.setattr(os, "replace", broken_replace)
        wrapped.assign_prompts(np.ones((3, 16)))
        with pytest.raises(OSError, match="disk full"):
            wrapped.save_prompts(path)
        monkeypatch.undo()
        assert open(path, "rb").read() == before
        assert os.listdir(tmp_path) == ["p.prompt.safetensors"]

    def test_missing_folder(self, t5, tmp_path):
        wrapped = FrozenBackbone(t5, prompt_length=3)
        with pytest.raises(ValueError, match="folder of the output"):
            wrapped.save_prompts(os.path.join(str(tmp_path), "no", "p"))

    def test_fingerprint_stable_across_bfloat16(self, t5):
        from keras_prompt.prompt_files import embedding_fingerprint

        table = keras.ops.convert_to_numpy(t5.token_embedding.embeddings)
        import ml_dtypes

        as_bf16 = table.astype(ml_dtypes.bfloat16)
        assert embedding_fingerprint(table) == embedding_fingerprint(as_bf16)
        assert embedding_fingerprint(table) != embedding_fingerprint(
            table + 0.05
        )


def test_wrapped_backbone_still_trains_on_its_own():
    """Wrapping must not leave the backbone untrainable elsewhere.

    `FrozenBackbone` hides frozen weights from TensorFlow's tape while it
    runs; the plain backbone, unfrozen and used in another model after a
    prompt-tuning step, must get a gradient for every weight again.
    """
    from keras_prompt import PromptClassifier

    backbone = tiny_backbone(
        "bert",
        vocabulary_size=20,
        num_layers=1,
        hidden_dim=8,
        intermediate_dim=16,
        dropout=0.1,  # keras-hub's default
    )
    x = {
        "token_ids": np.tile(np.arange(2, 8, dtype="int32"), (4, 1)),
        "segment_ids": np.zeros((4, 6), "int32"),
        "padding_mask": np.ones((4, 6), "int32"),
    }
    y = np.array([0, 1, 0, 1])
    classifier = PromptClassifier(
        FrozenBackbone(backbone, prompt_length=2), num_classes=2
    )
    classifier.fit(x, y, epochs=1, verbose=0)

    backbone.trainable = True
    inputs = {k: keras.Input((6,), dtype="int32", name=k) for k in x}
    outputs = keras.layers.Dense(2)(backbone(inputs)["pooled_output"])
    plain = keras.Model(inputs, outputs)
    plain.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [keras.ops.convert_to_numpy(v) for v in backbone.weights]
    plain.fit(x, y, epochs=1, verbose=0)
    after = [keras.ops.convert_to_numpy(v) for v in backbone.weights]
    unchanged = [
        v.path
        for v, a, b in zip(backbone.weights, before, after)
        if np.array_equal(a, b)
    ]
    # Rows of the embedding tables never looked up keep their values, but
    # the looked-up rows move; every dense weight moves.
    assert not [name for name in unchanged if "embedding" not in name]
    for v, a, b in zip(backbone.weights, before, after):
        if "token_embedding" in v.path:
            assert not np.array_equal(a[2:8], b[2:8])
