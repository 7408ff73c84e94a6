"""SavedModel export, checked in a fresh Python process.

A module fixture exports the artifacts (a T5 bank and its prompt-only
update, a classifier bank) and one fresh process loads them all with
`tf.saved_model.load` after `import tensorflow_text`, so the suite pays the
export and TensorFlow start-up costs once. The ensemble and causal exports
reuse the same machinery and run as slow tests.
"""

import os

import numpy as np
import pytest

from keras_prompt import PromptConfig
from keras_prompt import export_saved_model
from keras_prompt.serving import PromptBank
from keras_prompt.serving import PromptEnsemble
from keras_prompt.serving import read_manifest
from keras_prompt.serving import update_exported_prompts
from keras_prompt.serving.export import STATE_ASSET
from tests.serving import serving_fixtures as fixtures
from tests.test_case import TestCase

# The module fixtures export once: its tests share an xdist worker.
pytestmark = pytest.mark.xdist_group("export")

TEXTS = fixtures.TEXTS
TASKS = ["a", "b", "c", "b", "a", "c", "c", "a", "b", "a"]
NEW_TASKS = ["d", "b", "c", "b", "a", "d", "c", "a", "b", "d"]


def call(name, path, inputs, tasks=None):
    return {"name": name, "path": path, "inputs": inputs, "tasks": tasks}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("exported"))
    tasks = fixtures.t5_tasks()
    expected = {}

    bank = PromptBank(tasks["a"], capacity=4, prompt_length=4)
    for name, model in tasks.items():
        bank.add_task(name, model)
    v1, v2 = f"{root}/t5/1", f"{root}/t5/2"
    export_saved_model(bank, v1, batch_size=4)
    expected["t5_v1"] = bank.generate(TEXTS, TASKS)
    # A prompt-only update: replace "b", add "d" (within capacity).
    bank.replace_task("b", tasks["c"])
    bank.add_task("d", np.random.default_rng(9).normal(size=(3, 32)))
    update_exported_prompts(bank, v1, v2)
    expected["t5_v2"] = bank.generate(TEXTS, NEW_TASKS)
    expected["bank"] = bank

    # A classifier bank exported before its first task; its tasks (prompts
    # and heads) arrive as a prompt-only update.
    classifiers = fixtures.classifier_tasks()
    classifier_bank = PromptBank(classifiers["a"], capacity=4)
    empty, classifier = f"{root}/classifier/1", f"{root}/classifier/2"
    export_saved_model(classifier_bank, empty)
    for name, model in classifiers.items():
        classifier_bank.add_task(name, model)
    update_exported_prompts(classifier_bank, empty, classifier)
    expected["classifier"] = classifier_bank.predict(TEXTS, TASKS)

    served = fixtures.serve_in_fresh_process(
        [
            call("t5_v1", v1, TEXTS, TASKS),
            call("t5_v1_short", v1, TEXTS[:3], TASKS[:3]),
            call("unknown", v1, ["red", "sun"], ["a", "weather"]),
            call("mismatch", v1, ["red", "sun"], ["a"]),
            call("t5_v2", v2, TEXTS, NEW_TASKS),
            call("classifier", classifier, TEXTS, TASKS),
            call("classifier_3", classifier, TEXTS[:3], TASKS[:3]),
            call("classifier_empty", empty, TEXTS[:1], TASKS[:1]),
            call("t5_nul", v1, ["red\x00 sun", "blue"], ["a", "b"]),
            call("classifier_nul", classifier, ["red", "sun\x00"], ["a", "b"]),
        ]
    )
    return root, expected, served


@pytest.fixture(scope="module")
def exported_more(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("exported_more"))
    tasks = fixtures.t5_tasks()
    bank = PromptBank(tasks["a"], capacity=4, prompt_length=4)
    for name, model in tasks.items():
        bank.add_task(name, model)
    ensemble = PromptEnsemble(bank)
    export_saved_model(ensemble, f"{root}/ensemble/1", batch_size=8)
    # Additive deep prompts: the graph adds them to the hidden states.
    additive = PromptConfig(length=3, deep=True, deep_mode="add")
    causal = fixtures.causal_task(3, 1, prompt_config=additive)
    causal_texts = fixtures.causal_texts()
    export_saved_model(causal, f"{root}/causal/1", batch_size=4)
    single = tasks["b"]
    export_saved_model(
        single, f"{root}/single/1", batch_size=16, jit_compile=True
    )
    expected = {
        "ensemble": ensemble.generate(TEXTS, return_members=True),
        "causal": causal.generate(causal_texts),
        # The same prompt folded into plain vectors.
        "plain": fixtures.causal_task(
            3, 1, prompt_config=additive.replace(deep_mode="replace")
        ),
        "single": fixtures.t5_alone()["b"],
    }
    served = fixtures.serve_in_fresh_process(
        [
            call("ensemble", f"{root}/ensemble/1", TEXTS),
            call("causal", f"{root}/causal/1", causal_texts),
            call("single", f"{root}/single/1", TEXTS),
        ]
    )
    return root, expected, served


class TestExport(TestCase):
    def test_bank_serves_strings_by_task_name(self, exported):
        _, expected, served = exported
        # 10 inputs through a graph of fixed batch 4: padded and sliced.
        assert served["t5_v1"]["outputs"] == expected["t5_v1"]
        assert served["t5_v1_short"]["outputs"] == expected["t5_v1"][:3]
        message = served["unknown"]["error"]
        assert "Unknown task name(s):" in message and "weather" in message
        known = message.split("Known tasks:")[1]
        assert all(name in known for name in ("a", "b", "c"))
        assert "one task per input" in served["mismatch"]["error"]

    def test_prompt_only_update_reuses_the_exported_backbone(self, exported):
        root, expected, served = exported
        assert served["t5_v2"]["outputs"] == expected["t5_v2"]
        assert served["t5_v2"]["outputs"] != served["t5_v1"]["outputs"]
        v1, v2 = f"{root}/t5/1", f"{root}/t5/2"
        # Graph and frozen weights are the same files (hard links); only
        # the state and task assets are new.
        for name in ("saved_model.pb", "variables/variables.index"):
            assert os.path.samefile(f"{v1}/{name}", f"{v2}/{name}")
        assert not os.path.samefile(
            f"{v1}/assets/{STATE_ASSET}", f"{v2}/assets/{STATE_ASSET}"
        )
        assert read_manifest(v2)["tasks"] == {"a": 0, "b": 1, "c": 2, "d": 3}
        # Only the exported shape can be updated without a new export.
        bank = expected["bank"]
        bank.add_task("e", np.zeros((2, 32)))  # past capacity: grows
        with pytest.raises(ValueError, match="Export it again"):
            update_exported_prompts(bank, v1, f"{root}/t5/3")
        assert not os.path.exists(f"{root}/t5/3")

    def test_classifier_bank_exported_empty_then_updated(self, exported):
        _, expected, served = exported
        self.assertAllClose(
            np.asarray(served["classifier"]["probabilities"]),
            expected["classifier"],
            atol=1e-6,
        )
        self.assertAllClose(
            np.asarray(served["classifier_3"]["probabilities"]),
            expected["classifier"][:3],
            atol=1e-6,
        )
        message = served["classifier_empty"]["error"]
        assert "Unknown task name(s):" in message and "[a]" in message

    def test_a_nul_character_fails_the_request(self, exported):
        """Not a text cut short: the request fails, naming the NUL."""
        _, _, served = exported
        for name in ("t5_nul", "classifier_nul"):
            assert "must not hold NUL characters" in served[name]["error"]

    def test_atomic_writes_and_bad_arguments(self, exported):
        root = exported[0]
        # No temporary folders are left next to the exports.
        for folder in ("t5", "classifier"):
            assert not [
                n for n in os.listdir(f"{root}/{folder}") if n.startswith(".")
            ]
        model = fixtures.t5_tasks()["a"]
        with pytest.raises(ValueError, match="already exists"):
            export_saved_model(model, f"{root}/t5/1")
        with pytest.raises(ValueError, match="batch_size"):
            export_saved_model(model, f"{root}/t5/9", batch_size=0)
        with pytest.raises(TypeError, match="PromptBank"):
            export_saved_model(object(), f"{root}/x/1")
        with pytest.raises(ValueError, match="Not a SavedModel exported"):
            update_exported_prompts(model, root, f"{root}/y")
        with pytest.raises(ValueError, match="must differ"):
            update_exported_prompts(
                exported[1]["bank"], f"{root}/t5/1", f"{root}/t5/1", True
            )
        manifest = read_manifest(f"{root}/t5/1")
        assert manifest["kind"] == "seq2seq" and manifest["batch_size"] == 4

    @pytest.mark.slow
    def test_ensemble_votes_in_the_graph(self, exported_more):
        _, expected, served = exported_more
        answers, members = expected["ensemble"]
        assert served["ensemble"]["outputs"] == answers
        assert served["ensemble"]["member_outputs"] == members

    @pytest.mark.slow
    def test_causal_and_single_prompt_generation(self, exported_more):
        _, expected, served = exported_more
        assert served["causal"]["outputs"] == expected["causal"]
        # Plain vectors of the same shapes would be misread by the additive
        # graph: a prompt-only update from a plain model is refused.
        root = exported_more[0]
        with pytest.raises(ValueError, match="prompt form"):
            update_exported_prompts(
                expected["plain"], f"{root}/causal/1", f"{root}/causal/2"
            )
        assert not os.path.exists(f"{root}/causal/2")
        # Fewer inputs (10) than the fixed batch (16); decoding under XLA.
        assert served["single"]["outputs"] == expected["single"]
        assert read_manifest(f"{exported_more[0]}/single/1")["jit_compile"]
