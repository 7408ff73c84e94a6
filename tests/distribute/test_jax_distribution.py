"""keras_prompt on the JAX backend with `keras.distribution`.

The layers use `keras.ops` only, so prompt tuning runs on JAX as is:
`DataParallel` splits the batch over the devices, and when the frozen model
is too big for one device `ModelParallel` shards its weights with a layout
map. A classifier, a T5 model and a causal LM train the same prompt on 8
devices as on one. Runs in a subprocess (the backend and the 8 virtual CPU
devices are fixed when Keras and JAX start) and only where JAX is
installed (the `jax` extra).
"""

import importlib.util
import os

import numpy as np
import pytest

from tests.test_case import script_result

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None, reason="JAX not installed"
    ),
]


def test_data_and_model_parallel_prompt_tuning_match_one_device():
    result = script_result(
        [os.path.join(HERE, "_jax_worker.py")], unset=["KERAS_BACKEND"]
    )
    assert result["backend"] == "jax" and result["devices"] == 8
    for kind in ("classifier", "seq2seq", "causal"):
        single = result[kind]["single"]
        update = np.asarray(single["update"])
        assert np.abs(update).max() > 1e-3, kind
        for setting, mesh in (
            ("data_parallel", "'batch': 8"),
            ("model_parallel", "'batch': 4, 'model': 2"),
        ):
            found = result[kind][setting]
            assert mesh in found["kernel_sharding"], (kind, found)
            # Only the prompt (and a classifier's head) trains.
            assert found["prompt_trainable"], (kind, setting)
            assert found["trainable"] == single["trainable"], (kind, setting)
            np.testing.assert_allclose(
                found["loss"], single["loss"], rtol=1e-5, err_msg=kind
            )
            np.testing.assert_allclose(
                np.asarray(found["update"]), update, atol=1e-5, err_msg=kind
            )
        # The frozen kernels are split over "model" under ModelParallel and
        # whole on every device under DataParallel.
        sharded = result[kind]["model_parallel"]["kernel_sharding"]
        assert "'model'" in sharded.split("spec=")[1], (kind, sharded)
        whole = result[kind]["data_parallel"]["kernel_sharding"]
        assert "spec=P(None, None)" in whole, (kind, whole)
