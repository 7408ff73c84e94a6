"""Memory checks `keras-prompt tune` makes before any model is loaded.

A prompt length, batch or sequence length far beyond the machine used to
end in an allocation failure or a crash after minutes of loading. The
least memory a training step needs is computed from the preset's config
(read, never built) with the planner's arithmetic
(`keras_prompt.distribute.planner`, rematerialised: the lowest of its
estimates):

- the prompt (`P` vectors of width `h` at each of `depth` layers), its
  gradient and the optimizer's slots, in float32;
- the input of each of the `n` blocks and of the final norm kept for the
  backward pass, `(n + 1) * b * s * h` values, `s = L + P` positions
  (`L` the sequence length, `b` the batch);
- one layer's attention probabilities, `b * a * s * s` values (`a`
  heads);
- the frozen weights (the preset's weight files).

Settings whose least need is above the machine's memory are refused with
one line naming them. It is a lower bound: settings that pass may still
not fit (`keras-prompt plan` estimates the whole of it for the families it
knows).
"""

import json
import os

from keras_prompt.cli import CliError

GIB = 1 << 30
_WEIGHT_FILES = (".h5", ".safetensors", ".gguf", ".bin")
# The config fields of a size, in keras-hub's and Hugging Face's names.
_FIELDS = {
    "hidden": ("hidden_dim", "hidden_size", "d_model", "n_embd"),
    "layers": ("num_layers", "num_hidden_layers", "n_layer"),
    "heads": (
        "num_heads",
        "num_query_heads",
        "num_attention_heads",
        "n_head",
    ),
}


#: Where Linux control groups (v2, v1) cap a container's memory.
_CGROUP_LIMITS = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def machine_memory():
    """The memory this process may use in bytes: the machine's physical
    memory, or its container's limit where lower; `None` if unknown."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
    return memory


def preset_sizes(preset):
    """`(hidden, layers, heads, weight bytes)` of a local preset folder
    from its `config.json` (keras-hub's or Hugging Face's), each `1` (and
    `0` bytes) where it cannot be read: a remote preset is not fetched."""
    sizes = {"hidden": 1, "layers": 1, "heads": 1}
    if not isinstance(preset, str) or not os.path.isdir(preset):
        return sizes["hidden"], sizes["layers"], sizes["heads"], 0
    try:
        with open(os.path.join(preset, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        config = config["config"]
    for key, names in _FIELDS.items():
        for name in names:
            value = config.get(name) if isinstance(config, dict) else None
            if isinstance(value, int) and not isinstance(value, bool):
                sizes[key] = max(value, 1)
                break
    weights = sum(
        entry.stat().st_size
        for entry in os.scandir(preset)
        if entry.is_file() and entry.name.endswith(_WEIGHT_FILES)
    )
    return sizes["hidden"], sizes["layers"], sizes["heads"], weights


def least_training_bytes(
    hidden,
    layers,
    heads,
    weight_bytes,
    batch_size,
    sequence_length,
    prompt_length,
    depth=1,
    dtype_bytes=2,
    optimizer_slots=1,
):
    """The least bytes one training step needs (the module docstring's
    terms)."""
    positions = sequence_length + prompt_length
    prompt = 4 * (2 + optimizer_slots) * prompt_length * hidden * depth
    kept = (layers + 1) * batch_size * positions * hidden
    scores = batch_size * heads * positions * positions
    return weight_bytes + prompt + dtype_bytes * (kept + scores)


def check_tune_memory(args, preset, init, memory=None):
    """`check_training_memory` of `keras-prompt tune`'s arguments (`init`:
    the resolved initialisation, whose prompt file may set the length)."""
    from keras_prompt.cli.tune_arguments import DEFAULT_PROMPT_LENGTH

    source = init.settings() if hasattr(init, "settings") else {}
    check_training_memory(
        preset,
        args.batch_size,
        args.sequence_length,
        args.prompt_length or source.get("length") or DEFAULT_PROMPT_LENGTH,
        deep=bool(args.deep or source.get("deep")),
        dtype=args.dtype,
        memory=memory,
    )


def check_training_memory(
    preset,
    batch_size,
    sequence_length,
    prompt_length,
    deep=False,
    dtype="auto",
    memory=None,
):
    """Raises a one-line `CliError` when the settings need more than the
    machine's memory (`memory` bytes; default: this machine's)."""
    memory = machine_memory() if memory is None else memory
    if not memory:
        return
    hidden, layers, heads, weights = preset_sizes(preset)
    needed = least_training_bytes(
        hidden,
        layers,
        heads,
        weights,
        batch_size,
        sequence_length or 1,
        prompt_length,
        depth=layers if deep else 1,
        dtype_bytes=4 if dtype == "float32" else 2,
    )
    if needed <= memory:
        return
    settings = f"--prompt-length {prompt_length}, --batch-size {batch_size}" + (
        f", --sequence-length {sequence_length}" if sequence_length else ""
    )
    raise CliError(
        f"{settings} need at least {needed / GIB:,.1f} GiB to train this "
        f"model (hidden size {hidden}, {layers} layers), more than this "
        f"machine's {memory / GIB:,.1f} GiB of memory: lower them"
    )
