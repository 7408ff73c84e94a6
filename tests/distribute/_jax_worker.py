"""Runs in a subprocess on the JAX backend with 8 virtual CPU devices.

For each task kind (a BERT classifier with deep prompts, a T5
sequence-to-sequence model, a GPT-2 causal LM) trains a prompt three times
from the same frozen weights on the same batches: on one device, under
`keras.distribution.DataParallel` over the 8 devices, and under
`keras.distribution.ModelParallel` on a 4 (batch) x 2 (model) mesh whose
layout map shards the frozen kernels and the token embedding over
"model". Prints `RESULT {json}`: per kind and setting the final loss, the
prompt's update, the sharding of one frozen kernel and the trainable
weights.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["KERAS_PROMPT_BFLOAT16"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from test_case import spread_weights  # noqa: E402
from test_case import task_data  # noqa: E402
from test_case import tiny_backbone  # noqa: E402
from test_case import tiny_task  # noqa: E402

import keras_prompt  # noqa: E402

KINDS = {"classifier": "bert", "seq2seq": "t5", "causal": "gpt2"}
# keras-hub's attention kernels are (hidden, heads, head_dim) and
# (heads, head_dim, hidden): the heads go to "model"; dense kernels are
# split on their wide side. T5's are plain (in, out) matrices.
LAYOUTS = {
    "bert": {
        r".*token_embedding/embeddings": (None, "model"),
        r".*self_attention\w*/(query|key|value)/kernel": (None, "model", None),
        r".*self_attention\w*/attention_output/kernel": ("model", None, None),
        r".*feedforward_intermediate_dense/kernel": (None, "model"),
        r".*feedforward_output_dense/kernel": ("model", None),
    },
    "t5": {
        r".*token_embedding.*embeddings": (None, "model"),
        r".*(query|key|value|output|input_projector|gate_projector|"
        r"output_projector).*kernel": (None, "model"),
    },
}
LAYOUTS["gpt2"] = LAYOUTS["bert"]


def batches(family):
    """16 examples (8 per step): the tiny data repeated."""
    x, y, sample_weight = task_data(family)
    repeat = 8

    def tile(array):
        return None if array is None else np.concatenate([array] * repeat)

    return (
        {key: tile(value) for key, value in x.items()},
        tile(y),
        tile(sample_weight),
    )


def train(family, distribution):
    keras_prompt.set_random_seed(1)
    keras.distribution.set_distribution(distribution)
    try:
        backbone = tiny_backbone(family)
        if family != "t5":  # T5's own initialisation already moves it.
            spread_weights(backbone, seed=3)
        model = tiny_task(backbone, deep=family == "bert")
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        wrapped = model.backbone
        start = np.array(wrapped.prompt_values())
        x, y, sample_weight = batches(family)
        history = model.fit(
            x,
            y,
            sample_weight=sample_weight,
            batch_size=8,
            epochs=2,
            shuffle=False,
            verbose=0,
        )
        kernel = next(
            w
            for w in backbone.weights
            if "feedforward_intermediate" in w.path
            or "input_projector" in w.path
        )
        return {
            "loss": history.history["loss"][-1],
            "update": (np.array(wrapped.prompt_values()) - start).tolist(),
            "kernel_sharding": str(getattr(kernel.value, "sharding", "")),
            "trainable": len(model.trainable_weights),
            "prompt_trainable": any(
                "prompt" in w.path for w in model.trainable_weights
            ),
        }
    finally:
        keras.distribution.set_distribution(None)


def main():
    devices = keras.distribution.list_devices()
    result = {"backend": keras.backend.backend(), "devices": len(devices)}
    for kind, family in KINDS.items():
        mesh = keras.distribution.DeviceMesh(
            (4, 2), ["batch", "model"], devices=devices
        )
        layout_map = keras.distribution.LayoutMap(mesh)
        for pattern, layout in LAYOUTS[family].items():
            layout_map[pattern] = layout
        result[kind] = {
            "single": train(family, None),
            "data_parallel": train(
                family, keras.distribution.DataParallel(devices=devices)
            ),
            "model_parallel": train(
                family,
                keras.distribution.ModelParallel(
                    layout_map=layout_map, batch_dim_name="batch"
                ),
            ),
        }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
