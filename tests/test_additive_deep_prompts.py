"""Additive deep prompts (`PromptConfig(deep=True, deep_mode="add")`).

Anchors, for every registered decoder-only family:

- a new additive model is the shallow model (offsets start at zero);
- the input prompt reaches every layer: changing it changes the hidden
  states entering each deep layer at the prompt positions, where a
  replacing deep prompt makes them its own (the cause of deep prompts
  losing to the input prompt on SmolLM2, docs/performance.md);
- a trained additive prompt folds exactly into a replacing one: the
  folded file in a plain deep model gives the trained model's outputs,
  on right- and (relative positions) left-padded rows, in a bank and in
  cached generation; a plain file loads back into an additive model
  (`unfold`) and a transfer start reproduces its source;
- encoders and T5 are refused, before anything is built.
"""

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptConfig
from keras_prompt import PromptEmbedding
from keras_prompt.initializers import FromPromptFile
from keras_prompt.training.training_checkpoint import checkpoint_groups
from tests.test_case import TestCase
from tests.test_case import get_kind
from tests.test_case import padded_inputs
from tests.test_case import random_prompt
from tests.test_case import registered_families
from tests.test_case import served_by_bank
from tests.test_case import spread_weights
from tests.test_case import task_data
from tests.test_case import tiny_backbone
from tests.test_case import tiny_task
from tests.test_case import to_numpy

FAMILIES = registered_families()
DECODERS = [f for f in FAMILIES if get_kind(f) == "causal"]
ADD = PromptConfig(length=3, deep=True, deep_mode="add")


def backbone_of(family):
    return spread_weights(tiny_backbone(family, num_layers=3))


def randomised(task, seed=3):
    """The task with a random input prompt and random offsets."""
    return random_prompt(task, seed, scale=0.5)


def relative_positions(model):
    return model.adapter.max_sequence_length() is None


@pytest.mark.parametrize("family", DECODERS)
class TestAdditiveDeepPrompts(TestCase):
    def test_starts_as_the_shallow_model(self, family):
        backbone = backbone_of(family)
        deep = FrozenBackbone(backbone, prompt_config=ADD)
        offsets = to_numpy(deep.prompt_embedding.embeddings)[1:]
        assert not offsets.any()
        shallow = FrozenBackbone(backbone, prompt_length=3)
        shallow.assign_prompts(to_numpy(deep.prompt_embedding.embeddings)[0])
        x = padded_inputs("right")
        self.assertAllClose(deep(x), shallow(x), atol=1e-6)

    def test_the_input_prompt_reaches_every_layer(self, family):
        """What enters deep layer `l` at the prompt positions moves with
        the input prompt when added, and is the layer's own prompt when
        replaced: there the input prompt reaches the output only through
        the first layer's attention."""
        backbone = backbone_of(family)
        x = padded_inputs("right")
        moved = {}
        for mode in ("replace", "add"):
            model = FrozenBackbone(
                backbone, prompt_config=ADD.replace(deep_mode=mode)
            )
            values = to_numpy(model.prompt_embedding.embeddings).copy()
            values[1:] = np.random.default_rng(1).normal(size=values[1:].shape)
            entering = []
            for shift in (0.0, 1.0):
                changed = values.copy()
                changed[0] += shift
                model.prompt_embedding.embeddings.assign(changed)
                # What each deep layer's prompt positions hold once the
                # prompt has acted (the states after its update).
                layers = model.backbone.transformer_layers
                seen = {}
                with model.prompt_embedding.recording(apply=True) as states:
                    model(x)
                for layer, state in states.items():
                    update = to_numpy(changed[layer])
                    if mode == "add":
                        update = update + to_numpy(state)
                    seen[layer] = update
                entering.append(seen)
            assert len(entering[0]) == len(layers) - 1
            moved[mode] = min(
                np.abs(entering[1][k] - entering[0][k]).max()
                for k in entering[0]
            )
        assert moved["replace"] == 0.0
        assert moved["add"] > 1e-3

    def test_folds_exactly_into_a_replacing_prompt(self, family, tmp_path):
        backbone = backbone_of(family)
        task = randomised(tiny_task(backbone, prompt_config=ADD))
        # A training step moves the input prompt and the offsets.
        x, y, sample_weight = task_data(family)
        raw = to_numpy(task.backbone.prompt_embedding.embeddings).copy()
        task.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        task.fit(x, y, sample_weight=sample_weight, epochs=1, verbose=0)
        moved = np.abs(
            to_numpy(task.backbone.prompt_embedding.embeddings) - raw
        )
        assert moved[0].max() > 0 and moved[1:].max() > 0
        path = str(tmp_path / "added.prompt.safetensors")
        task.save_prompts(path)
        plain = tiny_task(
            backbone, prompt_config=ADD.replace(deep_mode="replace")
        )
        metadata = plain.load_prompts(path)
        assert metadata["prompt_config"]["deep_mode"] == "add"
        sides = (
            ("right", "left")
            if relative_positions(plain.backbone)
            else ("right",)
        )
        for side in sides:
            rows = padded_inputs(side)
            self.assertAllClose(plain(rows), task(rows), atol=1e-5)
        # The folded vectors are not the offsets.
        folded = plain.backbone.prompt_values()
        offsets = to_numpy(task.backbone.prompt_embedding.embeddings)
        self.assertAllEqual(folded[0], offsets[0])
        assert np.abs(folded[1:] - offsets[1:]).max() > 1e-3
        # A bank serves the folded prompt, from the file and from the
        # trained model itself.
        served = served_by_bank(plain, {"added": path, "model": task}, x)
        for outputs in served.values():
            self.assertAllClose(outputs, task(x), atol=1e-5)
        # The file loads back into an additive model (offsets that fold
        # into it) and so does the trained one's state into a checkpoint.
        again = tiny_task(backbone, prompt_config=ADD)
        again.load_prompts(path)
        self.assertAllClose(
            again.backbone.prompt_embedding.embeddings, offsets, atol=1e-5
        )
        self.assertAllClose(again(x), task(x), atol=1e-5)
        groups = dict(checkpoint_groups(task))
        assert groups["reparameterization"] == [
            task.backbone.prompt_embedding.embeddings
        ]

    def test_bank_and_cached_generation(self, family):
        backbone = backbone_of(family)
        config = ADD.replace(num_prompts=2)
        added = randomised(
            PromptCausalLM(FrozenBackbone(backbone, prompt_config=config))
        )
        plain = PromptCausalLM(
            FrozenBackbone(
                backbone, prompt_config=config.replace(deep_mode="replace")
            )
        )
        plain.backbone.assign_prompts(added.backbone.prompt_values())
        x = padded_inputs("right")
        x["prompt_ids"] = np.array([1, 0], "int32")
        self.assertAllClose(plain(x), added(x), atol=1e-5)
        for task in (added, plain):
            task.compile(jit_compile=False)
        self.assertAllEqual(
            added.generate_step(x, stop_token_ids=None)["token_ids"],
            plain.generate_step(x, stop_token_ids=None)["token_ids"],
        )

    def test_transfer_start_reproduces_the_source(self, family, tmp_path):
        backbone = backbone_of(family)
        source = randomised(
            FrozenBackbone(
                backbone, prompt_config=ADD.replace(deep_mode="replace")
            )
        )
        path = str(tmp_path / "source.prompt.safetensors")
        source.save_prompts(path)
        target = FrozenBackbone(
            backbone,
            prompt_config=ADD.replace(initializer=FromPromptFile(path)),
        )
        self.assertAllClose(
            target.prompt_values(), source.prompt_values(), atol=1e-5
        )
        x = padded_inputs("right")
        self.assertAllClose(target(x), source(x), atol=1e-5)

    def test_late_additive_prompt_folds(self, family):
        backbone = backbone_of(family)
        config = ADD.replace(start_layer=1)
        added = FrozenBackbone(backbone, prompt_config=config)
        # Starts as the late prompt alone: the offsets are zero.
        assert not to_numpy(added.prompt_embedding.embeddings)[1:].any()
        randomised(added)
        plain = FrozenBackbone(
            backbone, prompt_config=config.replace(deep_mode="replace")
        )
        plain.assign_prompts(added.prompt_values())
        x = padded_inputs("right")
        self.assertAllClose(plain(x), added(x), atol=1e-5)


@pytest.mark.parametrize(
    "family", [f for f in FAMILIES if get_kind(f) != "causal"][:2]
)
def test_encoders_are_refused(family):
    with pytest.raises(ValueError, match="deep_mode='add'.*decoder-only"):
        FrozenBackbone(tiny_backbone(family), prompt_config=ADD)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"deep_mode": "sum"}, "deep_mode"),
        ({"deep": False}, "deep=True"),
    ],
)
def test_bad_configs(changes, message):
    with pytest.raises(ValueError, match=message):
        ADD.replace(**changes)


def test_config_round_trips():
    backbone = tiny_backbone(DECODERS[0])
    model = FrozenBackbone(backbone, prompt_config=ADD)
    revived = FrozenBackbone.from_config(model.get_config())
    assert revived.prompt_config == ADD
    assert revived.prompt_embedding.deep_mode == "add"
    layer = model.prompt_embedding
    assert type(layer).from_config(layer.get_config()).deep_mode == "add"


def test_layer_adds_to_the_hidden_states():
    """`PromptEmbedding(deep_mode="add")` called with `layer`: the prompt
    positions (from each row's offset) hold the hidden states plus that
    layer's prompt; the other positions are unchanged."""
    layer = PromptEmbedding(length=2, depth=3, deep_mode="add")
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 5, 4)).astype("float32")
    layer(hidden)
    values = rng.normal(size=(3, 2, 4)).astype("float32")
    layer.embeddings.assign(values)
    out = to_numpy(layer(hidden, layer=2, offsets=np.array([0, 2])))
    expected = hidden.copy()
    expected[0, 0:2] += values[2]
    expected[1, 2:4] += values[2]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match="depth"):
        PromptEmbedding(length=2, deep_mode="add")
    with pytest.raises(ValueError, match="deep_mode"):
        PromptEmbedding(length=2, depth=2, deep_mode="sum")
