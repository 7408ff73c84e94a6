"""Choosing and preparing a `tf.distribute` strategy.

Keras 3 on TensorFlow distributes with `tf.distribute` (the
`keras.distribution` API is JAX-only). A prompt-tuning task is data
parallel: build and compile it inside `strategy.scope()`, and every replica
holds the frozen backbone (read-only) and a mirrored copy of the prompt
whose gradient is all-reduced before each update.
"""

import glob
import json
import logging
import os
import types

import tensorflow as tf

from keras_prompt.tasks.distributed_steps import first_replica_symbolic_build
from keras_prompt.tasks.distributed_steps import is_multi_worker
from keras_prompt.tasks.distributed_steps import with_rank_one_logs
from keras_prompt.tasks.prompt_task import PromptTaskMixin
from keras_prompt.validation import require_tensorflow

logger = logging.getLogger("keras_prompt.distribute")

STRATEGY_WORDS = ("auto", "tpu", "gpu", "cpu", "multi_worker")
_TPU_ENVIRONMENT = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")
# One TPU system may be initialised once per process.
_TPU_STRATEGIES = {}


def is_tpu_strategy(strategy):
    """Whether `strategy` is a `TPUStrategy` (any version)."""
    return any(
        cls.__name__.startswith("TPUStrategy") for cls in type(strategy).__mro__
    )


def _local_tpu_present():
    """A TPU VM's chips show up as device files (v2-v4: accel, v5: vfio)."""
    if glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        return True
    try:
        return bool(tf.config.list_physical_devices("TPU"))
    except Exception:  # noqa: BLE001 - a TF without TPU support.
        return False


def _tpu_target(tpu):
    """What to hand `TPUClusterResolver`, or `False` when no TPU is hinted.

    An explicit `tpu` wins; then `TPU_NAME` & co. (a TPU node or pod slice
    reached over the network; the resolver reads them); then a TPU VM's
    local chips (`"local"`).
    """
    if tpu:
        return tpu
    if any(os.environ.get(name) for name in _TPU_ENVIRONMENT):
        return None
    if _local_tpu_present():
        return "local"
    return False


def _connect_tpu(tpu):
    """Connects to the TPU system, initialises it and returns TPUStrategy."""
    key = tpu or ""
    if key in _TPU_STRATEGIES:
        return _TPU_STRATEGIES[key]
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    _TPU_STRATEGIES[key] = strategy
    return strategy


def _tf_config_tasks():
    """Number of workers (and chief) named by `TF_CONFIG`, 0 without it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError):
        raise ValueError(
            f"`TF_CONFIG` is not valid JSON with a 'cluster'. Received: "
            f"TF_CONFIG={raw!r}"
        ) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _mirrored(devices):
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _choose(word, tpu):
    """`(strategy, reason)` for a validated strategy word."""
    if word == "tpu":
        target = _tpu_target(tpu)
        if target is False:
            raise ValueError(
                "strategy='tpu' was requested but no TPU was found: no `tpu` "
                "name or address was given, none of "
                f"{', '.join(_TPU_ENVIRONMENT)} is set, and this machine has "
                "no local TPU devices. Pass `tpu=` (a TPU name or "
                "grpc://address), or use strategy='auto'."
            )
        try:
            return _connect_tpu(target), f"TPU {target or 'from environment'}"
        except Exception as error:
            raise ValueError(
                f"strategy='tpu' was requested but connecting to the TPU "
                f"{target or '(from the environment)'} failed: {error}"
            ) from error
    if word == "multi_worker":
        if _tf_config_tasks() < 1:
            raise ValueError(
                "strategy='multi_worker' needs `TF_CONFIG` naming the "
                "cluster's workers and this process' task. Received: "
                f"TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy(), "TF_CONFIG"
    gpus = tf.config.list_logical_devices("GPU")
    if word == "gpu":
        if not gpus:
            raise ValueError(
                "strategy='gpu' was requested but TensorFlow sees no GPU. "
                "Use strategy='auto' or 'cpu'."
            )
        if len(gpus) > 1:
            return _mirrored(gpus), f"{len(gpus)} GPUs"
        return tf.distribute.get_strategy(), "one GPU"
    if word == "cpu":
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) > 1:
            return _mirrored(cpus), f"{len(cpus)} logical CPU devices"
        if gpus:
            return tf.distribute.OneDeviceStrategy("/cpu:0"), "CPU only"
        return tf.distribute.get_strategy(), "one CPU device"
    # "auto": TPU, then a multi-worker cluster, then GPUs, then default.
    target = _tpu_target(tpu)
    if target is not False:
        try:
            return _connect_tpu(target), f"TPU {target or 'from environment'}"
        except Exception as error:  # noqa: BLE001 - fall back, say why.
            logger.warning(
                "A TPU was hinted (%s) but connecting failed (%s); "
                "falling back to GPUs/CPU.",
                target or "environment",
                error,
            )
    if _tf_config_tasks() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(), "TF_CONFIG"
    if len(gpus) > 1:
        return _mirrored(gpus), f"{len(gpus)} GPUs"
    if gpus:
        return tf.distribute.get_strategy(), "one GPU"
    return tf.distribute.get_strategy(), "no accelerator"


def resolve_strategy(strategy="auto", tpu=None, verbose=True):
    """Returns the `tf.distribute.Strategy` for a word, connecting TPUs.

    * `"tpu"`: `TPUClusterResolver` (the `tpu` name or `grpc://` address,
      else `TPU_NAME` / `TPU_CONFIG` / `KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS`, else
      a TPU VM's local chips), `tf.config.experimental_connect_to_cluster`,
      `tf.tpu.experimental.initialize_tpu_system` (once per process), then
      `TPUStrategy`. A `ValueError` says why when there is no TPU.
    * `"gpu"`: `MirroredStrategy` over all GPUs when there are several, the
      default strategy on one; a `ValueError` without GPUs.
    * `"cpu"`: the default strategy (`OneDeviceStrategy("/cpu:0")` when
      GPUs are visible); `MirroredStrategy` over logical CPU devices when
      several were configured (how tests simulate replicas).
    * `"multi_worker"`: `MultiWorkerMirroredStrategy` from `TF_CONFIG`.
    * `"auto"`: a TPU if one is hinted and connects (else a warning and on),
      then `MultiWorkerMirroredStrategy` if `TF_CONFIG` names several
      workers, then `MirroredStrategy` over several GPUs, else the default
      strategy (one GPU or the CPU).

    The choice is logged (logger `"keras_prompt.distribute"`) and, with
    `verbose`, printed. A `tf.distribute.Strategy` passed in is returned
    as is. Call this at the start of the program, before other TensorFlow
    work (multi-worker and TPU set-up must come first).

    Args:
        strategy: one of `"auto"`, `"tpu"`, `"gpu"`, `"cpu"`,
            `"multi_worker"`, or a `tf.distribute.Strategy`.
        tpu: optional TPU name or `grpc://host:port` (`"local"` on a TPU
            VM).
        verbose: bool, print the choice. Defaults to `True`.

    Example:

    ```python
    import keras_prompt
    from keras_prompt.distribute import compile_options, resolve_strategy

    strategy = resolve_strategy("auto")
    with strategy.scope():
        model = keras_prompt.PromptSeq2SeqLM.from_preset("t5_1.1_xxl")
        model.compile(**compile_options(strategy))
    ```
    """
    require_tensorflow(
        "A tf.distribute strategy",
        "On JAX, use keras.distribution (DataParallel, ModelParallel): "
        "docs/scale.md.",
    )
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if not isinstance(strategy, str) or (
        strategy.strip().lower().replace("-", "_") not in STRATEGY_WORDS
    ):
        raise ValueError(
            f"`strategy` must be one of {', '.join(STRATEGY_WORDS)} or a "
            f"tf.distribute.Strategy. Received: strategy={strategy!r}"
        )
    word = strategy.strip().lower().replace("-", "_")
    chosen, reason = _choose(word, tpu)
    message = (
        f"keras_prompt: strategy={word!r} -> {describe_strategy(chosen)} "
        f"({reason})"
    )
    logger.info(message)
    if verbose:
        print(message)
    return chosen


def describe_strategy(strategy=None):
    """One line naming the strategy, its replicas and devices."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    name = type(strategy).__name__
    if is_tpu_strategy(strategy):
        hosts = getattr(strategy.extended, "num_hosts", 1)
        return f"TPUStrategy: {replicas} replicas on {hosts} host(s)"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        workers = strategy.cluster_resolver.cluster_spec().num_tasks("worker")
        return (
            f"MultiWorkerMirroredStrategy: {replicas} replicas on "
            f"{max(workers, 1)} worker(s)"
        )
    try:
        devices = strategy.extended.worker_devices
    except (AttributeError, RuntimeError):  # The default strategy.
        devices = None
    if name == "_DefaultDistributionStrategy" or not devices:
        gpus = tf.config.list_logical_devices("GPU")
        where = gpus[0].name if gpus else "CPU"
        return f"default strategy: 1 replica on {where}"
    devices = ", ".join(d.split("device:")[-1] for d in devices)
    return f"{name}: {replicas} replica(s) on {devices}"


def compile_options(strategy=None):
    """`compile()` keyword arguments that suit the strategy.

    * Default / one-device strategy: `jit_compile=True` (XLA; combine with
      `make_static` so that one program serves every step).
    * `MirroredStrategy` / `MultiWorkerMirroredStrategy`:
      `jit_compile=False`: TF cannot XLA-compile a step whose variables
      live on several devices (it fails with "Trying to access resource
      ... located in device ... CPU:1 from device ... CPU:0").
    * `TPUStrategy`: `jit_compile=False`, which is what Keras' `"auto"`
      picks under any `tf.distribute` strategy: the TPU compiles every
      replica step with XLA anyway, and the shapes must be static.

    Args:
        strategy: a `tf.distribute.Strategy`; defaults to the current one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    single = strategy.num_replicas_in_sync == 1 and not is_tpu_strategy(
        strategy
    )
    return {"jit_compile": bool(single)}


def prepare_model(model):
    """Kept for old code: returns `model` unchanged.

    The prompt tasks now cope with `tf.distribute` strategies themselves
    (their `_maybe_symbolic_build` reads one replica's first batch instead
    of all-reducing it, which failed for boolean padding masks; their steps
    return logs that `MultiWorkerMirroredStrategy` can average), so a plain
    `fit` / `evaluate` / `predict` works under Mirrored, MultiWorkerMirrored
    and TPU strategies. For another Keras model on the TensorFlow backend
    it still installs those two fixes on that model.

    Args:
        model: a Keras model.
    """
    if not hasattr(model, "_maybe_symbolic_build"):
        raise ValueError(
            "`model` must be a Keras model on the TensorFlow backend. "
            f"Received: model={type(model).__name__}"
        )
    if isinstance(model, PromptTaskMixin):
        return model
    model._maybe_symbolic_build = types.MethodType(
        first_replica_symbolic_build, model
    )
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is not None and is_multi_worker(strategy):
        if not getattr(model, "_keras_prompt_rank_one_logs", False):
            model.train_step = with_rank_one_logs(model.train_step)
            model.test_step = with_rank_one_logs(model.test_step)
            model._keras_prompt_rank_one_logs = True
        model.train_function = None
        model.test_function = None
    return model
