"""Prompt tuning on an accelerator: train step, memory, forward, generation.

One script for a short session on a GPU (or TPU) with JAX and no
TensorFlow installed; it runs on any Keras backend (on TensorFlow and on
CPUs too, where `train_step_cost.py`, `prompt_inference_overhead.py` and
`generation_throughput.py` measure the same in more detail). Token-id
inputs only (no tokenizer), random weights, on whatever device the backend
sees (printed first). The models are `_models.py`'s (T5 1.1-small-shaped,
MiniLM-L6-shaped); the sections (`--sections`: memory, train, forward,
generate) are `_sections.py`'s, their runners `_backend.py`'s, the timer
`_measure.py`'s. `docs/performance.md` ("`accelerator_step_cost.py`")
describes the rows, the sections and the method.

Each section prints its elapsed time; after `--budget-s` seconds the
sections left are skipped. The results end in one table, and go as JSON to
`--json` after every section (a run cut short keeps what it had).

    KERAS_BACKEND=jax python benchmarks/accelerator_step_cost.py --quick
    KERAS_BACKEND=jax python benchmarks/accelerator_step_cost.py \\
        --json results.json
"""

import argparse
import importlib.util
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if "KERAS_BACKEND" not in os.environ and not importlib.util.find_spec(
    "tensorflow"
):
    os.environ["KERAS_BACKEND"] = "jax"  # Keras' default needs TensorFlow.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import _measure  # noqa: E402

_measure.setup_environment()

import _backend  # noqa: E402
import _sections  # noqa: E402

warnings.filterwarnings("ignore", message=".*does not support masking.*")

SECTIONS = ("memory", "train", "forward", "generate")
QUICK = dict(
    prompt_length=4,
    t5_batch=2,
    t5_large_batch=4,
    t5_input=16,
    t5_target=4,
    minilm_batch=2,
    minilm_large_batch=4,
    minilm_length=16,
    large_batch=False,
    steps=2,
    repeats=2,
    warmup=1,
    memory_steps=1,
    prompt_lengths="1,4",
    extended_lengths="4",
    new_tokens=4,
    generate_batch=2,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default="t5,minilm")
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--t5-batch", type=int, default=32)
    parser.add_argument("--t5-large-batch", type=int, default=128)
    parser.add_argument("--t5-input", type=int, default=128)
    parser.add_argument("--t5-target", type=int, default=8)
    parser.add_argument("--minilm-batch", type=int, default=32)
    parser.add_argument("--minilm-large-batch", type=int, default=256)
    parser.add_argument("--minilm-length", type=int, default=64)
    parser.add_argument(
        "--large-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the large-batch rows (forward runs at the largest)",
    )
    parser.add_argument("--steps", type=int, default=20, help="per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memory-steps", type=int, default=5)
    parser.add_argument(
        "--jobs", type=int, default=0, help="memory children at a time"
    )
    parser.add_argument("--prompt-lengths", default="1,20,100")
    parser.add_argument("--extended-lengths", default="20")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--generate-batch", type=int, default=32)
    parser.add_argument("--dtype-policy", default=None)
    parser.add_argument(
        "--matmul-precision",
        default=None,
        help="JAX default matmul precision (e.g. highest, tensorfloat32)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=270.0,
        help="start nothing new after this many seconds",
    )
    parser.add_argument(
        "--compile-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="JAX persistent compilation cache in a fresh temporary folder",
    )
    parser.add_argument("--json", default=None, help="write results here")
    parser.add_argument("--quick", action="store_true", help="tiny shapes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**QUICK)  # flags given explicitly still win
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s]
    args.models = [m.strip() for m in args.models.split(",") if m]
    args.prompt_lengths = [int(p) for p in args.prompt_lengths.split(",")]
    args.extended_lengths = [
        int(p) for p in args.extended_lengths.split(",") if p
    ]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.matmul_precision:  # before JAX is imported; children inherit it
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = args.matmul_precision
    if args.dtype_policy:
        import keras

        keras.config.set_dtype_policy(args.dtype_policy)
    if args.child:
        family, method, batch = args.child.split(":")
        result = _sections.measure_memory(args, family, method, int(batch))
        _measure.emit_result(result)
        return
    clock = _backend.Clock(args.budget_s)
    cache = _backend.setup_compile_cache(args)
    accelerator = _backend.on_accelerator()
    if not args.jobs:  # compiling is CPU work: about 4 cores each
        cpus = os.cpu_count() or 1
        args.jobs = min(4, max(1, cpus // 4)) if accelerator else 1
    results = {
        "device": _backend.device_description(),
        "accelerator": accelerator,
        "backend": _backend.backend(),
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "compile_cache": cache,
        "elapsed_s": {},
    }
    print(_measure.machine_line())
    print(results["device"])
    print(
        f"JAX compilation cache: {cache}; {args.jobs} compile jobs at a "
        f"time; budget {args.budget_s:.0f} s",
        flush=True,
    )
    for name in SECTIONS:
        if name not in args.sections:
            continue
        print()
        print(f"== {name}", flush=True)
        tick = time.perf_counter()
        try:
            _sections.SECTIONS[name](args, results, clock)
        except Exception as error:  # keep the other sections' results
            import traceback

            traceback.print_exc()
            results.setdefault("errors", {})[name] = repr(error)
        results["elapsed_s"][name] = time.perf_counter() - tick
        print(
            f"   [{name}: {results['elapsed_s'][name]:.1f} s; total "
            f"{clock.elapsed():.1f} s]",
            flush=True,
        )
        _backend.write_json(args, results)
    results["skipped"] = clock.skipped
    results["elapsed_s"]["total"] = clock.elapsed()
    print()
    print(f"== results ({results['device']})")
    print(
        _measure.table(
            [
                "measure",
                "config",
                "prompt",
                "full / plain",
                "ratio",
                "bound / XLA plan",
                "goal",
                "met",
            ],
            _sections.summary_rows(results),
        )
    )
    if clock.skipped:
        print(f"skipped (budget): {', '.join(clock.skipped)}")
    if results.get("errors"):
        print(f"errors: {results['errors']}")
    print(f"total {clock.elapsed():.1f} s")
    print(_measure.machine_line())
    _backend.write_json(args, results)


if __name__ == "__main__":
    main()
