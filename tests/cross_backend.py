"""Tiny models whose prompt files travel between backends (see
`test_cross_backend_prompt_files.py`): built, saved and loaded the same way
on whichever backend Keras runs."""

import os

import keras
import numpy as np

import keras_prompt
from tests.test_case import random_prompt
from tests.test_case import spread_weights
from tests.test_case import task_data
from tests.test_case import tiny_backbone
from tests.test_case import tiny_task

#: family: deep prompts (a BERT classifier, a T5 model, a GPT-2 causal LM).
MODELS = {"bert": True, "t5": False, "gpt2": False}


def _model(index, family, seed):
    keras_prompt.set_random_seed(seed + index)
    backbone = tiny_backbone(family)
    return backbone, tiny_task(backbone, deep=MODELS[family])


def _outputs(model, family):
    x = task_data(family)[0]
    return keras.ops.convert_to_numpy(model(x, training=False))


def _paths(folder, family):
    return (
        os.path.join(folder, f"{family}.weights.h5"),
        os.path.join(folder, f"{family}.prompt.safetensors"),
        os.path.join(folder, f"{family}.npy"),
    )


def save(folder):
    """Random frozen weights and prompts: each frozen backbone's weights,
    its prompt file and its outputs on fixed inputs, into `folder`."""
    for index, family in enumerate(MODELS):
        backbone, model = _model(index, family, seed=0)
        if family != "t5":  # T5's own initialisation moves its outputs.
            spread_weights(backbone, seed=index)
        random_prompt(model, seed=index, scale=0.5)
        weights, prompts, outputs = _paths(folder, family)
        backbone.save_weights(weights)
        model.save_prompts(prompts)
        np.save(outputs, _outputs(model, family))


def load(folder):
    """The models of `folder` rebuilt (from other random weights), their
    frozen weights and prompt files loaded: `{family: found}` with the
    file's recorded backend, the largest difference from the saved
    outputs, and how far the other random model's outputs were."""
    found = {}
    for index, family in enumerate(MODELS):
        backbone, model = _model(index, family, seed=7)
        weights, prompts, outputs = _paths(folder, family)
        before = _outputs(model, family)
        backbone.load_weights(weights)
        metadata = model.load_prompts(prompts)
        want = np.load(outputs)
        found[family] = {
            "file_backend": metadata.get("keras_backend"),
            "max_difference": float(
                np.abs(_outputs(model, family) - want).max()
            ),
            "changed": float(np.abs(before - want).max()),
        }
    return found
