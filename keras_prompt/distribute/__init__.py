"""Scaling prompt tuning: strategies, static shapes, memory planning.

This is the TensorFlow edge of keras_prompt (layers use `keras.ops` only):

* `resolve_strategy("auto" | "tpu" | "gpu" | "cpu" | "multi_worker")`
  connects a TPU when there is one, else mirrors over several GPUs, else the
  default strategy; build and compile the task inside `strategy.scope()`
  with `compile_options(strategy)`, then `fit` as on one device (the
  tasks handle Keras 3.15's TF-trainer issues with boolean masks and
  multi-worker logs themselves; `prepare_model` remains as a no-op).
* `make_static` batches a `tf.data` pipeline to fixed shapes (TPU
  programs are compiled per shape); `TraceCounter` counts step traces.
* `plan` estimates per-device memory (weights, activations with and without
  remat, prompt optimizer state) against TPU/GPU/CPU memory and says
  whether it fits, next to full fine-tuning with Adam.

See `docs/scale.md`.
"""

from keras_prompt.distribute.memory_estimate import MemoryEstimate
from keras_prompt.distribute.model_sizes import DEVICES
from keras_prompt.distribute.model_sizes import MODELS
from keras_prompt.distribute.model_sizes import DeviceSpec
from keras_prompt.distribute.model_sizes import ModelSpec
from keras_prompt.distribute.model_sizes import device_spec
from keras_prompt.distribute.model_sizes import model_spec
from keras_prompt.distribute.model_sizes import weight_bytes
from keras_prompt.distribute.plan_report import Plan
from keras_prompt.distribute.planner import plan
from keras_prompt.distribute.static_shapes import TraceCounter
from keras_prompt.distribute.static_shapes import check_static
from keras_prompt.distribute.static_shapes import make_static
from keras_prompt.distribute.strategy import compile_options
from keras_prompt.distribute.strategy import describe_strategy
from keras_prompt.distribute.strategy import is_tpu_strategy
from keras_prompt.distribute.strategy import prepare_model
from keras_prompt.distribute.strategy import resolve_strategy

__all__ = [
    "DEVICES",
    "DeviceSpec",
    "MODELS",
    "MemoryEstimate",
    "ModelSpec",
    "Plan",
    "TraceCounter",
    "check_static",
    "compile_options",
    "describe_strategy",
    "device_spec",
    "is_tpu_strategy",
    "make_static",
    "model_spec",
    "plan",
    "prepare_model",
    "resolve_strategy",
    "weight_bytes",
]
