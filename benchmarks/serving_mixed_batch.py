"""Throughput of a mixed-task batch vs a single-task batch of the same size.

One `PromptBank` of 8 tasks on a random T5 (see `serving_common.py`).
The same compiled functions run a batch whose examples all name one task
and a batch whose examples name all 8 tasks; the goal is a ratio of at
least 0.95. Reference: the plain single-prompt model (no bank, no gather)
on the same batch. Measured: the forward pass (teacher-forced logits, what
scoring and training cost) and greedy generation of 8 tokens.

    python benchmarks/serving_mixed_batch.py
"""

import numpy as np
import serving_common as common

BATCH = 32
TASKS = 8


def main():
    import tensorflow as tf

    common.header("Mixed-task vs single-task batch throughput")
    backbone, preprocessor = common.build_t5()
    names = [f"task{i}" for i in range(TASKS)]
    single, bank = common.bank(backbone, preprocessor, names)

    texts = common.texts(BATCH)
    x = preprocessor.generate_preprocess(texts)
    x = {k: tf.convert_to_tensor(v) for k, v in x.items()}
    one_task = tf.zeros([BATCH], tf.int32)
    mixed = tf.constant(np.arange(BATCH) % TASKS, tf.int32)

    forward_bank = tf.function(lambda x: bank.model(x, training=False))
    forward_single = tf.function(lambda x: single(x, training=False))
    generate_bank = bank.model.make_generate_function()
    generate_single = single.make_generate_function()

    def run(fn, inputs):
        return lambda: [t.numpy() for t in tf.nest.flatten(fn(inputs))]

    forward = common.interleaved(
        {
            "plain single-prompt model": run(forward_single, x),
            "bank, one task": run(forward_bank, dict(x, prompt_ids=one_task)),
            "bank, 8 tasks mixed": run(forward_bank, dict(x, prompt_ids=mixed)),
        },
        repeats=7,
    )

    def gen(fn, inputs):
        return run(lambda v: fn(v, stop_token_ids=None), inputs)

    generation = common.interleaved(
        {
            "plain single-prompt model": gen(generate_single, x),
            "bank, one task": gen(generate_bank, dict(x, prompt_ids=one_task)),
            "bank, 8 tasks mixed": gen(
                generate_bank, dict(x, prompt_ids=mixed)
            ),
        },
        repeats=5,
    )
    steps = common.DECODER_LENGTH
    for title, stats in (
        (f"forward pass, batch {BATCH}", forward),
        (f"generation of {steps} tokens, batch {BATCH}", generation),
    ):
        print(f"\n{title}:")
        common.report(stats, BATCH, "examples/s (median)")
        mixed = "bank, 8 tasks mixed"
        print(
            "  mixed / single-task throughput: "
            f"{common.ratios(stats, 'bank, one task', mixed)} (goal >= 0.95)"
        )
        print(
            "  mixed / plain single-prompt model: "
            f"{common.ratios(stats, 'plain single-prompt model', mixed)}"
        )


if __name__ == "__main__":
    main()
