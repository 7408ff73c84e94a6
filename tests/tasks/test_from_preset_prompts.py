"""`from_preset(..., prompts=...)`: a trained prompt file (or a run folder)
sets every setting it determines, before the backbone is loaded, and its
prompt (and head) is loaded into the built model.

The models are the serving tests' tiny random (rescaled) BERT, T5 and
GPT-2, saved as keras-hub presets in temporary folders.
"""

import os

import keras
import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptCausalLM
from keras_prompt import PromptClassifier
from keras_prompt import PromptSeq2SeqLM
from keras_prompt.serving import PromptBank
from keras_prompt.serving.naming import to_python_strings
from tests.serving import serving_fixtures as fixtures
from tests.test_case import TestCase
from tests.test_case import random_prompt
from tests.test_case import t5_inputs
from tests.test_case import tiny_backbone
from tests.test_case import to_numpy

TEXTS = fixtures.TEXTS[:4]
MISSING_PRESET = "/no/such/preset/folder"


def save_preset(pair, folder, preprocessor=False):
    """Saves a fixture's backbone and tokenizer (or whole preprocessor)."""
    backbone, processor = pair
    backbone.save_to_preset(folder)
    (processor if preprocessor else processor.tokenizer).save_to_preset(folder)
    return folder


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    return {
        "bert": save_preset(fixtures.bert(), str(root / "bert")),
        "t5": save_preset(fixtures.t5(), str(root / "t5")),
        "gpt2": save_preset(fixtures.gpt2(), str(root / "gpt2"), True),
    }


def features(model, inputs):
    """The preprocessed features of `inputs`, as NumPy."""
    x = model.preprocess_samples(inputs)
    return to_numpy(keras.utils.unpack_x_y_sample_weight(x)[0])


def run_folder(tmp_path, model, **kwargs):
    """A folder holding `prompt.safetensors`, as `keras-prompt tune`
    writes it."""
    folder = tmp_path / "run"
    folder.mkdir()
    model.save_prompts(str(folder / "prompt.safetensors"), **kwargs)
    return str(folder)


class TestClassifier(TestCase):
    def test_file_and_run_folder_restore_the_classifier(
        self, presets, tmp_path
    ):
        model = PromptClassifier.from_preset(
            presets["bert"],
            num_classes=3,
            prompt_length=4,
            sequence_length=8,
            pooling="mean",
        )
        random_prompt(model, 1, 0.5)
        folder = run_folder(tmp_path, model, task_names=["glue/sst2"])
        path = os.path.join(folder, "prompt.safetensors")
        expected = model.predict(TEXTS, verbose=0)
        for prompts in (path, folder):
            restored = PromptClassifier.from_preset(
                presets["bert"], prompts=prompts, sequence_length=8
            )
            assert restored.pooling == "mean"
            assert restored.num_classes == 3
            assert restored.backbone.prompt_length == 4
            assert restored.backbone.num_prompts == 1
            np.testing.assert_array_equal(
                restored.predict(TEXTS, verbose=0), expected
            )
        # Arguments that agree with the file are accepted.
        agreeing = PromptClassifier.from_preset(
            presets["bert"],
            3,
            prompts=path,
            sequence_length=8,
            pooling="mean",
            prompt_length=4,
            num_prompts=1,
        )
        np.testing.assert_array_equal(
            agreeing.predict(TEXTS, verbose=0), expected
        )

    def test_bank_file_restores_prompts_and_heads(self, presets, tmp_path):
        model = PromptClassifier.from_preset(
            presets["bert"],
            num_classes=2,
            prompt_length=3,
            num_prompts=2,
            sequence_length=8,
        )
        random_prompt(model, 2, 0.5)
        path = str(tmp_path / "bank.prompt.safetensors")
        model.save_prompts(path)
        x = {"text": TEXTS, "prompt_ids": np.array([0, 1, 1, 0], "int32")}
        restored = PromptClassifier.from_preset(
            presets["bert"], prompts=path, sequence_length=8
        )
        assert restored.backbone.num_prompts == 2
        assert restored.pooling == "cls"
        np.testing.assert_array_equal(
            restored.predict(x, verbose=0), model.predict(x, verbose=0)
        )

    @pytest.mark.parametrize(
        "argument, value, theirs",
        [
            ("pooling", "cls", "'mean'"),
            ("num_classes", 2, "3"),
            ("prompt_length", 5, "4"),
            ("num_prompts", 2, "1"),
        ],
    )
    def test_contradicting_arguments_are_refused_before_loading(
        self, presets, tmp_path, argument, value, theirs
    ):
        model = PromptClassifier(
            FrozenBackbone(fixtures.bert()[0], prompt_length=4),
            num_classes=3,
            preprocessor=fixtures.bert()[1],
            pooling="mean",
        )
        path = str(tmp_path / "mean.prompt.safetensors")
        model.save_prompts(path)
        # The preset does not exist: the file is checked before any
        # backbone is loaded.
        with pytest.raises(ValueError) as info:
            PromptClassifier.from_preset(
                MISSING_PRESET, prompts=path, **{argument: value}
            )
        message = str(info.value)
        assert f"`{argument}={value!r}`" in message
        assert repr(path) in message
        assert f"{argument}={theirs}" in message

    def test_files_of_other_tasks_are_refused(self, presets, tmp_path):
        seq2seq = fixtures.seq2seq_task(2, seed=1)
        path = str(tmp_path / "t5.prompt.safetensors")
        seq2seq.save_prompts(path)
        with pytest.raises(
            ValueError, match="saved by a PromptSeq2SeqLM, not a Prompt"
        ):
            PromptClassifier.from_preset(MISSING_PRESET, prompts=path)
        with pytest.raises(
            ValueError, match="saved by a PromptSeq2SeqLM, not a Prompt"
        ):
            PromptCausalLM.from_preset(MISSING_PRESET, prompts=path)
        classifier = fixtures.classifier_task(3, seed=1)
        path = str(tmp_path / "cls.prompt.safetensors")
        classifier.save_prompts(path)
        with pytest.raises(ValueError, match="saved by a PromptClassifier"):
            PromptSeq2SeqLM.from_preset(MISSING_PRESET, prompts=path)
        # A bare backbone's file has no head.
        bare = str(tmp_path / "bare.prompt.safetensors")
        classifier.backbone.save_prompts(bare)
        with pytest.raises(ValueError, match="no classification head"):
            PromptClassifier.from_preset(MISSING_PRESET, prompts=bare)

    def test_bad_prompts_and_missing_num_classes(self, presets, tmp_path):
        with pytest.raises(ValueError, match="num_classes=None"):
            PromptClassifier.from_preset(presets["bert"], sequence_length=8)
        with pytest.raises(TypeError, match="prompts=3"):
            PromptClassifier.from_preset(presets["bert"], prompts=3)
        with pytest.raises(FileNotFoundError, match="holds no"):
            PromptClassifier.from_preset(presets["bert"], prompts=tmp_path)
        missing = str(tmp_path / "missing.safetensors")
        with pytest.raises(FileNotFoundError, match="missing.safetensors"):
            PromptClassifier.from_preset(presets["bert"], prompts=missing)

    def test_file_of_another_backbone_is_refused(self, presets, tmp_path):
        model = fixtures.classifier_task(3, seed=1)
        path = str(tmp_path / "cls.prompt.safetensors")
        model.save_prompts(path)
        backbone, preprocessor = fixtures.bert()
        other = tiny_backbone("bert", vocabulary_size=backbone.vocabulary_size)
        fixtures.rescale(other, seed=9)
        preset = save_preset((other, preprocessor), str(tmp_path / "other"))
        with pytest.raises(ValueError, match="another backbone"):
            PromptClassifier.from_preset(
                preset, prompts=path, sequence_length=8
            )
        # The backbone is named before the lengths it explains: here the
        # sequence would not fit the positions either.
        with pytest.raises(ValueError, match="another backbone"):
            PromptClassifier.from_preset(
                preset, prompts=path, sequence_length=10_000
            )
        # As an initializer, before the prompt length it explains.
        from keras_prompt.initializers import FromPromptFile

        with pytest.raises(ValueError, match="another backbone"):
            FrozenBackbone(
                other, prompt_length=7, initializer=FromPromptFile(path)
            )


class TestSeq2Seq(TestCase):
    def test_round_trip(self, presets, tmp_path):
        model = fixtures.seq2seq_task(3, seed=4)
        path = run_folder(tmp_path, model)
        restored = PromptSeq2SeqLM.from_preset(
            presets["t5"],
            prompts=path,
            encoder_sequence_length=8,
            decoder_sequence_length=3,
        )
        restored.compile(jit_compile=False)
        assert restored.backbone.prompt_length == 3
        x, _ = model.prompt_inputs(TEXTS, targets=["red", "cat", "sun", "a"])
        x = features(model, x)
        self.assertAllEqual(restored(x), model(x))
        assert restored.generate(TEXTS) == model.generate(TEXTS)
        with pytest.raises(ValueError, match="`prompt_length=2`"):
            PromptSeq2SeqLM.from_preset(
                MISSING_PRESET, prompts=path, prompt_length=2
            )

    def test_variable_length_bank_file(self, presets, tmp_path):
        tasks = fixtures.t5_tasks()  # Prompt lengths 2, 4 and 3.
        bank = PromptBank(tasks["a"], capacity=4)
        for name, model in tasks.items():
            bank.add_task(name, model)
        path = str(tmp_path / "bank.prompt.safetensors")
        bank.save(path)
        restored = PromptSeq2SeqLM.from_preset(
            presets["t5"],
            prompts=path,
            encoder_sequence_length=8,
            decoder_sequence_length=3,
        )
        restored.compile(jit_compile=False)
        backbone = restored.backbone
        assert backbone.num_prompts == 3 and backbone.prompt_length == 4
        assert backbone.variable_length
        mask = keras.ops.convert_to_numpy(backbone.prompt_embedding.prompt_mask)
        np.testing.assert_array_equal(mask.sum(-1), [2, 4, 3])
        ids = np.array([0, 1, 2, 1], "int32")
        assert to_python_strings(restored.infer(TEXTS, ids)) == (
            bank.generate(TEXTS, ["a", "b", "c", "b"])
        )
        # A fixed-length bank cannot hold the shorter prompts.
        fixed = FrozenBackbone(fixtures.t5()[0], prompt_length=4, num_prompts=3)
        with pytest.raises(ValueError, match="variable_length=True"):
            fixed.load_prompts(path)
        with pytest.raises(ValueError, match="`variable_length=False`"):
            FrozenBackbone.from_preset(
                MISSING_PRESET, prompts=path, variable_length=False
            )

    def test_one_task_bank_file_has_its_own_length(self, presets, tmp_path):
        tasks = fixtures.t5_tasks()
        bank = PromptBank(tasks["b"], capacity=2)  # Prompt length 4.
        bank.add_task("a", tasks["a"])  # Length 2, right-aligned.
        path = str(tmp_path / "one.prompt.safetensors")
        bank.save(path)
        restored = PromptSeq2SeqLM.from_preset(
            presets["t5"],
            prompts=path,
            encoder_sequence_length=8,
            decoder_sequence_length=3,
        )
        restored.compile(jit_compile=False)
        assert restored.backbone.prompt_length == 2
        assert restored.generate(TEXTS) == tasks["a"].generate(TEXTS)


class TestCausal(TestCase):
    def test_round_trip(self, presets, tmp_path):
        model = fixtures.causal_task(3, seed=5)
        path = str(tmp_path / "gpt2.prompt.safetensors")
        model.save_prompts(path)
        restored = PromptCausalLM.from_preset(
            presets["gpt2"], prompts=path, sequence_length=8
        )
        restored.compile(jit_compile=False)
        assert restored.backbone.prompt_length == 3
        x = to_numpy(model.preprocessor.generate_preprocess(TEXTS))
        self.assertAllEqual(restored(x), model(x))
        assert restored.generate(TEXTS, max_length=8) == model.generate(
            TEXTS, max_length=8
        )
        with pytest.raises(ValueError, match="`num_prompts=3`"):
            PromptCausalLM.from_preset(
                MISSING_PRESET, prompts=path, num_prompts=3
            )


class TestFrozenBackbone(TestCase):
    def test_round_trip_and_prompt_of_a_task_file(self, presets, tmp_path):
        model = fixtures.classifier_task(3, seed=6)
        path = str(tmp_path / "cls.prompt.safetensors")
        model.save_prompts(path)
        restored = FrozenBackbone.from_preset(presets["bert"], prompts=path)
        assert restored.prompt_length == 3 and restored.num_prompts == 1
        np.testing.assert_array_equal(
            restored.prompt_values(), model.backbone.prompt_values()
        )
        x = features(model, TEXTS)
        self.assertAllEqual(restored(x), model.backbone(x))
        with pytest.raises(ValueError, match="`prompt_length=20`"):
            FrozenBackbone.from_preset(
                MISSING_PRESET, prompts=path, prompt_length=20
            )


class TestPromptBank(TestCase):
    def test_bank_file_round_trip(self, presets, tmp_path):
        tasks = fixtures.classifier_tasks()
        bank = PromptBank(tasks["a"], capacity=2)
        for name in ("a", "b", "c"):
            bank.add_task(name, tasks[name])
        path = str(tmp_path / "bank.prompt.safetensors")
        bank.save(path)
        names = ["c", "a", "b", "a"]
        restored = PromptBank.from_preset(
            presets["bert"], prompts=path, sequence_length=8
        )
        assert restored.task_names == ["a", "b", "c"]
        assert restored.capacity == 8
        assert restored.task_class is PromptClassifier
        np.testing.assert_array_equal(
            restored.predict(TEXTS, names), bank.predict(TEXTS, names)
        )
        with pytest.raises(ValueError, match="`num_classes=2`"):
            PromptBank.from_preset(MISSING_PRESET, prompts=path, num_classes=2)
        with pytest.raises(TypeError, match="num_prompts"):
            PromptBank.from_preset(MISSING_PRESET, prompts=path, num_prompts=3)

    def test_deep_bank_file_round_trip(self, presets, tmp_path):
        # The file's `prompt_depth` makes the restored bank deep.
        tasks = fixtures.t5_tasks(deep=True)  # Prompt lengths 2, 4 and 3.
        bank = PromptBank(tasks["a"], capacity=4)
        for name, model in tasks.items():
            bank.add_task(name, model)
        path = str(tmp_path / "deep.prompt.safetensors")
        bank.save(path)
        restored = PromptBank.from_preset(
            presets["t5"],
            prompts=path,
            encoder_sequence_length=8,
            decoder_sequence_length=3,
        )
        backbone = restored.model.backbone
        assert backbone.deep and backbone.prompt_depth == 2
        for name in tasks:
            np.testing.assert_array_equal(
                restored.prompt(name), bank.prompt(name)
            )
        x = t5_inputs()
        names = ["c", "a"]
        self.assertAllEqual(
            backbone(dict(x, prompt_ids=restored.task_ids(names))),
            bank.model.backbone(dict(x, prompt_ids=bank.task_ids(names))),
        )
        with pytest.raises(ValueError, match="`deep=False` contradicts"):
            PromptBank.from_preset(MISSING_PRESET, prompts=path, deep=False)

    def test_run_folder_and_unnamed_or_bare_files(self, presets, tmp_path):
        model = fixtures.seq2seq_task(3, seed=7)
        folder = run_folder(tmp_path, model, task_names=["glue/rte"])
        bank = PromptBank.from_preset(
            presets["t5"],
            prompts=folder,
            encoder_sequence_length=8,
            decoder_sequence_length=3,
        )
        bank.compile(jit_compile=False)
        assert bank.task_names == ["glue/rte"]
        assert bank.generate(TEXTS, ["glue/rte"] * 4) == model.generate(TEXTS)
        unnamed = str(tmp_path / "unnamed.prompt.safetensors")
        model.save_prompts(unnamed)
        with pytest.raises(ValueError, match="names no tasks"):
            PromptBank.from_preset(MISSING_PRESET, prompts=unnamed)
        bare = str(tmp_path / "bare.prompt.safetensors")
        model.backbone.save_prompts(bare, task_names=["x"])
        with pytest.raises(ValueError, match="no known task class"):
            PromptBank.from_preset(MISSING_PRESET, prompts=bare)
