"""Memory of K tasks as one prompt bank vs K fine-tuned copies.

Computed bytes (float32 weights) for the benchmark T5 (see
`serving_common.py`), a `t5_base`-shaped and a `t5_1.1_xxl`-shaped model:
one frozen backbone plus a bank of K prompts (allocated to the next power
of two of slots, as a growing `PromptBank` is) against K fine-tuned
copies of the model. Then measured (resident memory of this process) on
the benchmark T5: a `PromptBank` with 4 tasks, 4 more tasks in it, and 4
copies of the backbone.

    python benchmarks/serving_memory.py
"""

import gc

import _measure
import serving_common as common
from _measure import mib
from trainable_fraction import CONFIGS
from trainable_fraction import t5_parameters

PROMPT_LENGTH = 100
MEASURED_TASKS = 4


def computed():
    configs = {"benchmark T5": common.CONFIG}
    configs.update(CONFIGS)
    print(
        f"\ncomputed, float32, prompt length {PROMPT_LENGTH}:\n"
        f"  {'model':<14} {'K':>4} {'bank (MiB)':>12} {'K copies (MiB)':>16} "
        f"{'copies / bank':>14}"
    )
    for name, config in configs.items():
        keys = (
            "vocabulary_size",
            "hidden_dim",
            "intermediate_dim",
            "num_layers",
            "num_heads",
            "key_value_dim",
            "use_gated_activation",
            "tie_embedding_weights",
        )
        backbone = 4 * t5_parameters(**{k: config[k] for k in keys})
        for tasks in (1, 8, 100):
            slots = 1 << max(tasks - 1, 1).bit_length()
            bank = backbone + 4 * slots * PROMPT_LENGTH * config["hidden_dim"]
            copies = tasks * backbone
            print(
                f"  {name:<14} {tasks:>4} {mib(bank):>12,.1f} "
                f"{mib(copies):>16,.1f} {copies / bank:>14.1f}"
            )


def measured():
    import keras_hub
    import numpy as np

    from keras_prompt.serving import PromptBank

    rng = np.random.default_rng(0)
    dim = common.CONFIG["hidden_dim"]

    def add_tasks(bank, first):
        for i in range(first, first + MEASURED_TASKS):
            prompt = rng.uniform(-0.5, 0.5, (common.PROMPT_LENGTH, dim))
            bank.add_task(f"task{i}", prompt)
        bank.generate(common.texts(2), [f"task{first}"] * 2)

    gc.collect()
    start = _measure.current_rss()
    backbone, preprocessor = common.build_t5()
    gc.collect()
    backbone_bytes = _measure.current_rss() - start
    template = common.t5_task(backbone, preprocessor, seed=0)
    bank = PromptBank(template, capacity=2 * MEASURED_TASKS)
    add_tasks(bank, 0)
    gc.collect()
    bank_bytes = _measure.current_rss() - start
    before = _measure.current_rss()
    add_tasks(bank, MEASURED_TASKS)  # within capacity
    gc.collect()
    more_bytes = _measure.current_rss() - before

    copies = []
    before = _measure.current_rss()
    for _ in range(MEASURED_TASKS):
        copies.append(keras_hub.models.T5Backbone(**common.CONFIG))
    gc.collect()
    copies_bytes = _measure.current_rss() - before
    parameters = backbone.count_params()
    k = MEASURED_TASKS
    print(
        f"\nmeasured (growth of resident memory), K={k}, benchmark T5 "
        f"({parameters:,} parameters, {mib(4 * parameters):,.1f} MiB of "
        "float32 weights):"
    )
    rows = (
        ("frozen backbone and tokenizer", backbone_bytes),
        (
            f"+ bank model, {k} tasks, traced generation (in all)",
            bank_bytes,
        ),
        (f"{k} more tasks in the same bank", more_bytes),
        (f"{k} backbone copies, weights only", copies_bytes),
    )
    for name, value in rows:
        print(f"  {name:52s} {mib(value):8,.1f} MiB")
    print(
        f"  {k} copies / bank of {k} tasks: {copies_bytes / bank_bytes:.2f} "
        "(the bank's figure includes one-time runtime costs: tracing, "
        "tokenizer)"
    )


def main():
    common.header("Memory: K tasks as one prompt bank vs K fine-tuned copies")
    computed()
    measured()


if __name__ == "__main__":
    main()
