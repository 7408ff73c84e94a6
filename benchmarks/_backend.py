"""Backend-independent device helpers and runners for the benchmarks.

What `accelerator_step_cost.py` runs on any Keras backend (JAX on a GPU or
TPU, TensorFlow, CPUs): the device and its memory statistics, blocking on
results, ahead-of-time compilation of JAX functions in parallel threads,
and runners that call Keras' own train function, a jitted forward pass or
`generate()` a given number of times, each call waiting for its result.
The method is described in `docs/performance.md` ("Method").
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import _measure


def backend():
    import keras

    return keras.backend.backend()


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


def run_children(script, jobs, parallel, timeout):
    """Runs `python script` with `jobs` (key -> argument list), `parallel`
    at a time.

    Returns key -> the child's result, or key -> {"error": output}.
    """
    pending, running, results = list(jobs.items()), {}, {}
    deadline = time.perf_counter() + timeout
    while pending or running:
        while pending and len(running) < parallel:
            key, arguments = pending.pop(0)
            running[key] = subprocess.Popen(
                [sys.executable, script] + arguments,
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
            result = _measure.parse_result(output)
            results[key] = result or {"error": output[-2000:]}
            if "error" in results[key]:
                print(f"   child {key} failed:\n{output[-2000:]}", flush=True)
            else:
                print(
                    f"   {key}: compile + warm-up "
                    f"{results[key]['first_steps_s']:.1f} s",
                    flush=True,
                )
    return results


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
