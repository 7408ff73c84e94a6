"""Timing and memory helpers shared by the benchmarks.

Timing: every configuration of one comparison lives in the same process
and is timed in alternation (round-robin, the order rotated each round),
so a neighbour's job that slows the machine slows all of them alike. We
report the median of the rounds, after warm-up calls that trace and (with
XLA) compile.

Memory: TensorFlow allocates through its own allocators, so `tracemalloc`
sees nothing. We read the process' resident set size (RSS) from Linux:
`current_rss()` (from `/proc/self/statm`) and the high-water mark
`peak_rss()` (`VmHWM`, what `getrusage(RUSAGE_SELF).ru_maxrss` reports).
`reset_peak_rss()` lowers the high-water mark to the current RSS (writing
`5` to `/proc/self/clear_refs`, Linux >= 4.0), so the peak of one phase
(e.g. the training steps after compilation) can be read on its own. Each
memory configuration runs in its own subprocess (`run_child`), so one
configuration's freed-but-cached memory never hides another's peak.
"""

import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time

MIB = 1024 * 1024


def setup_environment():
    """Quiet TensorFlow, TF backend, no Hugging Face network access."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


# -- machine ------------------------------------------------------------------
def machine_line():
    """One line naming the CPU count and the load at this moment."""
    load = os.getloadavg()
    cpus = os.cpu_count()
    return (
        f"machine: {cpus} CPU cores, load average {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min); timings on a "
        "shared, loaded machine are noisy: compare ratios measured in the "
        "same run"
    )


# -- memory -------------------------------------------------------------------
def current_rss():
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    """High-water mark of the resident set size, in bytes (`VmHWM`)."""
    with open("/proc/self/status") as f:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", f.read())
    return int(match.group(1)) * 1024


def reset_peak_rss():
    """Lowers the RSS high-water mark to the current RSS.

    Returns `False` where the kernel does not allow it; the peak then
    covers the whole process life, which overstates nothing but can hide
    a phase's peak below an earlier one.
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mib(value):
    return value / MIB


# -- timing -------------------------------------------------------------------
def interleaved_times(functions, repeats, warmup=1):
    """Times zero-argument callables in alternation.

    Every function is called `warmup` times first (not timed); then each
    of `repeats` rounds calls every function once, in an order rotated by
    one each round. Each callable must block until its work is done.

    Returns `(wall, cpu)`: dicts name -> list of `repeats` durations in
    seconds, wall-clock and this process' CPU time (user + system, all
    threads). CPU time is steadier than wall time when other jobs share
    the cores, but it also counts threads spinning while they wait.
    """
    names = list(functions)
    for name in names:
        for _ in range(warmup):
            functions[name]()
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            functions[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def median(values):
    return statistics.median(values)


def spread(values):
    """`(low, high)`: the quartiles of `values` (min/max for < 4)."""
    values = sorted(values)
    if len(values) < 4:
        return values[0], values[-1]
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[0], quartiles[2]


def describe(values, unit="ms", scale=1e3):
    low, high = spread(values)
    return (
        f"{median(values) * scale:8.1f} {unit} "
        f"[{low * scale:.1f}-{high * scale:.1f}]"
    )


def per_call_times(runners, steps, repeats):
    """Per-round seconds per call of `runners`, timed in alternation.

    Each runner takes `steps` and makes that many blocking calls; every
    round times each runner once, the order rotated by one each round.
    """
    wall, _ = interleaved_times(
        {name: (lambda r=r: r(steps)) for name, r in runners.items()},
        repeats=repeats,
        warmup=0,
    )
    return {name: [t / steps for t in times] for name, times in wall.items()}


def summary(wall, cpu):
    """`{"median", "best", "cpu"}`, each a dict name -> seconds: the
    median and best wall time and the median CPU time of each callable
    (`interleaved_times`' results)."""
    return {
        "median": {n: median(t) for n, t in wall.items()},
        "best": {n: min(t) for n, t in wall.items()},
        "cpu": {n: median(t) for n, t in cpu.items()},
    }


def ratio_of_medians(numerator, denominator):
    return median(numerator) / median(denominator)


def paired_ratio(numerator, denominator):
    """Median of the per-round ratios: each round's two timings ran back
    to back, so the load is closest to equal inside a round."""
    return median([a / b for a, b in zip(numerator, denominator)])


# -- FLOP model ---------------------------------------------------------------
# Multiply-accumulates of the matmuls of one example, split into products
# with a weight ("weights") and products of two activations (attention
# scores and weighted values, "attention"). Layer norms, softmax and
# element-wise ops are left out (a few percent).


def t5_forward_macs(config, encoder_length, decoder_length):
    """`(weights, attention)` MACs of one T5 example.

    `encoder_length` includes the prompt; `config` has `hidden_dim`,
    `intermediate_dim`, `num_layers`, `num_heads`, `key_value_dim`,
    `use_gated_activation`, `vocabulary_size`.
    """
    d = config["hidden_dim"]
    inner = config["num_heads"] * config["key_value_dim"]
    ffn = (3 if config["use_gated_activation"] else 2) * d
    ffn *= config["intermediate_dim"]
    s, t, n = encoder_length, decoder_length, config["num_layers"]
    weights = n * s * (4 * d * inner + ffn)  # encoder
    weights += n * t * (4 * d * inner + 2 * d * inner + ffn)  # decoder
    weights += n * s * 2 * d * inner  # cross-attention keys and values
    weights += t * d * config["vocabulary_size"]  # LM head
    attention = n * 2 * s * s * inner  # encoder self-attention
    attention += n * (2 * t * t * inner + 2 * t * s * inner)  # decoder
    return weights, attention


def bert_forward_macs(config, length):
    """`(weights, attention)` MACs of one BERT example of `length`
    positions (prompt included), pooler and head left out."""
    d, n = config["hidden_dim"], config["num_layers"]
    weights = n * length * (4 * d * d + 2 * d * config["intermediate_dim"])
    attention = n * 2 * length * length * d
    return weights, attention


def prompt_train_bound(plain, prompted):
    """The FLOP ratio of a prompt-tuning step to a fine-tuning step.

    `plain` and `prompted` are `(weights, attention)` forward MACs without
    and with the prompt. Fine-tuning runs the forward pass, the input
    gradients and the weight gradients: 3x the forward. Prompt tuning has
    no weight gradients, so weight matmuls cost 2x (forward and input
    gradient), while attention products still cost 3x (both operands are
    activations), on the longer prompted sequence.
    """
    full = 3 * (plain[0] + plain[1])
    prompt = 2 * prompted[0] + 3 * prompted[1]
    return prompt / full


def forward_bound(plain, prompted):
    """The FLOP ratio of a prompted forward pass to a plain one."""
    return sum(prompted) / sum(plain)


def forward_ratios(plain, prompted, extended, length, p, macs, goal):
    """The forward-pass comparison of a prompt of `p` positions.

    `plain`, `prompted` and `extended` are per-round times of the plain
    backbone on `length` tokens, the prompted one on the same tokens and
    the plain one on `length + p` tokens (or None); `macs(p)` gives the
    forward MACs. Returns the prompted / plain ratio, the (L+P)/L bound,
    the FLOP ratio, whether the ratio is within `goal` times the bound and,
    with `extended`, the plain L+P / L ratio and prompted / plain L+P.
    """
    ratio = paired_ratio(prompted, plain)
    bound = (length + p) / length
    row = {
        "ratio": ratio,
        "bound": bound,
        "flop_ratio": forward_bound(macs(0), macs(p)),
        "met": ratio <= goal * bound,
    }
    if extended is not None:
        row["plain_extended_ratio"] = paired_ratio(extended, plain)
        row["vs_plain_extended"] = paired_ratio(prompted, extended)
    return row


def generation_rates(full, prefill, batch, new_tokens):
    """Seconds of `new_tokens`-token and 1-token generations -> `(total,
    prefill, per_token, tokens_per_s)` from their medians."""
    total, first = median(full), median(prefill)
    per_token = (total - first) / max(new_tokens - 1, 1)
    return total, first, per_token, batch * new_tokens / total


# -- Keras train / forward steps ----------------------------------------------
def to_tensors(tree):
    import tensorflow as tf

    return tf.nest.map_structure(
        lambda x: None if x is None else tf.convert_to_tensor(x), tree
    )


class TraceCounter:
    """Counts how often a model's `train_step` is traced.

    Python code in `train_step` runs once per trace of the compiled train
    function, never per executed step; so the count is the number of
    traces (1 when every batch has the same shapes).
    """

    def __init__(self, model, method="train_step"):
        self.count = 0
        original = getattr(model, method)

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        setattr(model, method, counted)


def train_step_runner(model, data):
    """A callable running one compiled train step of `model` on `data`.

    Uses Keras' own train function (what `fit` runs) on a fixed batch of
    tensors `(x, y, sample_weight)`; it returns once the loss is on the
    host, so the step has finished.
    """
    data = to_tensors(data)
    model.make_train_function()
    function = model.train_function

    def run():
        logs = function([data])
        return float(logs["loss"])

    return run


def forward_runner(function, inputs):
    """A callable running `function(inputs)` and waiting for the result."""
    import tensorflow as tf

    inputs = to_tensors(inputs)

    def run():
        outputs = function(inputs)
        # Fetching one scalar forces the computation to finish.
        first = tf.nest.flatten(outputs)[0]
        return float(tf.reduce_sum(first))

    return run


# -- subprocesses ------------------------------------------------------------
RESULT_PREFIX = "@@RESULT@@ "


def emit_result(result):
    """Prints a child's result for `run_child` to pick up."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_result(output):
    """The result a child emitted in `output`, or None."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def run_child(script, arguments, timeout=None):
    """Runs `python script *arguments` and returns the emitted result.

    Raises `RuntimeError` with the child's last output if it fails.
    """
    command = [sys.executable, script] + [str(a) for a in arguments]
    process = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
    result = parse_result(process.stdout)
    if result is not None:
        return result
    tail = (process.stdout + process.stderr)[-3000:]
    raise RuntimeError(
        f"{' '.join(command)} failed (exit {process.returncode}):\n{tail}"
    )


# -- output -------------------------------------------------------------------
def timing_arguments(parser, repeats, warmup=1):
    """Adds `--repeats`, `--warmup`, `--jit` and `--quick` to `parser`."""
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument(
        "--jit", default="off,on", help="comma list of off / on"
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes")


def names(text):
    """The items of a comma list (`"t5, minilm"` -> `["t5", "minilm"]`)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def run_families(models, run_family):
    """Calls `run_family(name)` for each of the comma list `models`,
    between two machine lines."""
    print(machine_line())
    for family in names(models):
        run_family(family)
    print()
    print(machine_line())


def table(headers, rows):
    """A plain-text table, columns right-aligned but the first."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(parts))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
