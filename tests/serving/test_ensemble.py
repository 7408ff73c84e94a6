import os

import numpy as np
import pytest

from keras_prompt.serving import PromptBank
from keras_prompt.serving import PromptEnsemble
from keras_prompt.serving import majority_vote
from tests.serving import serving_fixtures as fixtures
from tests.test_case import TestCase


class TestPromptEnsemble(TestCase):
    @pytest.mark.all_backends
    def test_majority_vote_breaks_ties_by_member_order(self):
        answers, members = majority_vote(
            [
                ["red", "blue", "red"],
                ["cat", "dog", "cow"],
                ["x", "y", "y", "x"],
                ["only"],
            ]
        )
        assert answers == ["red", "cat", "x", "only"]
        assert members == [0, 0, 0, 0]

    @pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
    def test_generation_in_one_pass_equals_separate_runs(self, deep, tmp_path):
        tasks = fixtures.t5_tasks(deep)
        alone = fixtures.t5_alone(deep)
        paths = []
        for name, model in tasks.items():
            paths.append(os.path.join(str(tmp_path), f"{name}.safetensors"))
            model.save_prompts(paths[-1])
        # Members of different lengths (2, 4, 3) share one T5 bank.
        template = tasks["a"]
        ensemble = PromptEnsemble.from_prompt_files(template, paths)
        assert ensemble.members == ["member_0", "member_1", "member_2"]
        assert ensemble.bank.model.backbone.deep is deep
        texts = fixtures.TEXTS
        answers, members = ensemble.generate(texts, return_members=True)
        separate = [alone[name] for name in tasks]  # N separate runs
        for i in range(len(texts)):
            assert members[i] == [run[i] for run in separate]
        expected, _ = majority_vote([list(row) for row in zip(*separate)])
        assert answers == expected
        # One pass: one batch of len(texts) * N examples.
        function = ensemble.bank.model.generate_function
        assert function.experimental_get_tracing_count() == 1

    @pytest.mark.all_backends
    def test_classifier_mean_probability_equals_separate_runs(self):
        tasks = fixtures.classifier_tasks()
        alone = fixtures.classifier_alone()
        bank = PromptBank(tasks["a"], capacity=4)
        for name, model in tasks.items():
            bank.add_task(name, model)
        ensemble = PromptEnsemble(bank, members=["c", "a", "b"])
        mean, members = ensemble.predict(fixtures.TEXTS, return_members=True)
        expected = np.mean([alone[n] for n in ("c", "a", "b")], axis=0)
        self.assertAllClose(mean, expected, atol=1e-6)
        self.assertAllClose(members[:, 0], alone["c"], atol=1e-6)
        assert mean.shape == (len(fixtures.TEXTS), 3)

    def test_bad_arguments(self):
        bank = PromptBank(fixtures.classifier_tasks()["a"])
        bank.add_task("a", fixtures.classifier_tasks()["a"])
        with pytest.raises(TypeError, match="PromptBank"):
            PromptEnsemble(fixtures.classifier_tasks()["a"])
        with pytest.raises(ValueError, match="Unknown task"):
            PromptEnsemble(bank, members=["a", "zz"])
        with pytest.raises(ValueError, match="repeat"):
            PromptEnsemble(bank, members=["a", "a"])
        with pytest.raises(ValueError, match="members"):
            PromptEnsemble(bank, members=[])
        with pytest.raises(ValueError, match="use `generate`|use `predict`"):
            PromptEnsemble(bank).generate(["red"])
