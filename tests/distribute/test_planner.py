"""`keras_prompt.distribute.plan` and its tables (no TensorFlow work)."""

import json

import keras_hub
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt.distribute import MODELS
from keras_prompt.distribute import ModelSpec
from keras_prompt.distribute import device_spec
from keras_prompt.distribute import model_spec
from keras_prompt.distribute import plan
from keras_prompt.distribute.model_sizes import GIB
from keras_prompt.distribute.model_sizes import preset_names
from keras_prompt.distribute.planner import activation_elements

# The paper's T5-XXL setting: batch 32, SuperGLUE-length inputs, short
# targets, 100 prompt vectors, bfloat16 weights, one example per replica.
XXL = dict(
    batch_size=32,
    sequence_length=512,
    target_length=16,
    prompt_length=100,
    dtype="bfloat16",
    replicas=32,
)


@pytest.mark.parametrize(
    "name,billions",
    [
        ("t5_small", 0.06),
        ("t5_base", 0.223),
        ("t5_large", 0.74),
        ("t5_3b", 2.85),
        ("t5_11b", 11.3),
        ("t5_1.1_small", 0.077),
        ("t5_1.1_base", 0.248),
        ("t5_1.1_large", 0.783),
        ("t5_1.1_xl", 2.85),
        ("t5_1.1_xxl", 11.1),
        ("t5_1.1_lm_adapted_xxl", 11.1),
        ("gemma_2b_en", 2.51),
        ("gemma_7b_en", 8.54),
        ("llama2_7b_en", 6.74),
        ("llama3_8b_en", 8.03),
        ("llama2_70b", 69.0),
        ("llama3_70b", 70.6),
        ("gpt2_base_en", 0.124),
    ],
)
def test_parameter_counts_of_the_table(name, billions):
    count = model_spec(name).num_parameters() / 1e9
    assert count == pytest.approx(billions, rel=0.01)


def _count(model):
    return sum(int(np.prod(w.shape)) for w in model.weights)


TINY = {
    "t5_gated": lambda: keras_hub.models.T5Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        key_value_dim=12,
        use_gated_activation=True,
        activation="gelu",
        tie_embedding_weights=False,
    ),
    "t5_relu": lambda: keras_hub.models.T5Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        use_gated_activation=False,
        activation="relu",
        tie_embedding_weights=True,
    ),
    "gpt2": lambda: keras_hub.models.GPT2Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=24,
        max_sequence_length=20,
    ),
    "gemma": lambda: keras_hub.models.GemmaBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=24,
        head_dim=8,
    ),
    "llama": lambda: keras_hub.models.LlamaBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=24,
    ),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_spec_of_a_backbone_counts_its_weights_exactly(name):
    import keras

    backbone = TINY[name]()
    spec = model_spec(backbone)
    assert spec.num_parameters() == _count(backbone)
    serialized = keras.saving.serialize_keras_object(backbone)
    assert model_spec(serialized) == spec  # A preset's config.json.
    if name == "t5_gated":
        wrapped = FrozenBackbone(backbone, prompt_length=2)
        assert model_spec(wrapped) == spec
        assert spec.head_dim == 12 and spec.activation == "gelu"
    styles = {
        "gemma": ("gelu_tanh", 2, True),
        "llama": ("silu", 2, True),
        "gpt2": ("gelu_tanh", 1, False),
        "t5_relu": ("relu", 1, False),
    }
    if name in styles:
        assert (spec.activation, spec.score_tensors, spec.gated) == styles[name]


def test_activation_formula_of_a_small_decoder():
    spec = ModelSpec(
        name="pinned",
        family="decoder",
        vocabulary_size=10,
        hidden_dim=8,
        num_layers=2,
        num_heads=2,
        head_dim=4,
        intermediate_dim=16,
        gated=True,
        activation="silu",
        score_tensors=3,
    )
    out = activation_elements(
        spec, batch=2, sequence_length=3, target_length=0, prompt=1
    )
    s = 3 + 1
    block = 2 * 8 + 3 * 8 + 3 * 2 * s + (3 + 1) * 16
    assert out["block"] == 2 * s * block
    assert out["layers"] == 2 * out["block"] + 2 * s * 8
    assert out["remat"] == 2 * 2 * s * 8 + 2 * s * 8
    assert out["logits"] == 2 * 3 * 10
    full_block = block + 2 * 8 + 8 + 16
    assert out["block_full"] == 2 * 3 * (full_block - 3 * 2 * 1)


def test_t5_xxl_headline():
    """Prompt tuning T5-XXL is data parallel on TPU v4 chips because the
    11B frozen weights have no gradients or optimizer slots; the bfloat16
    weights alone exceed a v3 core's or a v5e chip's 16 GiB."""
    v4 = plan("t5_1.1_xxl", device="tpu_v4", **XXL)
    assert v4.verdict == "fits" and v4.fits
    pt, ft = v4.prompt_tuning, v4.full_finetuning
    assert pt.weights == pytest.approx(11.135e9 * 2, rel=0.01)
    assert pt.gradients + pt.optimizer_state < 1e7  # The prompt only.
    assert ft.gradients + ft.optimizer_state > 6 * pt.weights
    assert v4.full_finetuning_verdict == "does not fit"
    assert v4.max_batch_per_replica >= 1
    assert v4.max_batch_per_replica_remat > v4.max_batch_per_replica
    assert not v4.advice
    for device in ("tpu_v3", "tpu_v5e"):
        small = plan("t5_1.1_xxl", device=device, **XXL)
        assert small.verdict == "does not fit"
        assert pt.weights > small.capacity
        # The advice names a model axis that makes it fit.
        (line,) = [a for a in small.advice if "model_parallel=" in a]
        shards = int(line.split("model_parallel=")[1].split(",")[0])
        sharded = plan(
            "t5_1.1_xxl",
            device=device,
            **dict(XXL, replicas=XXL["replicas"] // shards),
            model_parallel=shards,
        )
        assert sharded.verdict != "does not fit", (device, shards)
    assert plan("t5_1.1_xxl", device="tpu_v5p", **XXL).verdict == "fits"
    # In float32 the weights (44.5 GB) no longer fit a v4 chip either.
    float32 = plan("t5_1.1_xxl", device="tpu_v4", **dict(XXL, dtype="float32"))
    assert float32.verdict == "does not fit"
    assert any("bfloat16" in line for line in float32.advice)


def test_model_axis_shards_the_weights_and_the_wide_activations():
    """A `(replicas, model_parallel)` mesh: each device holds a
    `1 / model_parallel` share of the frozen weights and of the heads' and
    feed-forward activations; the prompt and the `h`-wide tensors whole."""
    args = dict(batch_size=32, sequence_length=512, device="tpu_v4")
    alone = plan("t5_1.1_xxl", replicas=8, **args)
    mesh = plan("t5_1.1_xxl", replicas=8, model_parallel=4, **args)
    assert mesh.settings["devices"] == 32
    assert mesh.settings["batch_per_replica"] == 4
    prompt_bytes = 100 * 4096 * 4
    assert mesh.prompt_tuning.weights - prompt_bytes == pytest.approx(
        (alone.prompt_tuning.weights - prompt_bytes) / 4, abs=1
    )
    assert mesh.prompt_tuning.gradients == alone.prompt_tuning.gradients
    assert mesh.prompt_tuning.activations_remat == (
        alone.prompt_tuning.activations_remat
    )
    # The sharded share shrinks; the h-wide tensors and logits stay.
    assert (
        alone.prompt_tuning.activations / 4
        < mesh.prompt_tuning.activations
        < alone.prompt_tuning.activations
    )
    assert "8 replica(s) x 4 model-parallel = 32 devices" in mesh.summary()
    assert mesh.to_dict()["settings"]["model_parallel"] == 4
    spec = alone.model
    one, four = (
        activation_elements(spec, 4, 128, 16, 100, model_parallel=m)
        for m in (1, 4)
    )
    assert four["remat"] == one["remat"] and four["logits"] == one["logits"]
    assert one["layers"] / 4 < four["layers"] < one["layers"]
    with pytest.raises(ValueError, match="model_parallel=0"):
        plan("t5_1.1_xxl", replicas=8, model_parallel=0, **args)


def test_batch_advice_and_remat():
    result = plan(
        "t5_1.1_xl",
        batch_size=256,
        sequence_length=512,
        device="tpu_v3",
        replicas=8,
    )
    assert result.settings["batch_per_replica"] == 32
    assert result.verdict in ("does not fit", "fits with rematerialisation")
    pt = result.prompt_tuning
    assert pt.activations_remat < pt.activations
    assert pt.total_remat < pt.total
    assert 0 < result.max_batch_per_replica < 32
    assert any("gradient accumulation" in line for line in result.advice)
    fitting = plan(
        "t5_1.1_xl",
        batch_size=8 * result.max_batch_per_replica,
        sequence_length=512,
        device="tpu_v3",
        replicas=8,
    )
    assert fitting.verdict == "fits"


def test_bfloat16_halves_weights_and_activations():
    args = dict(batch_size=8, sequence_length=256, device="a100_40")
    half = plan("llama2_7b", dtype="bfloat16", **args).prompt_tuning
    full = plan("llama2_7b", dtype="float32", **args).prompt_tuning
    prompt_bytes = 100 * 4096 * 4
    assert (full.weights - prompt_bytes) == 2 * (half.weights - prompt_bytes)
    assert half.activations < full.activations


def test_cpu_device_and_summary():
    result = plan(
        "t5_small", batch_size=4, sequence_length=64, device="cpu", ram_gb=8
    )
    assert result.device.memory_bytes == 8 * GIB
    assert result.verdict == "fits"
    text = result.summary()
    assert "prompt tuning: fits" in text
    assert "full fine-tuning with Adam" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "fits"
    assert data["prompt_tuning"]["total"] == result.prompt_tuning.total


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"model": "t5_huge"}, "model='t5_huge'"),
        ({"device": "tpu_v9"}, "device='tpu_v9'"),
        ({"device": "cpu"}, "ram_gb=None"),
        ({"dtype": "int4"}, "dtype='int4'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 10, "replicas": 4}, "replicas=4"),
        ({"sequence_length": 1.5}, "sequence_length=1.5"),
        ({"prompt_length": 0}, "prompt_length=0"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"usable_fraction": 1.5}, "usable_fraction=1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = dict(model="t5_small", batch_size=8, sequence_length=64)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plan(**arguments)


def test_bad_specs():
    with pytest.raises(ValueError, match="family='bert'"):
        ModelSpec("x", "bert", 10, 8, 1, 1, 8, 16)
    with pytest.raises(ValueError, match="hidden_dim=0"):
        ModelSpec("x", "t5", 10, 0, 1, 1, 8, 16)
    with pytest.raises(ValueError, match="activation='tanh'"):
        ModelSpec("x", "t5", 10, 8, 1, 1, 8, 16, activation="tanh")
    with pytest.raises(ValueError, match="class_name='BertBackbone'"):
        model_spec({"class_name": "BertBackbone", "config": {}})
    assert device_spec("v5e").name == "tpu_v5e"
    assert set(MODELS) <= set(preset_names())
