"""Runs in a subprocess on the JAX backend with 8 virtual CPU devices.

Trains a prompt on a tiny T5 twice from the same weights on the same
batches: unsharded, and under `keras.distribution.ModelParallel` on a
2 (batch) x 4 (model) mesh whose layout map shards the frozen kernels and
the embedding table over "model". Prints `RESULT {json}`.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prompt  # noqa: E402
from keras_prompt import FrozenBackbone  # noqa: E402
from keras_prompt import PromptSeq2SeqLM  # noqa: E402
from keras_prompt.toy import toy_t5  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    x = {
        "encoder_token_ids": rng.integers(3, 30, (16, 6)).astype("int32"),
        "encoder_padding_mask": np.ones((16, 6), "int32"),
        "decoder_token_ids": rng.integers(3, 30, (16, 4)).astype("int32"),
        "decoder_padding_mask": np.ones((16, 4), "int32"),
    }
    x["encoder_padding_mask"][:4, 4:] = 0
    y = np.roll(x["decoder_token_ids"], -1, axis=1)
    return x, y, np.ones((16, 4), "float32")


def train(distribution):
    keras_prompt.set_random_seed(1)
    keras.distribution.set_distribution(distribution)
    try:
        backbone = FrozenBackbone(toy_t5(32, hidden_dim=16), prompt_length=4)
        model = PromptSeq2SeqLM(backbone, None)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        start = np.array(backbone.prompt_values())
        x, y, sample_weight = data()
        history = model.fit(
            x, y, sample_weight=sample_weight, batch_size=8, verbose=0
        )
        kernel = next(w for w in backbone.weights if "query" in w.path)
        return {
            "loss": history.history["loss"][-1],
            "update": (np.array(backbone.prompt_values()) - start).tolist(),
            "kernel_sharding": str(getattr(kernel.value, "sharding", "")),
            "prompt_trainable": [w.path for w in model.trainable_weights],
        }
    finally:
        keras.distribution.set_distribution(None)


def main():
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ["batch", "model"], devices=devices
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*token_embedding.*embeddings"] = (None, "model")
    layout_map[
        ".*(query|key|value|output|input_projector|gate_projector|"
        "output_projector).*kernel"
    ] = (None, "model")
    sharded = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch"
    )
    result = {
        "backend": keras.backend.backend(),
        "devices": len(devices),
        "single": train(None),
        "model_parallel": train(sharded),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
