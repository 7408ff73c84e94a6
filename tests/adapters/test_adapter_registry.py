"""What every registered adapter must bring: a tiny test backbone and the
planner's size facts (`PromptAdapter.model_spec`).

The adapters come from the registry, so a new adapter file fails here until
it has an entry in `TINY_BACKBONES` (tests/test_case.py) and either size
facts that count that tiny backbone's weights exactly, or
`model_spec = None` (the planner then refuses the family by name).
"""

import keras
import numpy as np
import pytest

from keras_prompt.adapters import get_adapter
from keras_prompt.adapters.base import registered_adapters
from keras_prompt.adapters.model_spec import ModelSpec
from keras_prompt.distribute import model_spec
from tests.test_case import TINY_BACKBONES
from tests.test_case import tiny_backbone

ADAPTERS = registered_adapters()


def planner_weight_count(backbone, spec):
    """The backbone's weights as `ModelSpec.num_parameters` counts them:
    biases only where the model has learned positions (GPT-2)."""
    return sum(
        int(np.prod(weight.shape))
        for weight in backbone.weights
        if spec.max_positions or not weight.path.endswith("bias")
    )


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.family)
def test_adapter_has_a_tiny_backbone_and_size_facts(adapter):
    assert adapter.family in TINY_BACKBONES, (
        f"{adapter.__name__} has no tiny test backbone: add "
        f"{adapter.family!r} to `TINY_BACKBONES` in tests/test_case.py."
    )
    backbone = tiny_backbone(adapter.family)
    assert type(get_adapter(backbone)) is adapter
    if adapter.model_spec is None:  # Declared: the planner has no facts.
        with pytest.raises(ValueError, match="pass ModelSpec fields"):
            model_spec(backbone)
        return
    spec = adapter.model_spec(backbone.get_config(), backbone.name)
    assert isinstance(spec, ModelSpec)
    assert spec.num_parameters() == planner_weight_count(backbone, spec)
    # The planner reaches the same facts from the backbone and from a
    # preset's `config.json`.
    assert model_spec(backbone) == spec
    assert model_spec(keras.saving.serialize_keras_object(backbone)) == spec
