"""Latency of the exported SavedModel vs the in-memory model.

A `PromptBank` of 4 tasks on a random T5 (see `serving_common.py`) is
exported with `export_saved_model` three times (generation batch 1;
batch 8; batch 8 with XLA) and reloaded with `tf.saved_model.load`. Per
request (raw strings and task names in, strings out) the script times the
in-memory `bank.generate` (tokenisation in Python, generation compiled
with XLA, its default on CPU) and the served signatures (tokenisation,
generation and detokenisation in one graph), for one input and for a
batch of 8, and checks that all give the same strings.

    python benchmarks/serving_export_latency.py
"""

import os
import shutil
import tempfile

import serving_common as common

TASKS = 4
# (generation batch size, XLA) of each export.
EXPORTS = ((1, False), (8, False), (8, True))


def main():
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from keras_prompt import export_saved_model

    common.header("Exported SavedModel vs in-memory latency")
    backbone, preprocessor = common.build_t5()
    names = [f"task{i}" for i in range(TASKS)]
    _, bank = common.bank(backbone, preprocessor, names)
    folder = tempfile.mkdtemp(prefix="keras_prompt_bench-")
    serving = {}
    for size, jit in EXPORTS:
        name = f"SavedModel, batch_size={size}" + (", XLA" if jit else "")
        path = export_saved_model(
            bank,
            os.path.join(folder, f"b{size}{'x' if jit else ''}", "1"),
            batch_size=size,
            jit_compile=jit,
        )
        loaded = tf.saved_model.load(path)
        serving[name] = (size, loaded, loaded.signatures["serving_default"])

    for batch in (1, 8):
        texts = common.texts(batch, seed=batch)
        tasks = [names[i % TASKS] for i in range(batch)]

        def in_memory():
            return bank.generate(texts, tasks)

        def exported(serve):
            def run():
                outputs = serve(
                    inputs=tf.constant(texts), tasks=tf.constant(tasks)
                )
                return [s.decode("utf-8") for s in outputs["outputs"].numpy()]

            return run

        functions = {"in-memory": in_memory}
        for name, (size, _, serve) in serving.items():
            if size >= batch:
                functions[name] = exported(serve)
        same = all(fn() == in_memory() for fn in functions.values())
        stats = common.interleaved(functions, repeats=7)
        print(
            f"\nrequest of {batch} input(s) (same strings: "
            f"{'yes' if same else 'NO'}):"
        )
        common.report(stats, batch, "inputs/s (median)")
        for name in functions:
            if name != "in-memory":
                latency = common.ratios(stats, name, "in-memory")
                print(f"  {name} / in-memory latency: {latency}")
    shutil.rmtree(folder, ignore_errors=True)
    print(
        "\nBoth stop at the end token. A SavedModel generates whole chunks "
        "of its batch_size, so a request smaller than that pays for the "
        "padding rows."
    )


if __name__ == "__main__":
    main()
