"""Memory of K tasks as one prompt bank vs K fine-tuned copies.

Computed bytes (float32 weights) for the benchmark T5 (see
`serving_common.py`), a `t5_base`-shaped and a `t5_1.1_xxl`-shaped model:
one frozen backbone plus a bank of K prompts (allocated to the next power
of two of slots, as a growing `PromptBank` is) against K fine-tuned
copies of the model. Then measured (resident memory of this process) for
K = 4 on the benchmark T5: building a `PromptBank` of 4 tasks vs building
4 copies of the backbone.

    python benchmarks/serving_memory.py
"""

import gc

import serving_common as common
from trainable_fraction import CONFIGS
from trainable_fraction import t5_parameters

PROMPT_LENGTH = 100
MEASURED_TASKS = 4


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mib(count):
    return count / 2**20


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

    from keras_prompt.serving import PromptBank

    gc.collect()
    start = rss_bytes()
    backbone, preprocessor = common.build_t5()
    template = common.t5_task(backbone, preprocessor, seed=0)
    bank = PromptBank(template, capacity=MEASURED_TASKS)
    for i in range(MEASURED_TASKS):
        bank.add_task(
            f"task{i}", common.t5_task(backbone, preprocessor, seed=i)
        )
    bank.generate(common.texts(2), ["task0", "task1"])
    gc.collect()
    bank_bytes = rss_bytes() - start

    copies = []
    before = rss_bytes()
    for _ in range(MEASURED_TASKS):
        copies.append(keras_hub.models.T5Backbone(**common.CONFIG))
    gc.collect()
    copies_bytes = rss_bytes() - before
    parameters = backbone.count_params()
    print(
        f"\nmeasured (resident memory growth), K={MEASURED_TASKS}, benchmark "
        f"T5 ({parameters:,} parameters, {mib(4 * parameters):,.1f} MiB of "
        "float32 weights):"
    )
    print(
        f"  one bank of {MEASURED_TASKS} tasks (backbone, tokenizer, bank "
        f"model, one generation): {mib(bank_bytes):,.1f} MiB"
    )
    print(
        f"  {MEASURED_TASKS} backbone copies (weights only):"
        f"{' ' * 23}{mib(copies_bytes):,.1f} MiB"
    )
    print(f"  copies / bank: {copies_bytes / bank_bytes:.2f}")


def main():
    common.header("Memory: K tasks as one prompt bank vs K fine-tuned copies")
    computed()
    measured()


if __name__ == "__main__":
    main()
