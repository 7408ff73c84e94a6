"""Prompt tuning on an accelerator: train step, memory, forward, generation.

One script for a short session on a GPU (or TPU) with JAX and no
TensorFlow installed; it runs on any Keras backend (on TensorFlow and on
CPUs too, where `train_step_cost.py`, `prompt_inference_overhead.py` and
`generation_throughput.py` measure the same in more detail). Token-id
inputs only (no tokenizer), random weights, on whatever device the backend
sees (printed first).

Models (`train_step_cost.py`'s):

- `t5`: keras-hub `T5Backbone` with the T5 1.1-small shape
  (`train_step_cost.T5_SMALL`: 8 layers, d_model 512, d_ff 1024, 6 heads,
  d_kv 64, gated GELU, untied, vocabulary 32128, dropout 0.1). Prompt
  tuning: `PromptSeq2SeqLM` with its `compile()` defaults (the paper's
  Adafactor); full fine-tuning: keras-hub's `T5Seq2SeqLM` on an identical
  backbone, Adam. Encoder input 128, target 8.
- `minilm`: `BertBackbone` with the all-MiniLM-L6-v2 shape (6 layers,
  hidden 384, 12 heads, intermediate 1536, vocabulary 30522, 512
  positions), random weights. Prompt tuning: `PromptClassifier` (prompt +
  head, its default Adam); full: the unfrozen backbone with the same head
  (dropout 0.1 and `ClassificationHead` on `[CLS]`), Adam. Length 64.

Rows: batch 32 for both and, with `--large-batch` (on by default), T5
batch 128 and MiniLM batch 256: at batch 32 these small models leave a GPU
latency-bound. Prompt length 20.

Sections (`--sections`, in this order):

1. `memory`: each (row, method) alone in a subprocess (JAX's peak cannot
   be reset): the device allocator's `bytes_in_use` before building and
   after building (weights + optimizer state: "held"), and
   `peak_bytes_in_use` after the warm-up and `--memory-steps` steps;
   "peak" is over the baseline before building. On JAX the child first
   compiles the step (`lower().compile()`, which `train_function` then
   reuses) for XLA's plan of it (`memory_analysis()`: arguments + outputs
   + temporaries - donated) and reads the peak right then too: autotuning
   allocates device memory, so a peak that the steps did not raise above
   the compiler's is marked `*`. `XLA_PYTHON_CLIENT_PREALLOCATE=false` is
   set when unset. Without device statistics (CPU) the RSS high-water mark
   of the steps over the baseline is reported instead, as
   `train_step_cost.py` does. Goal: prompt / full <= 0.6. The children run
   `--jobs` at a time (about one per 4 CPU cores, at most 4) and write
   their compiled steps into the JAX persistent compilation cache (a fresh
   folder per run), so `train` loads them instead of compiling 8 train
   steps one after another.
2. `train`: step time, prompt tuning vs full fine-tuning. Both models of a
   row live in this process; each runs Keras' own `train_function` from
   `make_train_function()` (what `fit` runs: on JAX the jitted
   `train_step` with the state donated and fed back each step, the model's
   variables moved into that state as `fit` does) on a fixed batch. After
   the first call (compile or cache load, timed on its own) and
   `--warmup` calls, `--repeats` rounds each time `--steps` steps of every
   model, the order alternating; each step waits for its loss on the host
   (`float(loss)`), so no step overlaps the next. Reported: the median ms
   per step and the median of the per-round ratios prompt / full, next to
   the FLOP bound (`_measure.prompt_train_bound`: no weight gradients, on a
   P-longer input; in brackets 2/3 (L+P)/L) and the goal (<= 0.75).
3. `forward`: the plain backbone vs `FrozenBackbone` with prompt lengths
   `--prompt-lengths` (1, 20, 100) around the *same* backbone object (same
   weights), `training=False`, at the row's largest batch. On JAX each is
   `jax.jit` of `model.stateless_call` with the weights as arguments (none
   folded in as constants), compiled ahead of time in parallel threads; on
   TensorFlow a `tf.function`. Also the plain backbone on P more real
   tokens for P in `--extended-lengths`. Ratios against (L+P)/L and the
   FLOP ratio; goal: within 5% of (L+P)/L.
4. `generate`: T5 only. `PromptSeq2SeqLM.generate` vs
   `T5Seq2SeqLM.generate` on the same backbone object with
   `preprocessor=None` (token-id dicts in and out, `stop_token_ids=None`:
   every row generates `--new-tokens` tokens), greedy. `generate()` itself
   is timed (keras-hub's generate function: on JAX `jax.jit` of
   `generate_step`, compiled ahead in parallel threads); runs of 1 and N
   new tokens split the prefill from the per-token time. On TensorFlow
   both run `generate_step` under XLA.

Each section prints its elapsed time; after `--budget-s` seconds the
sections left are skipped. The results end in one table, and go as JSON to
`--json` after every section (a run cut short keeps what it had).

    KERAS_BACKEND=jax python benchmarks/accelerator_step_cost.py --quick
    KERAS_BACKEND=jax python benchmarks/accelerator_step_cost.py \\
        --json results.json
"""

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
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

from train_step_cost import GOAL_MEMORY  # noqa: E402
from train_step_cost import GOAL_TIME  # noqa: E402
from train_step_cost import T5_SMALL  # noqa: E402
from train_step_cost import T5_TINY  # noqa: E402
from train_step_cost import compile_minilm  # noqa: E402
from train_step_cost import compile_t5  # noqa: E402

warnings.filterwarnings("ignore", message=".*does not support masking.*")

MINILM_CONFIG = dict(
    vocabulary_size=30522,
    num_layers=6,
    num_heads=12,
    hidden_dim=384,
    intermediate_dim=1536,
    max_sequence_length=512,
)
MINILM_TINY = dict(
    vocabulary_size=1000,
    num_layers=2,
    num_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    max_sequence_length=64,
)
GOAL_FORWARD = 1.05
METHODS = ("prompt", "full")
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


def backend():
    import keras

    return keras.backend.backend()


# -- models and batches ------------------------------------------------------
def t5_config(args):
    return T5_TINY if args.quick else T5_SMALL


def minilm_config(args):
    return MINILM_TINY if args.quick else MINILM_CONFIG


def t5_backbone(args):
    import keras_hub

    return keras_hub.models.T5Backbone(**t5_config(args))


def minilm_backbone(args):
    import keras_hub

    return keras_hub.models.BertBackbone(**minilm_config(args))


def build_t5(args, method):
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    backbone = t5_backbone(args)
    if method == "prompt":
        model = keras_prompt.PromptSeq2SeqLM(
            keras_prompt.FrozenBackbone(
                backbone, prompt_length=args.prompt_length
            ),
            preprocessor=None,
        )
    else:
        model = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=None)
    compile_t5(model, method, jit="auto")
    return model


def build_minilm(args, method):
    import keras

    import keras_prompt
    from keras_prompt.layers.classification_head import ClassificationHead

    keras_prompt.set_random_seed(0)
    backbone = minilm_backbone(args)
    if method == "prompt":
        model = keras_prompt.PromptClassifier(
            keras_prompt.FrozenBackbone(
                backbone, prompt_length=args.prompt_length
            ),
            num_classes=2,
            preprocessor=None,
        )
    else:
        # The same head as PromptClassifier's, on the unfrozen backbone.
        inputs = backbone.input
        hidden = backbone(inputs)["sequence_output"][:, 0, :]
        hidden = keras.layers.Dropout(0.1)(hidden)
        head = ClassificationHead(2, activation="softmax", name="logits")
        model = keras.Model(inputs, head(hidden))
    compile_minilm(model, method, jit="auto")
    return model


def t5_inputs(args, batch, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = t5_config(args)["vocabulary_size"]
    t = args.t5_target
    return {
        "encoder_token_ids": rng.integers(2, vocab, (batch, length), "int32"),
        "encoder_padding_mask": np.ones((batch, length), "bool"),
        "decoder_token_ids": rng.integers(2, vocab, (batch, t), "int32"),
        "decoder_padding_mask": np.ones((batch, t), "bool"),
    }


def t5_batch(args, batch):
    import numpy as np

    rng = np.random.default_rng(1)
    vocab = t5_config(args)["vocabulary_size"]
    y = rng.integers(2, vocab, (batch, args.t5_target), "int32")
    x = t5_inputs(args, batch, args.t5_input)
    return x, y, np.ones((batch, args.t5_target), "float32")


def minilm_inputs(args, batch, length, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = minilm_config(args)["vocabulary_size"]
    token_ids = rng.integers(min(1000, vocab // 2), vocab, (batch, length))
    token_ids = token_ids.astype("int32")
    token_ids[:, 0] = 101  # [CLS]
    token_ids[:, -1] = 102  # [SEP]
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": np.ones((batch, length), "bool"),
    }


def minilm_batch(args, batch):
    import numpy as np

    rng = np.random.default_rng(1)
    x = minilm_inputs(args, batch, args.minilm_length)
    return x, rng.integers(0, 2, (batch,)).astype("int32"), None


def t5_macs(args, prompt_length):
    return _measure.t5_forward_macs(
        t5_config(args), args.t5_input + prompt_length, args.t5_target
    )


def minilm_macs(args, prompt_length):
    return _measure.bert_forward_macs(
        minilm_config(args), args.minilm_length + prompt_length
    )


FAMILIES = {
    "t5": dict(
        build=build_t5,
        batch=t5_batch,
        backbone=t5_backbone,
        inputs=t5_inputs,
        macs=t5_macs,
        length=lambda args: args.t5_input,
    ),
    "minilm": dict(
        build=build_minilm,
        batch=minilm_batch,
        backbone=minilm_backbone,
        inputs=minilm_inputs,
        macs=minilm_macs,
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
    macs = FAMILIES[family]["macs"]
    length = FAMILIES[family]["length"](args)
    bound = _measure.prompt_train_bound(
        macs(args, 0), macs(args, args.prompt_length)
    )
    return bound, 2 / 3 * (length + args.prompt_length) / length


def count_weights(model):
    import math

    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    return int(trainable), int(sum(math.prod(v.shape) for v in model.weights))


# -- devices -----------------------------------------------------------------
def device_description():
    import keras

    name = backend()
    if name == "jax":
        import jax

        devices = jax.devices()
        first = devices[0]
        try:
            precision = jax.config.read("jax_default_matmul_precision")
        except Exception:  # an older or newer config API
            precision = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION")
        return (
            f"Keras {keras.__version__}, JAX {jax.__version__} "
            f"({first.platform}): {len(devices)} x {first.device_kind}, "
            f"matmul precision {precision or 'default'}"
        )
    if name == "tensorflow":
        import tensorflow as tf

        kinds = [d.device_type for d in tf.config.list_physical_devices()]
        return (
            f"Keras {keras.__version__}, TensorFlow {tf.__version__}: {kinds}"
        )
    return f"Keras {keras.__version__} on {name}"


def on_accelerator():
    name = backend()
    if name == "jax":
        import jax

        return jax.devices()[0].platform != "cpu"
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def device_memory():
    """`(bytes_in_use, peak_bytes_in_use, source)` of the first device.

    JAX: the device allocator's statistics; TensorFlow on a GPU:
    `tf.config.experimental.get_memory_info`; otherwise (CPU) the process'
    RSS and its high-water mark (`_measure`).
    """
    name = backend()
    if name == "jax":
        import jax

        stats = jax.local_devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            return stats["bytes_in_use"], stats["peak_bytes_in_use"], "device"
    if name == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            info = tf.config.experimental.get_memory_info("GPU:0")
            return info["current"], info["peak"], "device"
    return _measure.current_rss(), _measure.peak_rss(), "RSS"


def block(tree):
    """Waits until every array of `tree` is computed."""
    if backend() == "jax":
        import jax

        return jax.block_until_ready(tree)
    import keras

    for leaf in keras.tree.flatten(tree):
        keras.ops.convert_to_numpy(leaf)
    return tree


def to_device(tree):
    import keras

    if backend() == "jax":
        import jax.numpy as jnp

        convert = jnp.asarray
    else:
        convert = keras.ops.convert_to_tensor
    return keras.tree.map_structure(
        lambda x: None if x is None else convert(x), tree
    )


def jitted_in_closure(function):
    """The `jax.jit` function a Keras / keras-hub wrapper closes over."""
    for cell in getattr(function, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if hasattr(contents, "lower"):
            return contents
    return None


def compile_in_parallel(lowerings, workers):
    """Traces `lowerings` (key -> callable returning a JAX `Lowered`) one
    after another, then compiles them in `workers` threads (XLA compiles
    without Python's lock). Returns key -> `Compiled`."""
    from concurrent.futures import ThreadPoolExecutor

    lowered = {key: lower() for key, lower in lowerings.items()}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {
            key: pool.submit(low.compile) for key, low in lowered.items()
        }
        return {key: future.result() for key, future in futures.items()}


# -- train steps ---------------------------------------------------------------
class TrainRunner:
    """Keras' own train function of `model` on one fixed batch.

    On JAX, as `fit` does: the model's variables move into the state
    (`_get_jax_state(..., purge_model_variables=True)`), and the jitted,
    state-donating `train_function` returns the next state, which the next
    step gets. `finish()` writes the state back into the variables. Other
    backends: `_measure.train_step_runner` (the compiled `train_function`).
    Calling it runs `steps` steps, each waiting for its loss.
    """

    def __init__(self, model, data):
        self.model = model
        if backend() != "jax":
            self._run = _measure.train_step_runner(model, data)
            return
        self.data = to_device(data)
        model._symbolic_build(data_batch=self.data)
        model.make_train_function()
        self.state = model._get_jax_state(
            trainable_variables=True,
            non_trainable_variables=True,
            optimizer_variables=True,
            metrics_variables=True,
            purge_model_variables=True,
        )
        model._jax_state_synced = False
        self._run = self._jax_step

    def _jax_step(self):
        logs, self.state = self.model.train_function(
            self.state, iter([self.data])
        )
        return float(logs["loss"])  # waits for the step

    def __call__(self, steps=1):
        loss = None
        for _ in range(steps):
            loss = self._run()
        return loss

    def xla_memory(self):
        """XLA's memory plan of the compiled step (JAX only), or None."""
        jitted = None
        if backend() == "jax":
            jitted = jitted_in_closure(self.model.train_function)
        if jitted is None:
            return None
        analysis = jitted.lower(self.state, self.data).compile()
        analysis = analysis.memory_analysis()
        if analysis is None:
            return None
        sizes = {
            "arguments": analysis.argument_size_in_bytes,
            "outputs": analysis.output_size_in_bytes,
            "temporaries": analysis.temp_size_in_bytes,
            "aliased": analysis.alias_size_in_bytes,
        }
        sizes = {key: int(value) for key, value in sizes.items()}
        sizes["total"] = (
            sizes["arguments"]
            + sizes["outputs"]
            + sizes["temporaries"]
            - sizes["aliased"]
        )
        return sizes

    def finish(self):
        if backend() != "jax" or self.state is None:
            return
        names = (
            "trainable_variables",
            "non_trainable_variables",
            "optimizer_variables",
            "metrics_variables",
        )
        self.model._jax_state = dict(zip(names, self.state))
        self.model.jax_state_sync()
        self.state = None


def timed_rounds(runners, steps, repeats):
    """Per-round seconds per call of `runners`, timed in alternation.

    Each runner takes `steps` and makes that many blocking calls; every
    round times each runner once, the order rotated by one each round.
    """
    wall, _ = _measure.interleaved_times(
        {name: (lambda r=r: r(steps)) for name, r in runners.items()},
        repeats=repeats,
        warmup=0,
    )
    return {name: [t / steps for t in times] for name, times in wall.items()}


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
            times = timed_rounds(runners, args.steps, args.repeats)
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
    block(to_device([1.0]))  # start the runtime first
    baseline, _, source = device_memory()
    model = FAMILIES[family]["build"](args, method)
    trainable, total = count_weights(model)
    runner = TrainRunner(model, FAMILIES[family]["batch"](args, batch))
    held = device_memory()[0]
    tick = time.perf_counter()
    xla = None
    try:
        xla = runner.xla_memory()
    except Exception as error:  # informative only
        print(f"memory_analysis failed: {error!r}", flush=True)
    compile_peak = device_memory()[1]
    runner(max(args.warmup, 1))
    first_s = time.perf_counter() - tick
    if source == "RSS":  # the peak of the steps, not of the compiler
        _measure.reset_peak_rss()
    runner(args.memory_steps)
    current, peak, _ = device_memory()
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


def run_children(jobs, parallel, timeout):
    """Runs `jobs` (key -> argument list) `parallel` at a time.

    Returns key -> the child's result, or key -> {"error": output}.
    """
    pending, running, results = list(jobs.items()), {}, {}
    deadline = time.perf_counter() + timeout
    while pending or running:
        while pending and len(running) < parallel:
            key, arguments = pending.pop(0)
            running[key] = subprocess.Popen(
                [sys.executable, __file__] + arguments,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=dict(os.environ),
            )
        time.sleep(0.2)
        for key, process in list(running.items()):
            if process.poll() is None and time.perf_counter() < deadline:
                continue
            if process.poll() is None:
                process.kill()
            output = process.communicate()[0]
            del running[key]
            results[key] = {"error": output[-2000:]}
            for line in output.splitlines():
                if line.startswith(_measure.RESULT_PREFIX):
                    results[key] = json.loads(
                        line[len(_measure.RESULT_PREFIX) :]
                    )
            if "error" in results[key]:
                print(f"   child {key} failed:\n{output[-2000:]}", flush=True)
            else:
                print(
                    f"   {key}: compile + warm-up "
                    f"{results[key]['first_steps_s']:.1f} s",
                    flush=True,
                )
    return results


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
    outcome = run_children(jobs, args.jobs, timeout=max(clock.left(), 60.0))
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


# -- forward pass -------------------------------------------------------------
class ForwardRunner:
    """The jitted inference forward pass of `model` on `inputs`.

    JAX: `jax.jit` of `model.stateless_call(..., training=False)` with the
    weights as arguments; `lower()` gives its `Lowered` for ahead-of-time
    compilation (`compiled` is then used). TensorFlow: a `tf.function` of
    `model(inputs, training=False)`. Calling it runs `steps` passes, each
    waiting for all outputs.
    """

    def __init__(self, model, inputs):
        self.inputs = to_device(inputs)
        self.compiled = None
        if backend() == "jax":
            import jax

            self.arguments = (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                self.inputs,
            )

            def call(trainable, frozen, inputs):
                outputs, _ = model.stateless_call(
                    trainable, frozen, inputs, training=False
                )
                return outputs

            self.function = jax.jit(call)
        elif backend() == "tensorflow":
            import tensorflow as tf

            call = tf.function(lambda x: model(x, training=False))
            self.arguments = (self.inputs,)
            self.function = call
        else:
            self.arguments = (self.inputs,)
            self.function = lambda x: model(x, training=False)

    def lower(self):
        return self.function.lower(*self.arguments)

    def __call__(self, steps=1):
        function = self.function if self.compiled is None else self.compiled
        for _ in range(steps):
            block(function(*self.arguments))


def forward_section(args, results, clock):
    import keras_prompt
    from keras_prompt import FrozenBackbone

    if clock.over("forward"):
        return
    start = time.perf_counter()
    setups, runners = {}, {}
    for family in args.models:
        spec = FAMILIES[family]
        batch = batches(args, family)[-1]
        keras_prompt.set_random_seed(0)
        backbone = spec["backbone"](args)
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
    first = {}
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
    for key, runner in runners.items():
        tick = time.perf_counter()
        runner()
        first[key] = time.perf_counter() - tick
        runner(args.warmup)
    rows = []
    for family in args.models:
        spec = FAMILIES[family]
        batch, length = setups[family]
        family_runners = {k[1]: r for k, r in runners.items() if k[0] == family}
        times = timed_rounds(family_runners, args.steps, args.repeats)
        plain_ms = 1e3 * _measure.median(times["plain"])
        for p in args.prompt_lengths:
            ratio = _measure.paired_ratio(times[p], times["plain"])
            simple = (length + p) / length
            row = {
                "family": family,
                "config": f"{family_name(args, family)}, batch {batch}",
                "batch": batch,
                "prompt_length": p,
                "plain_ms": plain_ms,
                "prompted_ms": 1e3 * _measure.median(times[p]),
                "ratio": ratio,
                "bound": simple,
                "flop_ratio": _measure.forward_bound(
                    spec["macs"](args, 0), spec["macs"](args, p)
                ),
                "met": ratio <= GOAL_FORWARD * simple,
            }
            if f"plain+{p}" in times:
                extended = times[f"plain+{p}"]
                row["plain_extended_ms"] = 1e3 * _measure.median(extended)
                row["plain_extended_ratio"] = _measure.paired_ratio(
                    extended, times["plain"]
                )
                row["vs_plain_extended"] = _measure.paired_ratio(
                    times[p], extended
                )
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
    vocab = t5_config(args)["vocabulary_size"]
    return _measure.t5_generate_inputs(batch, args.t5_input, new_tokens, vocab)


class GenerateRunner:
    """`model.generate` on token ids (no preprocessor, no stop token).

    On TensorFlow both sides run `generate_step` under XLA (as
    `generation_throughput.py` does): Keras' "auto" would compile only the
    prompted task with XLA on a CPU.
    """

    def __init__(self, model, inputs):
        self.model = model
        if backend() == "tensorflow":
            import tensorflow as tf

            model.generate_function = tf.function(
                model.generate_step, jit_compile=True
            )
        self.inputs = to_device(inputs)

    def lower(self):
        """The `Lowered` of keras-hub's jitted generate function (JAX)."""
        jitted = jitted_in_closure(self.model.make_generate_function())
        if jitted is None:
            return None
        model = self.model
        state = (
            [v.value for v in model.sampler.variables],
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )
        return jitted.lower(self.inputs, None, state)

    def __call__(self, steps=1):
        outputs = None
        for _ in range(steps):
            outputs = self.model.generate(
                dict(self.inputs), stop_token_ids=None
            )
        return outputs


def generate_section(args, results, clock):
    if "t5" not in args.models or clock.over("generate"):
        return
    import keras_hub

    import keras_prompt

    start = time.perf_counter()
    keras_prompt.set_random_seed(0)
    backbone = t5_backbone(args)
    plain = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=None)
    prompt = keras_prompt.PromptSeq2SeqLM(
        keras_prompt.FrozenBackbone(backbone, prompt_length=args.prompt_length),
        preprocessor=None,
    )
    models = {"plain": plain, "prompt": prompt}
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
    times = timed_rounds(runners, steps, args.repeats)
    measured = {}
    for name in models:
        total = _measure.median(times[(name, new)])
        prefill = _measure.median(times[(name, 1)])
        measured[name] = {
            "total_ms": 1e3 * total,
            "prefill_ms": 1e3 * prefill,
            "per_token_ms": 1e3 * (total - prefill) / max(new - 1, 1),
            "tokens_per_s": batch * new / total,
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


# -- driver -------------------------------------------------------------------
class Clock:
    """Elapsed time, and the budget after which sections are skipped."""

    def __init__(self, budget):
        self.start = time.perf_counter()
        self.budget = budget
        self.skipped = []

    def elapsed(self):
        return time.perf_counter() - self.start

    def left(self):
        return self.budget - self.elapsed()

    def over(self, what):
        if self.left() > 0:
            return False
        print(f"   skipped {what}: over the {self.budget:.0f} s budget")
        self.skipped.append(what)
        return True


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


def write_json(args, results):
    if not args.json:
        return
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json + ".tmp", "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(args.json + ".tmp", args.json)


def setup_compile_cache(args):
    """The JAX persistent compilation cache, shared with the children
    (through the environment)."""
    if not args.compile_cache or backend() != "jax":
        return None
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="keras_prompt_jax_cache_")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
    import jax

    folder = os.environ["JAX_COMPILATION_CACHE_DIR"]
    for name, value in (
        ("jax_compilation_cache_dir", folder),
        ("jax_persistent_cache_min_compile_time_secs", 0),
        ("jax_persistent_cache_min_entry_size_bytes", -1),
    ):
        try:
            jax.config.update(name, value)
        except Exception as error:  # the run goes on without (some of) it
            print(f"JAX compilation cache: {name}: {error!r}")
            if name == "jax_compilation_cache_dir":
                return None
    return folder


def main(argv=None):
    args = parse_args(argv)
    if args.matmul_precision:  # before JAX is imported; children inherit it
        os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = args.matmul_precision
    if args.dtype_policy:
        import keras

        keras.config.set_dtype_policy(args.dtype_policy)
    if args.child:
        family, method, batch = args.child.split(":")
        _measure.emit_result(measure_memory(args, family, method, int(batch)))
        return
    clock = Clock(args.budget_s)
    cache = setup_compile_cache(args)
    accelerator = on_accelerator()
    if not args.jobs:  # compiling is CPU work: about 4 cores each
        cpus = os.cpu_count() or 1
        args.jobs = min(4, max(1, cpus // 4)) if accelerator else 1
    results = {
        "device": device_description(),
        "accelerator": accelerator,
        "backend": backend(),
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
    sections = {
        "memory": memory_section,
        "train": train_section,
        "forward": forward_section,
        "generate": generate_section,
    }
    for name in SECTIONS:
        if name not in args.sections:
            continue
        print()
        print(f"== {name}", flush=True)
        tick = time.perf_counter()
        try:
            sections[name](args, results, clock)
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
        write_json(args, results)
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
            summary_rows(results),
        )
    )
    if clock.skipped:
        print(f"skipped (budget): {', '.join(clock.skipped)}")
    if results.get("errors"):
        print(f"errors: {results['errors']}")
    print(f"total {clock.elapsed():.1f} s")
    print(_measure.machine_line())
    write_json(args, results)


if __name__ == "__main__":
    main()
