"""Which dtype the frozen weights should have: bfloat16 where it is fast.

Prompt tuning never updates the frozen weights, so they need no float32
master copy: held in bfloat16 they take half the memory, and where the
hardware multiplies bfloat16 natively the steps run faster (1.6x for
all-MiniLM-L6-v2 on a CPU with AVX512-BF16, `docs/performance.md`). The
prompt, a classifier's head and the optimizer state stay float32 whatever
the backbone's dtype, and prompt files are the same for both.

`fast_bfloat16()` detects (it does not guess) whether this machine's
accelerator, or its CPU when there is none, runs bfloat16 matrix
multiplications natively: a TPU; a GPU of compute capability 8.0 or newer
(Ampere, Hopper and later, whose tensor cores take bfloat16); a CPU with
the AVX512-BF16 or AMX-BF16 instructions (from `/proc/cpuinfo`).
`resolve_dtype("auto")` turns that into `"bfloat16"` or `"float32"`.
`dtype="auto"` is the default of every `from_preset` that loads frozen
weights, of `Recipe` and of `keras-prompt tune`. The environment variable
`KERAS_PROMPT_BFLOAT16` overrides the detection: `1` as if bfloat16 were
fast, `0` as if not (float32 everywhere "auto" resolves).
"""

import os

DTYPES = ("auto", "float32", "bfloat16")
#: The environment variable that overrides `fast_bfloat16`'s detection.
FORCE_VARIABLE = "KERAS_PROMPT_BFLOAT16"
_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags the kernel reports, or an empty set where
    there is no `/proc/cpuinfo` (e.g. macOS: no bfloat16 CPU kernels)."""
    if not os.path.isfile(path):
        return set()
    with open(path) as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _accelerators():
    """`(platform, [compute capabilities])` of the backend's accelerator:
    `("tpu", [])`, `("gpu", [(8, 0), ...])` or `(None, [])`."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        devices = jax.devices()
        platform = devices[0].platform if devices else "cpu"
        if platform == "tpu":
            return "tpu", []
        if platform == "gpu":
            return "gpu", [
                tuple(int(p) for p in str(d.compute_capability).split("."))
                for d in devices
            ]
        return None, []
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", []
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = [tf.config.experimental.get_device_details(g) for g in gpus]
        return "gpu", [d.get("compute_capability", (0, 0)) for d in details]
    return None, []


def fast_bfloat16(accelerators=None, flags=None):
    """Whether bfloat16 matmuls run natively here; `(bool, reason)`.

    Args:
        accelerators: optional `(platform, capabilities)` instead of asking the
            backend (for tests and planning).
        flags: optional set of CPU flags instead of `/proc/cpuinfo`'s.

    Without either, `KERAS_PROMPT_BFLOAT16=0` or `=1` in the environment
    decides instead of the detection.
    """
    forced = os.environ.get(FORCE_VARIABLE)
    if forced is not None and accelerators is None and flags is None:
        if forced not in ("0", "1"):
            raise ValueError(
                f"The environment variable {FORCE_VARIABLE} must be 0 or 1 "
                f"(or unset). Received: {FORCE_VARIABLE}={forced!r}"
            )
        return forced == "1", f"{FORCE_VARIABLE}={forced}"
    platform, capabilities = (
        _accelerators() if accelerators is None else accelerators
    )
    if platform == "tpu":
        return True, "TPU"
    if platform == "gpu":
        if capabilities and all(tuple(c) >= (8, 0) for c in capabilities):
            return True, f"GPU compute capability {min(capabilities)}"
        return False, f"GPU compute capability {min(capabilities)} < 8.0"
    flags = cpu_flags() if flags is None else set(flags)
    found = [flag for flag in _CPU_FLAGS if flag in flags]
    if found:
        return True, f"CPU with {', '.join(found)}"
    return False, "CPU without AVX512-BF16 or AMX-BF16"


def resolve_dtype(dtype="auto", detect=None):
    """`(dtype, reason)`: `"auto"` resolved by `detect()`.

    Args:
        dtype: `"auto"`, `"float32"` or `"bfloat16"`.
        detect: optional callable returning `(bool, reason)`; defaults to
            `fast_bfloat16`.
    """
    if dtype not in DTYPES:
        raise ValueError(
            f"`dtype` must be one of {DTYPES}. Received: dtype={dtype!r}"
        )
    if dtype != "auto":
        return dtype, "asked for"
    fast, reason = (detect or fast_bfloat16)()
    return ("bfloat16" if fast else "float32"), reason
