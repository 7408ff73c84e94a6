"""What only TensorFlow has is one clear error on another backend.

Runs in both lanes: on TensorFlow the features pass the check; in the JAX
lane (`KERAS_BACKEND=jax pytest`) they are refused before anything is
written or connected.
"""

import os

import keras
import pytest

from keras_prompt.validation import TESTED_BACKENDS
from keras_prompt.validation import UnsupportedBackendError
from keras_prompt.validation import require_tensorflow
from tests.test_case import tiny_backbone
from tests.test_case import tiny_task

pytestmark = pytest.mark.all_backends
ON_TENSORFLOW = keras.config.backend() == "tensorflow"


def test_the_suite_runs_on_a_tested_backend():
    assert keras.config.backend() in TESTED_BACKENDS
    assert keras.config.backend() == os.environ["KERAS_BACKEND"]


def test_require_tensorflow():
    if ON_TENSORFLOW:
        assert require_tensorflow("SavedModel export") is None
        return
    with pytest.raises(UnsupportedBackendError) as info:
        require_tensorflow("SavedModel export", "Use X instead.")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("SavedModel export needs Keras' TensorFlow")
    assert f"Keras runs on '{keras.config.backend()}'" in message
    assert "KERAS_BACKEND='jax'" in message
    assert message.endswith("Use X instead.")


@pytest.mark.skipif(ON_TENSORFLOW, reason="refused on other backends only")
def test_savedmodel_export_is_refused_before_anything_is_written(tmp_path):
    from keras_prompt import export_saved_model

    model = tiny_task(tiny_backbone("bert"))
    target = tmp_path / "served" / "1"
    with pytest.raises(UnsupportedBackendError, match="SavedModel export"):
        export_saved_model(model, str(target))
    assert not (tmp_path / "served").exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(ON_TENSORFLOW, reason="refused on other backends only")
def test_tf_distribute_strategies_are_refused_naming_keras_distribution():
    from keras_prompt.distribute import resolve_strategy

    for word in ("auto", "cpu"):
        with pytest.raises(UnsupportedBackendError, match="keras.distribution"):
            resolve_strategy(word, verbose=False)
