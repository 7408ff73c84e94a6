"""Latency of the exported SavedModel vs the in-memory model.

A `PromptBank` of 4 tasks on a random T5 (see `serving_common.py`) is
exported with `export_saved_model` (generation batch 1 and 8) and
reloaded with `tf.saved_model.load`. Per request (raw strings and task
names in, strings out) the script times the in-memory `bank.generate`
(tokenisation in Python, generation in a `tf.function`) and the served
signature (tokenisation, generation and detokenisation in one graph), for
one input and for a batch of 8, and checks that all give the same strings.

    python benchmarks/serving_export_latency.py
"""

import os
import shutil
import tempfile

import serving_common as common

TASKS = 4
EXPORT_BATCHES = (1, 8)


def main():
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from keras_prompt import export_saved_model
    from keras_prompt.serving import PromptBank

    common.header("Exported SavedModel vs in-memory latency")
    backbone, preprocessor = common.build_t5()
    template = common.t5_task(backbone, preprocessor, seed=0)
    bank = PromptBank(template, capacity=TASKS)
    names = [f"task{i}" for i in range(TASKS)]
    for i, name in enumerate(names):
        bank.add_task(name, common.t5_task(backbone, preprocessor, seed=i))
    folder = tempfile.mkdtemp(prefix="keras_prompt_bench-")
    serving = {}
    for size in EXPORT_BATCHES:
        path = export_saved_model(
            bank, os.path.join(folder, f"b{size}", "1"), batch_size=size
        )
        served = tf.saved_model.load(path)
        serving[size] = (served, served.signatures["serving_default"])

    for batch in (1, max(EXPORT_BATCHES)):
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
        for size, (_, serve) in serving.items():
            if size >= batch:
                functions[f"SavedModel, batch_size={size}"] = exported(serve)
        same = all(fn() == in_memory() for fn in functions.values())
        times, best = common.interleaved(functions, repeats=7)
        print(
            f"\nrequest of {batch} input(s) (same strings: "
            f"{'yes' if same else 'NO'}), median / best:"
        )
        for name, seconds in times.items():
            ratio = seconds / times["in-memory"]
            best_ratio = best[name] / best["in-memory"]
            print(
                f"  {name:26s} {seconds * 1000:7.1f} / "
                f"{best[name] * 1000:7.1f} ms   x{ratio:.2f} / "
                f"x{best_ratio:.2f} of in-memory"
            )
    shutil.rmtree(folder, ignore_errors=True)
    print(
        "\nBoth stop at the end token. A SavedModel generates whole chunks "
        "of its batch_size, so a request smaller than that pays for the "
        "padding rows."
    )


if __name__ == "__main__":
    main()
