"""Every registered adapter family through the shared checks, with a
shallow prompt and with deep prompts (`deep=True`).

The families come from the adapter registry, so a new adapter file is
covered by registering it (and giving it a tiny backbone in
`tests/test_case.py`; `test_every_family_has_a_tiny_backbone` fails until
it has one).
"""

import numpy as np
import pytest

from keras_prompt import FrozenBackbone
from keras_prompt import PromptEmbedding
from tests.test_case import STRING_FAMILIES
from tests.test_case import TestCase
from tests.test_case import backbone_inputs
from tests.test_case import check_tiny_backbones
from tests.test_case import registered_families
from tests.test_case import tiny_backbone

FAMILIES = registered_families()


def test_every_family_has_a_tiny_backbone():
    check_tiny_backbones()


@pytest.mark.parametrize("family", FAMILIES)
class TestFamilies(TestCase):
    @pytest.mark.all_backends
    def test_layer(self, family):
        # The prompt layer as the family's `FrozenBackbone` configures it.
        wrapped = FrozenBackbone(tiny_backbone(family), prompt_length=3)
        config = wrapped.prompt_embedding.get_config()
        dim = wrapped.prompt_values().shape[-1]
        embedded = np.random.default_rng(0).random((2, 7, dim), "float32")
        mask = backbone_inputs(family)
        mask = mask.get("padding_mask", mask.get("encoder_padding_mask"))
        expected_mask = np.concatenate([np.ones((2, 3), mask.dtype), mask], 1)
        self.run_layer_test(
            PromptEmbedding,
            {k: config[k] for k in ("length", "initializer", "num_prompts")},
            embedded[:, : mask.shape[1]],
            (2, 3 + mask.shape[1], dim),
            mask=mask,
            expected_mask=expected_mask,
        )

    @pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
    @pytest.mark.all_backends
    def test_backbone(self, family, deep, tmp_path):
        self.run_backbone_test(family, tmp_path, deep=deep)

    # The JAX lane trains the input prompt of every family (deep prompts'
    # training is the same code path; their exactness is test_backbone's).
    @pytest.mark.parametrize(
        "deep",
        [pytest.param(False, marks=pytest.mark.all_backends), True],
        ids=["shallow", "deep"],
    )
    def test_task(self, family, deep, tmp_path):
        self.run_task_test(family, tmp_path, deep=deep)

    def test_task_late_deep(self, family, tmp_path):
        # Late prompts: the prompt enters at layer 1 of 2.
        self.run_task_test(family, tmp_path, deep=True, start_layer=1)


# Generation and export trace several graphs per model (~40 s a family on
# 2 cores): once per task kind, and slow. Every kind with late deep prompts
# (deep prompts from layer 1: the deep layers' path and the late insertion
# in one export); the classifier, whose export is the cheapest, with the
# input prompt and deep prompts from the input too. The input prompt's
# generating exports are served elsewhere: T5 banks, ensembles and a single
# task in tests/serving/test_export.py and tests/cli/test_export_command.py,
# a GPT-2 backbone (left-padded) in tests/adapters/test_decoder_adapters.py.
STRING_CASES = [
    (family, deep, start_layer)
    for family in sorted(STRING_FAMILIES.values())
    for deep, start_layer in ((False, 0), (True, 0), (True, 1))
    if family == STRING_FAMILIES["encoder"] or start_layer == 1
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, deep, start_layer",
    STRING_CASES,
    ids=[
        f"{family}-{'late' if start else 'deep' if deep else 'shallow'}"
        for family, deep, start in STRING_CASES
    ],
)
class TestFamilyStrings(TestCase):
    def test_task_on_strings_and_export(
        self, family, deep, start_layer, tmp_path
    ):
        self.run_task_test(
            family,
            tmp_path,
            strings=True,
            export=True,
            deep=deep,
            start_layer=start_layer,
        )
