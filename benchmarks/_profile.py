"""Per-op time of a compiled train step, from TensorFlow's own profiler.

`op_times(run, steps, model)` runs `run()` `steps` times under
`tf.profiler.experimental` and reads the trace it writes (an `XSpace`
protocol buffer, parsed with the proto class TensorFlow ships). Each op
the graph executor ran is one event named `"<op name>:<op type>"` on a
`tf_Compute` line of the host plane; its duration includes the intra-op
threads' work, so the sum over ops is the step's op time (it may exceed
the wall time when ops run concurrently, or fall short of it by the
executor's own overhead).

Ops are grouped by phase, from the first part of their name scope:
"forward" (the model's own scope), "backward" (`gradient_tape/`),
"optimizer" (the optimizer's scope) and "rest" (loss, metrics, the
step counter); and by kind: "matmul" (`MatMul`, `BatchMatMul`, `Einsum`
ops: what the FLOP bound counts), "dropout noise" (random-number ops)
and "other" (element-wise ops, layer norms, softmax, transposes,
gathers, reductions).
"""

import collections
import glob
import os
import tempfile
import time

PHASES = ("forward", "backward", "optimizer", "rest")
KINDS = ("matmul", "dropout noise", "other")
# Ops that only call or wrap other ops (their events contain the callee's).
CALL_OPS = (
    "PartitionedCall",
    "StatefulPartitionedCall",
    "While",
    "StatelessWhile",
    "If",
    "StatelessIf",
)


def _xspace(folder):
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(
        os.path.join(folder, "**", "*.xplane.pb"), recursive=True
    )
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return space


def _kind(op_type):
    if "MatMul" in op_type or "Einsum" in op_type:
        return "matmul"
    if "Random" in op_type:
        return "dropout noise"
    return "other"


def _phase(scope, model_scope, optimizer_scope):
    if scope == "gradient_tape":
        return "backward"
    if scope.startswith(model_scope):
        return "forward"
    if scope.startswith(optimizer_scope):
        return "optimizer"
    return "rest"


def op_times(run, steps, model):
    """`({(phase, kind): ms per step}, wall ms per step)` of `run()`."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        start = time.perf_counter()
        for _ in range(steps):
            run()
        wall = (time.perf_counter() - start) / steps * 1e3
        tf.profiler.experimental.stop()
        space = _xspace(folder)
    times = collections.Counter()
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                if "::" in name or ":" not in name:
                    continue  # the executor's own events
                op_name, op_type = name.rsplit(":", 1)
                if op_type in CALL_OPS:
                    continue
                phase = _phase(
                    op_name.split("/")[0], model.name, model.optimizer.name
                )
                times[phase, _kind(op_type)] += event.duration_ps / 1e9
    return {key: value / steps for key, value in times.items()}, wall
