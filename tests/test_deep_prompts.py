"""Deep prompts (P-Tuning v2): a prompt per transformer layer.

Anchors, for every registered family:

- a deep model whose layers `1..` hold the hidden states the shallow model
  (same input prompt) produces at the prompt positions gives the shallow
  model's outputs (`init_deep_prompts(inputs)`);
- so a deep prompt whose input layer holds token embeddings, its layers
  set on the input, gives the plain backbone's outputs on those tokens
  inserted where the family puts the prompt;
- a decoder-only model starts (`deep_initializer="propagate"`) exactly as
  the shallow one on any input;
- random deep layers change the outputs (the checks above can fail);
- cached generation equals re-running the whole model per token.

Prompt files, banks, configs and argument errors follow. The shared
per-family checks (`.keras` and prompt-file round trips, training, banks,
strings, export) run with deep prompts in `tests/test_families.py`.
"""

import functools

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptEmbedding
from keras_prompt import PromptSeq2SeqLM
from keras_prompt.serving import PromptBank
from tests.test_case import PROMPT_TOKENS
from tests.test_case import NamedOutputs
from tests.test_case import TestCase
from tests.test_case import backbone_inputs
from tests.test_case import get_kind
from tests.test_case import padded_inputs
from tests.test_case import random_prompt
from tests.test_case import reference_inputs
from tests.test_case import registered_families
from tests.test_case import spread_weights
from tests.test_case import t5_inputs
from tests.test_case import tiny_backbone
from tests.test_case import tiny_task
from tests.test_case import to_numpy

FAMILIES = registered_families()
DECODERS = [f for f in FAMILIES if get_kind(f) == "causal"]
GENERATING = [f for f in FAMILIES if get_kind(f) in ("causal", "seq2seq")]


@functools.lru_cache(maxsize=None)
def backbone_of(family):
    """The family's tiny backbone at a scale where prompts matter (shared:
    nothing here changes its weights)."""
    return spread_weights(tiny_backbone(family))


def sides(family):
    return ("right", "left") if get_kind(family) == "causal" else ("right",)


def rows_of(inputs):
    """Each example of a batch as a batch of one."""
    batch = len(next(iter(inputs.values())))
    return [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(batch)]


def outputs_of(model, inputs):
    return to_numpy(NamedOutputs(model)(inputs, training=False))


def max_difference(a, b):
    return max(np.abs(a[name] - b[name]).max() for name in a)


def absolute_positions(backbone):
    """Whether positions are absolute (GPT-2): a left-padded prompt then
    sits at other positions than the probe's, so its hidden states after
    layer 0 differ from the propagated deep layers."""
    return backbone.adapter.max_sequence_length() is not None


def random_values(shape, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, scale, shape).astype("float32")


@pytest.mark.parametrize("family", FAMILIES)
class TestExactness(TestCase):
    def test_deep_set_on_input_reproduces_shallow(self, family):
        backbone = backbone_of(family)
        shallow = FrozenBackbone(backbone, prompt_length=3)
        deep = FrozenBackbone(
            backbone, prompt_length=3, deep=True, deep_initializer="zeros"
        )
        layer_zero = random_values(shallow.prompt_values().shape, 1)
        shallow.assign_prompts(layer_zero)
        for side in sides(family):
            for row in rows_of(backbone_inputs(family, side)):
                # Random deep layers first: `init_deep_prompts` sets them.
                values = random_values(deep.prompt_values().shape, 2)
                values[0] = layer_zero
                deep.assign_prompts(values)
                before = max_difference(
                    outputs_of(deep, row), outputs_of(shallow, row)
                )
                assert before > 1e-2, (side, before)
                deep.init_deep_prompts(row)
                self.assertAllEqual(deep.prompt_values()[0], layer_zero)
                self.assertAllClose(
                    outputs_of(deep, row), outputs_of(shallow, row), atol=1e-5
                )

    def test_token_bank_set_on_input_equals_plain_backbone(self, family):
        # A bank of deep prompts whose input layers hold the embeddings of
        # tokens, set on one example per prompt: each row gives the plain
        # backbone on its prompt's tokens inserted in it.
        backbone = backbone_of(family)
        tokens = [PROMPT_TOKENS, PROMPT_TOKENS[::-1]]
        bank = FrozenBackbone(
            backbone,
            prompt_length=len(PROMPT_TOKENS),
            num_prompts=2,
            deep=True,
            deep_initializer="random_normal",
        )
        table = to_numpy(backbone.token_embedding.embeddings)
        values = bank.prompt_values().copy()
        values[:, 0] = table[np.asarray(tokens)]
        ids = np.array([1, 0], "int32")  # Row 0 uses prompt 1.
        for side in sides(family):
            bank.assign_prompts(values)
            inputs = backbone_inputs(family, side)
            prompted = dict(inputs, prompt_ids=ids)
            expected = [
                outputs_of(backbone, reference_inputs(family, tokens[i])(row))
                for i, row in zip(ids, rows_of(inputs))
            ]
            expected = {
                name: np.concatenate([e[name] for e in expected])
                for name in expected[0]
            }
            assert max_difference(outputs_of(bank, prompted), expected) > 1e-2
            bank.init_deep_prompts(prompted)
            actual = outputs_of(bank, prompted)
            for name in expected:
                np.testing.assert_allclose(
                    actual[name], expected[name], atol=1e-5, err_msg=name
                )

    def test_random_deep_layers_change_the_outputs(self, family):
        backbone = backbone_of(family)
        shallow = FrozenBackbone(backbone, prompt_length=3)
        deep = FrozenBackbone(
            backbone,
            prompt_length=3,
            deep=True,
            deep_initializer=keras.initializers.RandomNormal(seed=3),
        )
        shallow.assign_prompts(deep.prompt_values()[0])
        inputs = backbone_inputs(family)
        expected = outputs_of(shallow, inputs)
        actual = outputs_of(deep, inputs)
        for name in expected:
            assert np.abs(actual[name] - expected[name]).max() > 1e-2, name
        # Every layer's prompt counts on its own.
        for layer in range(1, deep.prompt_depth):
            values = deep.prompt_values().copy()
            # Not a constant shift, which pre-layer norms would remove.
            values[layer] += random_values(values[layer].shape, layer)
            deep.assign_prompts(values)
            changed = outputs_of(deep, inputs)
            assert max_difference(changed, actual) > 1e-2, layer
            actual = changed

    def test_propagate_starts_as_shallow(self, family):
        backbone = backbone_of(family)
        deep = FrozenBackbone(backbone, prompt_length=3, deep=True)
        assert deep.deep_initializer == "propagate"
        values = deep.prompt_values()
        assert values.shape == (deep.prompt_depth, 3, backbone.hidden_dim)
        assert deep.prompt_depth == deep.adapter.num_prompted_layers()
        assert np.isfinite(values).all()
        # Layers 1.. were set (not left zero, not layer 0's vectors).
        for layer in range(1, deep.prompt_depth):
            assert np.abs(values[layer]).max() > 1e-3
            assert np.abs(values[layer] - values[0]).max() > 1e-3
        # The same layer 0 propagates to the same layers.
        deep.assign_prompts(np.zeros_like(values) + values[:1])
        deep.init_deep_prompts()
        self.assertAllClose(deep.prompt_values(), values, atol=1e-6)
        if get_kind(family) != "causal":
            # The prompt positions of an encoder also read the text, which
            # the probe leaves out: no exact start there.
            return
        shallow = FrozenBackbone(backbone, prompt_length=3)
        shallow.assign_prompts(values[0])
        for side in sides(family):
            if side == "left" and absolute_positions(deep):
                continue
            inputs = backbone_inputs(family, side)
            self.assertAllClose(
                outputs_of(deep, inputs), outputs_of(shallow, inputs)
            )
        # After a new layer 0, `init_deep_prompts()` starts over from it.
        layer_zero = random_values(values[0].shape, 4)
        deep.assign_prompts(np.concatenate([layer_zero[None], values[1:]]))
        shallow.assign_prompts(layer_zero)
        inputs = backbone_inputs(family, "right")
        stale = outputs_of(deep, inputs)
        assert max_difference(stale, outputs_of(shallow, inputs)) > 1e-3
        deep.init_deep_prompts()
        self.assertAllClose(
            outputs_of(deep, inputs), outputs_of(shallow, inputs)
        )


@pytest.mark.parametrize("family", DECODERS)
def test_propagate_bank_starts_as_each_shallow_prompt(family):
    # Each prompt of a bank propagates its own input layer.
    backbone = backbone_of(family)
    bank = FrozenBackbone(backbone, prompt_length=3, num_prompts=2, deep=True)
    values = bank.prompt_values()
    shallow = FrozenBackbone(backbone, prompt_length=3, num_prompts=2)
    shallow.assign_prompts(values[:, 0])
    for side in sides(family):
        if side == "left" and absolute_positions(bank):
            continue
        ids = np.array([1, 0], "int32")
        inputs = dict(backbone_inputs(family, side), prompt_ids=ids)
        np.testing.assert_allclose(
            outputs_of(bank, inputs)["sequence_output"],
            outputs_of(shallow, inputs)["sequence_output"],
            atol=1e-5,
            err_msg=side,
        )


# -- generation ---------------------------------------------------------------
def causal_greedy_uncached(task, x):
    """Greedy decoding re-running the whole prompted model every step."""
    tokens = x["token_ids"].copy()
    given = x["padding_mask"].astype(bool)
    for i in range(given.sum(1).min(), tokens.shape[1]):
        inputs = dict(x, token_ids=tokens, padding_mask=np.ones_like(tokens))
        logits = to_numpy(task(inputs))
        tokens[:, i] = np.where(
            given[:, i], tokens[:, i], logits[:, i - 1].argmax(-1)
        )
    return tokens


def seq2seq_greedy_uncached(task, x):
    """Greedy decoding re-running the whole prompted model every step."""
    tokens = x["decoder_token_ids"].copy()
    # Generated tokens count as real: the causal mask hides the future.
    mask = np.ones_like(tokens, dtype=bool)
    for i in range(1, tokens.shape[1]):
        logits = to_numpy(
            task(dict(x, decoder_token_ids=tokens, decoder_padding_mask=mask))
        )
        tokens[:, i] = logits[:, i - 1].argmax(-1)
    return tokens


def generation_inputs(family):
    """Right-padded token inputs (as preprocessors make them), and the
    name of the generated token ids."""
    if get_kind(family) == "causal":
        return padded_inputs("right"), "token_ids"
    x = t5_inputs()
    x["decoder_token_ids"] = np.zeros((2, 5), "int32")
    x["decoder_padding_mask"] = np.array([[1, 0, 0, 0, 0]] * 2, "int32")
    return x, "decoder_token_ids"


def cached_and_uncached(wrapped, family, num_prompts=1):
    """Greedy generation of the family's task on `wrapped` (its prompt
    randomised), cached and by re-running the whole model per token."""
    if get_kind(family) == "causal":
        task, greedy = PromptCausalLM(wrapped), causal_greedy_uncached
    else:
        task, greedy = PromptSeq2SeqLM(wrapped), seq2seq_greedy_uncached
    task.compile(jit_compile=False)
    random_prompt(task, seed=5)
    x, key = generation_inputs(family)
    if num_prompts > 1:
        x["prompt_ids"] = np.array([1, 0], "int32")
    cached = to_numpy(task.generate_step(x, stop_token_ids=None))
    expected = greedy(task, x)
    # Something was generated.
    assert (expected != x[key]).any()
    return cached[key], expected


@pytest.mark.parametrize("num_prompts", [1, 2], ids=["prompt", "bank"])
@pytest.mark.parametrize("family", GENERATING)
class TestGeneration(TestCase):
    def test_cached_generation_equals_uncached_greedy(
        self, family, num_prompts
    ):
        backbone = backbone_of(family)
        wrapped = FrozenBackbone(
            backbone, prompt_length=3, num_prompts=num_prompts, deep=True
        )
        cached, expected = cached_and_uncached(wrapped, family, num_prompts)
        self.assertAllEqual(cached, expected)

    def test_cached_pass_holds_the_deep_prompts(self, family, num_prompts):
        # Logits, not tokens: what a cached pass computes equals the
        # uncached model, and would not without the deep layers.
        backbone = backbone_of(family)
        wrapped = FrozenBackbone(
            backbone, prompt_length=3, num_prompts=num_prompts, deep=True
        )
        random_prompt(wrapped, seed=6)
        x, _ = generation_inputs(family)
        prompt_ids = None
        if num_prompts > 1:
            prompt_ids = np.array([1, 0], "int32")
            x["prompt_ids"] = prompt_ids
        if get_kind(family) == "seq2seq":
            # Generation runs the prompted encoder once.
            task = PromptSeq2SeqLM(wrapped)
            encoded, mask = task.call_encoder_with_mask(
                x["encoder_token_ids"], x["encoder_padding_mask"], prompt_ids
            )
            full = to_numpy(wrapped(x))["encoder_sequence_output"]
            self.assertAllClose(encoded, full)
            self.assertAllEqual(mask[:, :3], np.ones((2, 3)))
        else:
            full = self.check_cached_steps(wrapped, prompt_ids)
        # The deep layers count: without them the outputs differ.
        values = wrapped.prompt_values()
        depth = wrapped.prompt_depth
        wrapped.assign_prompts(np.repeat(values[..., :1, :, :], depth, -3))
        if get_kind(family) == "seq2seq":
            without = to_numpy(wrapped(x))["encoder_sequence_output"]
        else:
            without = self.uncached_logits(wrapped, prompt_ids)
        assert np.abs(without - full).max() > 1e-2

    def uncached_logits(self, wrapped, prompt_ids):
        x = {"token_ids": CACHE_TOKENS, "padding_mask": np.ones((2, 6), bool)}
        if prompt_ids is not None:
            x["prompt_ids"] = prompt_ids
        return to_numpy(PromptCausalLM(wrapped)(x))

    def check_cached_steps(self, wrapped, prompt_ids, given=3):
        """Prefill with the first `given` tokens (padding after them, as
        `generate_step` does), then one cached step per token: each step's
        logits equal the uncached model's at that position."""
        adapter, length = wrapped.adapter, wrapped.prompt_length
        batch, total = CACHE_TOKENS.shape
        mask = np.arange(total)[None, :] < given
        mask = np.repeat(mask, batch, 0)
        cache = adapter.init_cache(batch, length + total, "float32")
        _, _, cache = adapter.call_with_cache(
            np.where(mask, CACHE_TOKENS, 0),
            cache,
            0,
            prompt=wrapped.prompt_embedding,
            prompt_ids=prompt_ids,
            padding_mask=mask,
        )
        full = self.uncached_logits(wrapped, prompt_ids)
        for i in range(given, total):
            logits, _, cache = adapter.call_with_cache(
                CACHE_TOKENS[:, i - 1 : i], cache, length + i - 1
            )
            self.assertAllClose(logits[:, 0], full[:, i - 1], atol=1e-4)
        return full


CACHE_TOKENS = np.array([[3, 4, 6, 7, 9, 5], [8, 9, 10, 11, 12, 2]], "int32")


# -- prompt files and banks ---------------------------------------------------
FILE_FAMILY = "llama"


def deep_backbone(family=FILE_FAMILY, seed=6, **kwargs):
    wrapped = FrozenBackbone(
        backbone_of(family), prompt_length=3, deep=True, **kwargs
    )
    wrapped.assign_prompts(random_values(wrapped.prompt_values().shape, seed))
    return wrapped


class TestPromptFiles(TestCase):
    @pytest.mark.all_backends
    def test_round_trip(self, tmp_path):
        wrapped = deep_backbone()
        path = str(tmp_path / "deep.prompt.safetensors")
        wrapped.save_prompts(path)
        other = FrozenBackbone(backbone_of(FILE_FAMILY), 3, deep=True)
        metadata = other.load_prompts(path)
        assert metadata["prompt_depth"] == wrapped.prompt_depth == 2
        self.assertAllEqual(other.prompt_values(), wrapped.prompt_values())
        inputs = padded_inputs("left")
        self.assertAllEqual(other(inputs), wrapped(inputs))
        settings = FrozenBackbone.prompt_file_settings(metadata)
        assert settings == {
            "prompt_length": 3,
            "num_prompts": 1,
            "variable_length": False,
            "deep": True,
            "start_layer": 0,
        }
        # Shallow files stay as they were: no `prompt_depth`.
        shallow = FrozenBackbone(backbone_of(FILE_FAMILY), prompt_length=3)
        shallow_path = str(tmp_path / "shallow.prompt.safetensors")
        shallow.save_prompts(shallow_path)
        metadata = shallow.load_prompts(shallow_path)
        assert "prompt_depth" not in metadata
        assert FrozenBackbone.prompt_file_settings(metadata)["deep"] is False

    def test_deep_and_shallow_files_do_not_mix(self, tmp_path):
        deep = deep_backbone()
        shallow = FrozenBackbone(backbone_of(FILE_FAMILY), prompt_length=3)
        paths = {
            name: str(tmp_path / f"{name}.prompt.safetensors")
            for name in ("deep", "shallow")
        }
        deep.save_prompts(paths["deep"])
        shallow.save_prompts(paths["shallow"])
        before = shallow.prompt_values().copy()
        message = "deep prompts \\(2 layers; deep=True\\).*deep=True"
        with pytest.raises(ValueError, match=message) as error:
            shallow.load_prompts(paths["deep"])
        assert paths["deep"] in str(error.value)
        self.assertAllEqual(shallow.prompt_values(), before)
        message = "a shallow prompt.*deep=False"
        with pytest.raises(ValueError, match=message) as error:
            deep.load_prompts(paths["shallow"])
        assert paths["shallow"] in str(error.value)
        # Task models and banks refuse them the same way.
        task = tiny_task(backbone_of(FILE_FAMILY), deep=True)
        with pytest.raises(ValueError, match="deep=False"):
            task.load_prompts(paths["shallow"])
        with pytest.raises(ValueError, match="deep=False"):
            PromptBank(task).add_task("x", paths["shallow"])

    def test_from_preset_takes_deep_from_the_file(self, tmp_path):
        wrapped = deep_backbone()
        path = str(tmp_path / "deep.prompt.safetensors")
        wrapped.save_prompts(path)
        preset = str(tmp_path / "preset")
        backbone_of(FILE_FAMILY).save_to_preset(preset)
        restored = FrozenBackbone.from_preset(preset, prompts=path)
        assert restored.deep and restored.prompt_depth == 2
        self.assertAllEqual(restored.prompt_values(), wrapped.prompt_values())
        inputs = padded_inputs("right")
        self.assertAllClose(restored(inputs), wrapped(inputs))
        with pytest.raises(ValueError, match="`deep=False` contradicts"):
            FrozenBackbone.from_preset(preset, prompts=path, deep=False)

    @pytest.mark.parametrize("family", ["t5", "gpt2", "bert"])
    def test_bank_file_round_trip(self, family, tmp_path):
        # A bank of deep tasks saved to one file, restored into a new bank
        # and task by task into standalone models.
        backbone = backbone_of(family)
        tasks = {
            name: random_prompt(tiny_task(backbone, deep=True), seed)
            for name, seed in zip("abc", (7, 8, 9))
        }
        bank = PromptBank(tasks["a"], capacity=4)
        for name, model in tasks.items():
            bank.add_task(name, model)
            self.assertAllEqual(
                bank.prompt(name), model.backbone.prompt_values()
            )
        path = str(tmp_path / "bank.prompt.safetensors")
        bank.save(path)
        other = PromptBank(tiny_task(backbone, deep=True), capacity=4)
        assert other.add_tasks(path) == ["a", "b", "c"]
        for name, model in tasks.items():
            for key, value in bank.task_state(name).items():
                self.assertAllEqual(other.task_state(name)[key], value)
        x = backbone_inputs(family)
        names = ["c", "a"]
        self.assertAllEqual(
            other.model(dict(x, prompt_ids=other.task_ids(names))),
            bank.model(dict(x, prompt_ids=bank.task_ids(names))),
        )
        single = str(tmp_path / "b.prompt.safetensors")
        bank.save_task("b", single)
        alone = tiny_task(backbone, deep=True)
        alone.load_prompts(single)
        self.assertAllEqual(
            alone.backbone.prompt_values(),
            tasks["b"].backbone.prompt_values(),
        )
        self.assertAllEqual(alone(x), tasks["b"](x))


# -- configs and arguments ----------------------------------------------------
class TestConfig(TestCase):
    @pytest.mark.parametrize(
        "deep_initializer",
        ["propagate", keras.initializers.RandomNormal(stddev=0.02, seed=1)],
        ids=["propagate", "random_normal"],
    )
    def test_backbone_config_round_trip(self, deep_initializer, tmp_path):
        wrapped = FrozenBackbone(
            backbone_of("gpt2"),
            prompt_length=3,
            deep=True,
            deep_initializer=deep_initializer,
        )
        config = wrapped.get_config()["prompt_config"]
        assert config["deep"] is True
        revived = self.run_serialization_test(wrapped)
        assert revived.deep and revived.prompt_depth == wrapped.prompt_depth
        assert (
            revived.get_config()["prompt_config"]["deep_initializer"]
            == (config["deep_initializer"])
        )
        if isinstance(deep_initializer, str):
            assert config["deep_initializer"] == "propagate"
        else:
            assert isinstance(
                revived.deep_initializer, keras.initializers.RandomNormal
            )
            assert revived.deep_initializer.stddev == 0.02
        wrapped.assign_prompts(
            random_values(wrapped.prompt_values().shape, seed=10)
        )
        restored = self.run_model_saving_test(
            wrapped, padded_inputs("left"), tmp_path
        )
        assert restored.deep
        self.assertAllEqual(restored.prompt_values(), wrapped.prompt_values())

    def test_embedding_config_and_shapes(self):
        layer = PromptEmbedding(length=3, depth=4, num_prompts=2)
        x = random_values((2, 5, 8), seed=11)
        layer(x, prompt_ids=np.array([0, 1]))
        assert tuple(layer.embeddings.shape) == (2, 4, 3, 8)
        assert layer.get_config()["depth"] == 4
        revived = self.run_serialization_test(layer)
        assert revived.depth == 4 and revived.deep
        shallow = PromptEmbedding(length=3)
        assert shallow.get_config()["depth"] is None and not shallow.deep

    def test_replacing_layers_is_a_reference_computation(self):
        layer = PromptEmbedding(length=2, depth=3, num_prompts=3)
        x = random_values((2, 6, 4), seed=12)
        ids = np.array([2, 0], "int32")
        layer(x, prompt_ids=ids)
        values = random_values(tuple(layer.embeddings.shape), seed=13)
        layer.embeddings.assign(values)
        # Layer 0 is prepended.
        expected = np.concatenate([values[ids, 0], x], 1)
        self.assertAllEqual(layer(x, prompt_ids=ids), expected)
        # Layer 2 replaces positions [offset, offset + 2) of each row.
        for offsets in (1, np.array([0, 3], "int32")):
            expected = x.copy()
            for row, start in enumerate(np.broadcast_to(offsets, (2,))):
                expected[row, start : start + 2] = values[ids[row], 2]
            actual = layer(x, prompt_ids=ids, layer=2, offsets=offsets)
            self.assertAllEqual(actual, expected)
            # Recording leaves the states and reads the prompt positions.
            with layer.recording() as states:
                unchanged = layer(x, prompt_ids=ids, layer=2, offsets=offsets)
            self.assertAllEqual(unchanged, x)
            starts = np.broadcast_to(offsets, (2,))
            self.assertAllEqual(
                states[2],
                np.stack([x[i, s : s + 2] for i, s in enumerate(starts)]),
            )

    @pytest.mark.parametrize(
        "kwargs",
        [{"depth": 0}, {"depth": True}, {"depth": 2.0}, {"depth": "2"}],
    )
    def test_bad_depth(self, kwargs):
        with pytest.raises(ValueError, match="`depth`"):
            PromptEmbedding(length=3, **kwargs)

    @pytest.mark.parametrize("layer", [0, 3, -1])
    def test_layer_out_of_range(self, layer):
        deep = PromptEmbedding(length=2, depth=3)
        x = random_values((1, 4, 4), seed=14)
        deep(x)
        with pytest.raises(ValueError, match=r"`layer` must be in \[1, 3\)"):
            deep(x, layer=layer)
        shallow = PromptEmbedding(length=2)
        shallow(x)
        with pytest.raises(ValueError, match="`layer`"):
            shallow(x, layer=1)

    def test_bad_backbone_arguments(self):
        backbone = backbone_of("llama")
        for deep in ("yes", 1):
            with pytest.raises(TypeError, match="`deep` must be a bool"):
                FrozenBackbone(backbone, prompt_length=3, deep=deep)
        # `None` is "not given": the `PromptConfig` default.
        assert not FrozenBackbone(backbone, prompt_length=3, deep=None).deep
        with pytest.raises(ValueError, match="`deep_initializer`"):
            FrozenBackbone(
                backbone, prompt_length=3, deep=True, deep_initializer="nope"
            )
        shallow = FrozenBackbone(backbone, prompt_length=3)
        assert shallow.prompt_depth is None and not shallow.deep
        with pytest.raises(ValueError, match="shallow prompt"):
            shallow.init_deep_prompts()
        deep = FrozenBackbone(backbone, prompt_length=3, deep=True)
        with pytest.raises(ValueError, match="one example"):
            deep.init_deep_prompts(padded_inputs("right"))
        with pytest.raises(ValueError, match="deep=True"):
            deep.assign_prompts(np.zeros((3, backbone.hidden_dim)))
