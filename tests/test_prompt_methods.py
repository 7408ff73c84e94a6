"""`PromptConfig` (one prompt specification), residual reparameterisation
and transfer initialisation (`FromPromptFile`)."""

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt import PromptConfig
from keras_prompt.initializers import FromPromptFile
from keras_prompt.layers import ResidualReparameterization
from tests.serving import serving_fixtures as fixtures
from tests.tasks.test_from_preset_prompts import save_preset
from tests.test_case import TestCase
from tests.test_case import random_prompt
from tests.test_case import registered_families
from tests.test_case import served_by_bank
from tests.test_case import spread_weights
from tests.test_case import task_data
from tests.test_case import tiny_backbone
from tests.test_case import tiny_task
from tests.test_case import to_numpy

FAMILIES = registered_families()


class TestPromptConfig(TestCase):
    def test_round_trips(self):
        config = PromptConfig(
            length=4,
            deep=True,
            start_layer=1,
            initializer="sampled_vocab",
            deep_initializer=keras.initializers.Zeros(),
            reparameterization="residual",
        )
        assert config.reparameterization["method"] == "residual"
        assert PromptConfig.from_config(config.get_config()) == config
        serialized = keras.saving.serialize_keras_object(config)
        revived = keras.saving.deserialize_keras_object(serialized)
        assert revived == config
        wrapped = FrozenBackbone(tiny_backbone("bert"), prompt_config=config)
        revived = FrozenBackbone.from_config(wrapped.get_config())
        assert revived.prompt_config.get_config() == config.get_config()

    def test_keywords_become_the_config_in_one_place(self):
        backbone = tiny_backbone("bert")
        by_keywords = FrozenBackbone(backbone, prompt_length=4, deep=True)
        by_config = FrozenBackbone(
            backbone, prompt_config=PromptConfig(length=4, deep=True)
        )
        assert by_keywords.prompt_config == by_config.prompt_config
        # A keyword agreeing with the config is fine; one contradicting it
        # is one error naming both.
        FrozenBackbone(
            backbone, prompt_length=4, prompt_config=PromptConfig(length=4)
        )
        with pytest.raises(ValueError, match="prompt_length=5"):
            FrozenBackbone(
                backbone, prompt_length=5, prompt_config=PromptConfig(length=4)
            )
        with pytest.raises(TypeError, match="unknown prompt keywords"):
            PromptConfig.resolve(None, prompt_lenght=4)
        with pytest.raises(TypeError, match="prompt_config"):
            FrozenBackbone(backbone, prompt_config={"length": "4"}.items())

    @pytest.mark.parametrize(
        "changes, name",
        [
            ({"length": 0}, "length"),
            ({"num_prompts": 1, "variable_length": True}, "variable_length"),
            ({"deep": "yes"}, "deep"),
            ({"start_layer": 1.5}, "start_layer"),
            ({"reparameterization": "mlp"}, "reparameterization"),
            (
                {"reparameterization": {"method": "residual", "width": 3}},
                "width",
            ),
            ({"deep_initializer": "nope"}, "deep_initializer"),
        ],
    )
    def test_bad_values(self, changes, name):
        with pytest.raises((TypeError, ValueError), match=name):
            PromptConfig(**changes)

    def test_recipe_takes_it(self):
        from keras_prompt.training import Recipe

        config = PromptConfig(length=7, deep=True, start_layer=1)
        recipe = Recipe(prompt_config=config)
        assert (recipe.prompt_length, recipe.deep, recipe.start_layer) == (
            7,
            True,
            1,
        )
        assert recipe.prompt_settings().start_layer == 1
        with pytest.raises(ValueError, match="prompt_length=9"):
            Recipe(prompt_config=config, prompt_length=9)


class TestResidualReparameterization(TestCase):
    def test_layer(self):
        layer = self.run_layer_test(
            ResidualReparameterization,
            {"bottleneck_dim": 5},
            np.random.default_rng(0).random((2, 4, 8), "float32"),
            (2, 4, 8),
            expected_num_trainable_weights=6,
        )
        # The paper's form: p + LayerNorm(up(relu(down(p)))).
        p = np.random.default_rng(1).random((3, 8), "float32")
        down, down_b = (to_numpy(w) for w in layer.down.weights)
        up, up_b = (to_numpy(w) for w in layer.up.weights)
        hidden = np.maximum(p @ down + down_b, 0) @ up + up_b
        mean = hidden.mean(-1, keepdims=True)
        var = hidden.var(-1, keepdims=True)
        expected = p + (hidden - mean) / np.sqrt(var + 1e-5)
        self.assertAllClose(layer(p), expected, atol=1e-5)

    @pytest.mark.parametrize("family", FAMILIES)
    def test_folded_file_gives_the_trained_outputs(self, family, tmp_path):
        backbone = spread_weights(tiny_backbone(family))
        config = PromptConfig(
            length=3,
            deep=True,
            reparameterization={"method": "residual", "bottleneck_dim": 6},
        )
        task = random_prompt(tiny_task(backbone, prompt_config=config), 1)
        reparameterizer = task.backbone.prompt_embedding.reparameterizer
        trained = {id(w) for w in task.trainable_weights}
        assert all(id(w) in trained for w in reparameterizer.weights)
        # A step trains the network too.
        x, y, sample_weight = task_data(family)
        before = [to_numpy(w).copy() for w in reparameterizer.weights]
        task.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        task.fit(x, y, sample_weight=sample_weight, epochs=1, verbose=0)
        moved = [
            np.abs(to_numpy(w) - b).max()
            for w, b in zip(reparameterizer.weights, before)
        ]
        assert min(moved) > 0
        path = str(tmp_path / "folded.prompt.safetensors")
        task.save_prompts(path)
        plain = tiny_task(
            backbone, prompt_config=config.replace(reparameterization=None)
        )
        plain.load_prompts(path)
        self.assertAllClose(plain(x), task(x), atol=1e-6)
        # Folded vectors are not the raw parameters.
        raw = to_numpy(task.backbone.prompt_embedding.embeddings)
        assert np.abs(plain.backbone.prompt_values() - raw).max() > 1e-3
        # A bank serves the folded prompt, from the file and from the
        # trained model itself.
        served = served_by_bank(plain, {"folded": path, "model": task}, x)
        for outputs in served.values():
            self.assertAllClose(outputs, task(x), atol=1e-5)
        # A file holds plain vectors: a reparameterised model refuses it.
        with pytest.raises(ValueError, match="folded"):
            task.load_prompts(path)


class TestFromPromptFile(TestCase):
    def test_transfer_starts_from_the_file(self, tmp_path):
        backbone = spread_weights(tiny_backbone("bert"))
        source = random_prompt(
            tiny_task(
                backbone, prompt_config=PromptConfig(length=3, deep=True)
            ),
            seed=2,
        )
        path = str(tmp_path / "source.prompt.safetensors")
        source.save_prompts(path)
        config = PromptConfig(
            length=3, deep=True, initializer=FromPromptFile(path)
        )
        target = tiny_task(backbone, num_classes=2, prompt_config=config)
        self.assertAllEqual(
            target.backbone.prompt_values(), source.backbone.prompt_values()
        )
        # A bank starts every prompt from it.
        bank = FrozenBackbone(
            backbone, prompt_config=config.replace(num_prompts=2)
        )
        for row in bank.prompt_values():
            self.assertAllEqual(row, source.backbone.prompt_values())
        # Serialises by path.
        revived = FromPromptFile.from_config(FromPromptFile(path).get_config())
        assert revived.path == path
        # A saved model does not need the source file to load.
        model_path = str(tmp_path / "target.keras")
        target.save(model_path)
        import os

        os.remove(path)
        restored = keras.saving.load_model(model_path)
        self.assertAllEqual(
            restored.backbone.prompt_values(), target.backbone.prompt_values()
        )

    @pytest.mark.parametrize(
        "changes, name",
        [
            ({"length": 4}, "length"),
            ({"deep": False}, "prompt_depth|deep"),
            ({"start_layer": 1}, "start_layer"),
        ],
    )
    def test_mismatch_is_one_error(self, tmp_path, changes, name):
        backbone = tiny_backbone("bert")
        source = FrozenBackbone(backbone, prompt_length=3, deep=True)
        path = str(tmp_path / "source.prompt.safetensors")
        source.save_prompts(path)
        config = PromptConfig(
            length=3, deep=True, initializer=FromPromptFile(path)
        ).replace(**changes)
        with pytest.raises(ValueError, match=name):
            FrozenBackbone(backbone, prompt_config=config)
        # Another backbone: refused by its fingerprint.
        other = tiny_backbone("bert", vocabulary_size=40)
        with pytest.raises(ValueError, match="source.prompt"):
            FrozenBackbone(
                other,
                prompt_config=PromptConfig(
                    length=3, deep=True, initializer=FromPromptFile(path)
                ),
            )

    def test_classifier_from_preset_takes_a_config(self, tmp_path):
        """`from_preset(prompt_config=...)`; a late prompt's file restores
        it through `from_preset(prompts=...)`."""
        folder = save_preset(fixtures.bert(), str(tmp_path / "bert"))
        model = PromptClassifier.from_preset(
            folder,
            num_classes=2,
            sequence_length=8,
            prompt_config=PromptConfig(length=2, deep=True, start_layer=1),
        )
        assert model.backbone.start_layer == 1
        random_prompt(model, 3)
        path = str(tmp_path / "late.prompt.safetensors")
        model.save_prompts(path)
        loaded = PromptClassifier.from_preset(
            folder, prompts=path, sequence_length=8
        )
        assert loaded.backbone.prompt_config.start_layer == 1
        texts = fixtures.TEXTS[:3]
        self.assertAllClose(
            loaded.predict(texts, verbose=0), model.predict(texts, verbose=0)
        )
        with pytest.raises(ValueError, match="start_layer"):
            PromptClassifier.from_preset(
                folder, prompts=path, sequence_length=8, start_layer=0
            )
