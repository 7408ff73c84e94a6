"""The sections of `accelerator_step_cost.py`: memory, train, forward,
generate, and the summary of their results (`docs/performance.md`,
"Method", describes what each measures)."""

import gc
import os
import time

import _backend
import _measure
import _models
from _backend import ForwardRunner
from _backend import GenerateRunner
from _backend import TrainRunner
from _backend import backend
from _backend import compile_in_parallel
from _models import GOAL_FORWARD
from _models import GOAL_MEMORY
from _models import GOAL_TIME
from _models import METHODS

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "accelerator_step_cost.py"
)


# -- models and batches ------------------------------------------------------
def vocabulary(args, family):
    if family == "t5":
        return _models.t5_config(args.quick)["vocabulary_size"]
    return _models.minilm_config(args.quick)["vocabulary_size"]


def t5_inputs(args, batch, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = vocabulary(args, "t5")
    return _models.t5_inputs(rng, vocab, batch, length, args.t5_target)


def t5_batch(args, batch):
    import numpy as np

    rng = np.random.default_rng(1)
    vocab, t = vocabulary(args, "t5"), args.t5_target
    y = rng.integers(2, vocab, (batch, t), "int32")
    x = t5_inputs(args, batch, args.t5_input)
    return x, y, np.ones((batch, t), "float32")


def minilm_inputs(args, batch, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = vocabulary(args, "minilm")
    return _models.minilm_inputs(rng, vocab, batch, length)


def minilm_batch(args, batch):
    import numpy as np

    rng = np.random.default_rng(1)
    x = minilm_inputs(args, batch, args.minilm_length)
    return x, rng.integers(0, 2, (batch,)).astype("int32"), None


FAMILIES = {
    "t5": dict(
        build=lambda args, method: _models.build_t5(
            method, args.prompt_length, args.quick
        ),
        batch=t5_batch,
        backbone=lambda args: _models.t5_backbone(args.quick),
        inputs=t5_inputs,
        macs=lambda args: _models.t5_macs(
            _models.t5_config(args.quick), args.t5_input, args.t5_target
        ),
        length=lambda args: args.t5_input,
    ),
    "minilm": dict(
        build=lambda args, method: _models.build_minilm(
            method,
            args.prompt_length,
            lambda: _models.minilm_backbone(args.quick),
        ),
        batch=minilm_batch,
        backbone=lambda args: _models.minilm_backbone(args.quick),
        inputs=minilm_inputs,
        macs=lambda args: _models.minilm_macs(
            _models.minilm_config(args.quick), args.minilm_length
        ),
        length=lambda args: args.minilm_length,
    ),
}


def family_name(args, family):
    if family == "t5":
        name = "T5 tiny" if args.quick else "T5 1.1-small"
        return f"{name} in {args.t5_input} tgt {args.t5_target}"
    name = "MiniLM tiny" if args.quick else "MiniLM-L6"
    return f"{name} len {args.minilm_length}"


def batches(args, family):
    """The batch sizes of a family's training rows."""
    if family == "t5":
        sizes = [args.t5_batch, args.t5_large_batch]
    else:
        sizes = [args.minilm_batch, args.minilm_large_batch]
    return sizes if args.large_batch else sizes[:1]


def train_bound(args, family):
    spec = FAMILIES[family]
    return _models.train_bound(
        spec["macs"](args), spec["length"](args), args.prompt_length
    )


def count_weights(model):
    import math

    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    return int(trainable), int(sum(math.prod(v.shape) for v in model.weights))


def train_section(args, results, clock):
    rows = []
    cached = "memory" in results and results.get("compile_cache")
    for family in args.models:
        bound, simple = train_bound(args, family)
        for batch in batches(args, family):
            if clock.over(f"train {family} batch {batch}"):
                continue
            start = time.perf_counter()
            data = FAMILIES[family]["batch"](args, batch)
            models, runners, first = {}, {}, {}
            for method in METHODS:
                models[method] = FAMILIES[family]["build"](args, method)
                runners[method] = TrainRunner(models[method], data)
            for method in METHODS:
                tick = time.perf_counter()
                runners[method]()
                first[method] = time.perf_counter() - tick
            for method in METHODS:
                runners[method](args.warmup)
            times = _measure.per_call_times(runners, args.steps, args.repeats)
            ratio = _measure.paired_ratio(times["prompt"], times["full"])
            row = {
                "family": family,
                "config": f"{family_name(args, family)}, batch {batch}",
                "batch": batch,
                "prompt_ms": 1e3 * _measure.median(times["prompt"]),
                "full_ms": 1e3 * _measure.median(times["full"]),
                "prompt_ms_rounds": [1e3 * t for t in times["prompt"]],
                "full_ms_rounds": [1e3 * t for t in times["full"]],
                "ratio": ratio,
                "bound": bound,
                "simple_bound": simple,
                "goal": GOAL_TIME,
                "met": ratio <= GOAL_TIME,
                "first_call_s": first,
                "first_call_from_cache": bool(cached),
                "jit_compile": {m: models[m].jit_compile for m in METHODS},
                "optimizer": {
                    m: type(models[m].optimizer).__name__ for m in METHODS
                },
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            results["train"] = rows
            print(
                f"   {row['config']}: prompt {row['prompt_ms']:.2f} ms, full "
                f"{row['full_ms']:.2f} ms per step, ratio {ratio:.3f} (bound "
                f"{bound:.3f}); first call {first['prompt']:.1f} / "
                f"{first['full']:.1f} s; jit_compile "
                f"{row['jit_compile']['prompt']}; {row['seconds']:.0f} s",
                flush=True,
            )
            for runner in runners.values():
                runner.finish()
            del models, runners
            gc.collect()
    headers = [
        "train step",
        "prompt ms",
        "full ms",
        "prompt/full",
        "bound (2/3(L+P)/L)",
        "goal",
        "1st call s p / f" + (" (cached)" if cached else ""),
    ]
    table = [
        [
            r["config"],
            f"{r['prompt_ms']:.2f}",
            f"{r['full_ms']:.2f}",
            f"{r['ratio']:.3f}",
            f"{r['bound']:.3f} ({r['simple_bound']:.3f})",
            f"<= {GOAL_TIME} {'met' if r['met'] else 'not met'}",
            f"{r['first_call_s']['prompt']:.1f} / "
            f"{r['first_call_s']['full']:.1f}",
        ]
        for r in rows
    ]
    if table:
        print(_measure.table(headers, table))


# -- memory (one subprocess per configuration) --------------------------------
def measure_memory(args, family, method, batch):
    """Runs in a child: builds one configuration, measures its memory.

    On JAX the train step is compiled first (`lower().compile()`, which
    also gives XLA's memory plan), and the device's peak read right after
    ("compile peak"), before any step: autotuning allocates device memory
    too, so a peak that the steps do not raise may be the compiler's.
    """
    gc.collect()
    _backend.block(_backend.to_device([1.0]))  # start the runtime first
    baseline, _, source = _backend.device_memory()
    model = FAMILIES[family]["build"](args, method)
    trainable, total = count_weights(model)
    runner = TrainRunner(model, FAMILIES[family]["batch"](args, batch))
    held = _backend.device_memory()[0]
    tick = time.perf_counter()
    xla = None
    try:
        xla = runner.xla_memory()
    except Exception as error:  # informative only
        print(f"memory_analysis failed: {error!r}", flush=True)
    compile_peak = _backend.device_memory()[1]
    runner(max(args.warmup, 1))
    first_s = time.perf_counter() - tick
    if source == "RSS":  # the peak of the steps, not of the compiler
        _measure.reset_peak_rss()
    runner(args.memory_steps)
    current, peak, _ = _backend.device_memory()
    return {
        "source": source,
        "baseline": int(baseline),
        "held": int(held - baseline),
        "compile_peak": int(compile_peak - baseline),
        "peak": int(peak - baseline),
        "after": int(current - baseline),
        "peak_from_steps": bool(peak > compile_peak or source == "RSS"),
        "xla": xla,
        "first_steps_s": first_s,
        "trainable": trainable,
        "total": total,
    }


def child_arguments(args, family, method, batch):
    arguments = ["--child", f"{family}:{method}:{batch}"]
    for flag in (
        "prompt_length",
        "t5_input",
        "t5_target",
        "minilm_length",
        "warmup",
        "memory_steps",
        "dtype_policy",
    ):
        value = getattr(args, flag)
        if value is not None:
            arguments += ["--" + flag.replace("_", "-"), str(value)]
    return arguments + (["--quick"] if args.quick else [])


def steps_mark(result):
    return "" if result.get("peak_from_steps", True) else "*"


def memory_section(args, results, clock):
    if clock.over("memory"):
        return
    row_keys = [(f, b) for f in args.models for b in batches(args, f)]
    # Largest first: the longest compiles start first.
    jobs = {
        (family, batch, method): child_arguments(args, family, method, batch)
        for family, batch in sorted(row_keys, key=lambda k: -k[1])
        for method in METHODS
    }
    timeout = max(clock.left(), 60.0)
    outcome = _backend.run_children(SCRIPT, jobs, args.jobs, timeout)
    rows = []
    for family, batch in row_keys:
        prompt = outcome[(family, batch, "prompt")]
        full = outcome[(family, batch, "full")]
        if "error" in prompt or "error" in full:
            continue
        row = {
            "family": family,
            "config": f"{family_name(args, family)}, batch {batch}",
            "batch": batch,
            "source": prompt["source"],
            "prompt": prompt,
            "full": full,
            "ratio": prompt["peak"] / full["peak"] if full["peak"] else None,
            "goal": GOAL_MEMORY,
        }
        if prompt["xla"] and full["xla"]:
            row["xla_ratio"] = prompt["xla"]["total"] / full["xla"]["total"]
        row["met"] = row["ratio"] is not None and row["ratio"] <= GOAL_MEMORY
        rows.append(row)
    results["memory"] = rows
    table = []
    for r in rows:
        p, f = r["prompt"], r["full"]
        xla = "n/a"
        if "xla_ratio" in r:
            xla = (
                f"{_measure.mib(p['xla']['total']):.0f} / "
                f"{_measure.mib(f['xla']['total']):.0f} = "
                f"{r['xla_ratio']:.3f}"
            )
        table.append(
            [
                r["config"],
                f"{_measure.mib(p['held']):.0f} / "
                f"{_measure.mib(f['held']):.0f}",
                f"{_measure.mib(p['peak']):.0f}{steps_mark(p)}",
                f"{_measure.mib(f['peak']):.0f}{steps_mark(f)}",
                f"{r['ratio']:.3f}" if r["ratio"] else "n/a",
                f"<= {GOAL_MEMORY} {'met' if r['met'] else 'not met'}",
                xla,
                f"{p['first_steps_s']:.1f} / {f['first_steps_s']:.1f}",
            ]
        )
    if table:
        print(
            _measure.table(
                [
                    f"memory MiB ({rows[0]['source']})",
                    "held p / f",
                    "peak prompt",
                    "peak full",
                    "prompt/full",
                    "goal",
                    "XLA plan p / f MiB",
                    "compile+warm-up s",
                ],
                table,
            )
        )
        print(
            "   held: the built model (weights, optimizer state); peak: over "
            "the baseline before building; * = the compiler's peak (before "
            "any step) was not exceeded by the steps"
        )
        print(
            f"   trainable weights: prompt {p['trainable']:,} / "
            f"{p['total']:,}; full {f['trainable']:,}"
        )


def forward_section(args, results, clock):
    from keras_prompt import FrozenBackbone

    if clock.over("forward"):
        return
    start = time.perf_counter()
    setups, runners = {}, {}
    for family in args.models:
        spec = FAMILIES[family]
        batch = batches(args, family)[-1]
        backbone = spec["backbone"](args)  # seeded
        length = spec["length"](args)
        prompted = {
            p: FrozenBackbone(backbone, prompt_length=p)
            for p in args.prompt_lengths
        }
        setups[family] = (batch, length)
        inputs = spec["inputs"](args, batch, length)
        runners[(family, "plain")] = ForwardRunner(backbone, inputs)
        for p, model in prompted.items():
            runners[(family, p)] = ForwardRunner(model, inputs)
        for p in args.extended_lengths:
            runners[(family, f"plain+{p}")] = ForwardRunner(
                backbone, spec["inputs"](args, batch, length + p)
            )
    if backend() == "jax":
        tick = time.perf_counter()
        compiled = compile_in_parallel(
            {key: runner.lower for key, runner in runners.items()}, args.jobs
        )
        for key, runner in runners.items():
            runner.compiled = compiled[key]
        print(
            f"   traced and compiled {len(runners)} forward functions in "
            f"{time.perf_counter() - tick:.1f} s ({args.jobs} threads)",
            flush=True,
        )
    for runner in runners.values():
        runner()  # the first call (compiles on TensorFlow)
        runner(args.warmup)
    rows = []
    for family in args.models:
        spec = FAMILIES[family]
        batch, length = setups[family]
        family_runners = {k[1]: r for k, r in runners.items() if k[0] == family}
        times = _measure.per_call_times(
            family_runners, args.steps, args.repeats
        )
        plain_ms = 1e3 * _measure.median(times["plain"])
        macs = spec["macs"](args)
        for p in args.prompt_lengths:
            extended = times.get(f"plain+{p}")
            row = {
                "family": family,
                "config": f"{family_name(args, family)}, batch {batch}",
                "batch": batch,
                "prompt_length": p,
                "plain_ms": plain_ms,
                "prompted_ms": 1e3 * _measure.median(times[p]),
                **_measure.forward_ratios(
                    times["plain"],
                    times[p],
                    extended,
                    length,
                    p,
                    macs,
                    GOAL_FORWARD,
                ),
            }
            if extended is not None:
                row["plain_extended_ms"] = 1e3 * _measure.median(extended)
            rows.append(row)
    results["forward"] = rows
    print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    del runners
    gc.collect()
    table = [
        [
            r["config"],
            r["prompt_length"],
            f"{r['plain_ms']:.2f}",
            f"{r['prompted_ms']:.2f}",
            f"{r['ratio']:.3f}",
            f"{r['bound']:.3f}",
            f"{r['flop_ratio']:.3f}",
            f"{r['plain_extended_ratio']:.3f}"
            if "plain_extended_ratio" in r
            else "",
            f"{r['vs_plain_extended']:.3f}" if "vs_plain_extended" in r else "",
            "yes" if r["met"] else "no",
        ]
        for r in rows
    ]
    if table:
        print(
            _measure.table(
                [
                    "forward (training=False)",
                    "P",
                    "plain ms",
                    "prompted ms",
                    "ratio",
                    "(L+P)/L",
                    "FLOP ratio",
                    "plain L+P",
                    "vs plain L+P",
                    f"<= {GOAL_FORWARD} (L+P)/L",
                ],
                table,
            )
        )


# -- generation ---------------------------------------------------------------
def generate_inputs(args, batch, new_tokens):
    vocab = vocabulary(args, "t5")
    return _models.t5_generate_inputs(batch, args.t5_input, new_tokens, vocab)


def generate_section(args, results, clock):
    if "t5" not in args.models or clock.over("generate"):
        return
    start = time.perf_counter()
    backbone = _models.t5_backbone(args.quick)
    models = {
        method: _models.t5_task(backbone, method, args.prompt_length)
        for method in ("plain", "prompt")
    }
    for model in models.values():
        model.compile(sampler="greedy")
    batch, new = args.generate_batch, args.new_tokens
    runners, first = {}, {}
    for name, model in models.items():
        for tokens in (1, new):
            runners[(name, tokens)] = GenerateRunner(
                model, generate_inputs(args, batch, tokens)
            )
    if backend() == "jax":
        # Compile in parallel; generate() then finds them compiled.
        tick = time.perf_counter()
        lowerings = {key: runner.lower for key, runner in runners.items()}
        try:
            compile_in_parallel(lowerings, args.jobs)
            print(
                f"   precompiled {len(runners)} generate functions in "
                f"{time.perf_counter() - tick:.1f} s",
                flush=True,
            )
        except Exception as error:  # generate() compiles them itself
            print(f"   precompiling failed ({error!r})", flush=True)
    for key, runner in runners.items():
        tick = time.perf_counter()
        outputs = runner()
        first[key] = time.perf_counter() - tick
    shape = tuple(outputs["decoder_token_ids"].shape)
    for runner in runners.values():
        runner(args.warmup)
    steps = max(1, args.steps // 4)
    times = _measure.per_call_times(runners, steps, args.repeats)
    measured = {}
    for name in models:
        total, prefill, per_token, rate = _measure.generation_rates(
            times[(name, new)], times[(name, 1)], batch, new
        )
        measured[name] = {
            "total_ms": 1e3 * total,
            "prefill_ms": 1e3 * prefill,
            "per_token_ms": 1e3 * per_token,
            "tokens_per_s": rate,
            "first_call_s": first[(name, new)],
        }
    base = measured["plain"]
    rows = []
    for name in models:
        m = measured[name]
        per_token = None
        if base["per_token_ms"] > 0:
            per_token = m["per_token_ms"] / base["per_token_ms"]
        rows.append(
            dict(
                m,
                model=type(models[name]).__name__,
                batch=batch,
                new_tokens=new,
                vs_plain=m["tokens_per_s"] / base["tokens_per_s"],
                prefill_vs_plain=m["prefill_ms"] / base["prefill_ms"],
                per_token_vs_plain=per_token,
            )
        )
    results["generate"] = rows
    print(
        f"   output decoder_token_ids {shape}; "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    table = [
        [
            f"{r['model']}, batch {batch}, {new} new",
            f"{r['tokens_per_s']:.0f}",
            f"{r['vs_plain']:.3f}",
            f"{r['prefill_ms']:.2f}",
            f"{r['prefill_vs_plain']:.3f}",
            f"{r['per_token_ms']:.3f}",
            f"{r['per_token_vs_plain']:.3f}"
            if r["per_token_vs_plain"]
            else "n/a",
            f"{r['first_call_s']:.1f}",
        ]
        for r in rows
    ]
    print(
        _measure.table(
            [
                "generate (greedy, no stop)",
                "tokens/s",
                "vs plain",
                "prefill ms",
                "vs plain",
                "ms/token",
                "vs plain",
                "1st call s",
            ],
            table,
        )
    )
    bound = (args.t5_input + args.prompt_length) / args.t5_input
    print(f"   prefill bound (encoder (L+P)/L): {bound:.3f}")


def summary_rows(results):
    rows = []
    for r in results.get("train", []):
        rows.append(
            [
                "train step time",
                r["config"],
                f"{r['prompt_ms']:.2f} ms",
                f"{r['full_ms']:.2f} ms",
                f"{r['ratio']:.3f}",
                f"{r['bound']:.3f}",
                f"<= {r['goal']}",
                "yes" if r["met"] else "no",
            ]
        )
    for r in results.get("memory", []):
        rows.append(
            [
                f"train peak memory ({r['source']})",
                r["config"],
                f"{_measure.mib(r['prompt']['peak']):.0f} MiB",
                f"{_measure.mib(r['full']['peak']):.0f} MiB",
                f"{r['ratio']:.3f}" if r["ratio"] else "n/a",
                f"XLA {r['xla_ratio']:.3f}" if "xla_ratio" in r else "",
                f"<= {r['goal']}",
                "yes" if r["met"] else "no",
            ]
        )
    for r in results.get("forward", []):
        rows.append(
            [
                f"forward, P = {r['prompt_length']}",
                r["config"],
                f"{r['prompted_ms']:.2f} ms",
                f"{r['plain_ms']:.2f} ms",
                f"{r['ratio']:.3f}",
                f"{r['bound']:.3f}",
                f"<= {GOAL_FORWARD} x bound",
                "yes" if r["met"] else "no",
            ]
        )
    for r in results.get("generate", []):
        if r["model"] == "T5Seq2SeqLM":
            continue
        rows.append(
            [
                "generate tokens/s",
                f"T5, batch {r['batch']}, {r['new_tokens']} new",
                f"{r['tokens_per_s']:.0f}/s",
                f"{r['tokens_per_s'] / r['vs_plain']:.0f}/s",
                f"{r['vs_plain']:.3f}",
                "",
                "",
                "",
            ]
        )
    return rows


SECTIONS = {
    "memory": memory_section,
    "train": train_section,
    "forward": forward_section,
    "generate": generate_section,
}
