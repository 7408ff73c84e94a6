"""Size of a resumable-training checkpoint: prompt-sized, not model-sized.

`keras_prompt.PromptTrainingCheckpoint` (used by `keras-prompt tune
--checkpoint-every` and `Recipe.fit(checkpoint_every=...)`) saves the prompt,
the head, the optimizer's slots and the seed states; Keras'
`BackupAndRestore` saves every weight. Both measured in this run:

- all-MiniLM-L6-v2 (the real model of `keras-prompt tune`, P=20, mean head,
  Adam): a real checkpoint written by the callback, next to the file
  `model.save_weights` writes (what `BackupAndRestore` keeps).
- T5 1.1 XXL (11B; cannot be built here): the planner's parameter count
  times 4 bytes for `BackupAndRestore`, and for the prompt checkpoint the
  exact tensors of the paper's recipe (a (P, 4096) prompt and the
  `keras_prompt.optimizers.Adafactor` slots the recipe builds for it), for
  P = 20 and the paper's P = 100.

    python benchmarks/checkpoint_size.py
"""

import os
import tempfile

import numpy as np


def folder_bytes(folder):
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    )


def minilm():
    import keras

    import keras_prompt
    from keras_prompt.pretrained import minilm_preset_dir

    keras_prompt.set_random_seed(0)
    model = keras_prompt.PromptClassifier.from_preset(
        minilm_preset_dir(),
        num_classes=2,
        prompt_length=20,
        pooling="mean",
        sequence_length=32,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(["a gripping film", "dull"], [1, 0], verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        saver = keras_prompt.PromptTrainingCheckpoint(folder, save_freq=1)
        saver.set_model(model)
        checkpoint = folder_bytes(saver.save())
        weights = os.path.join(folder, "all.weights.h5")
        model.save_weights(weights)
        full = os.path.getsize(weights)
    return checkpoint, full, model.count_params()


def t5_xxl(prompt_length):
    import keras

    from keras_prompt.distribute.model_sizes import model_spec
    from keras_prompt.training import lester2021

    spec = model_spec("t5_1.1_xxl")
    prompt = keras.Variable(
        np.zeros((prompt_length, spec.hidden_dim), "float32"), name="prompt"
    )
    optimizer = lester2021().optimizer()
    optimizer.build([prompt])
    tensors = [prompt] + list(optimizer.variables)
    checkpoint = sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in tensors
    )
    return checkpoint, spec.num_parameters() * 4, spec.num_parameters()


def human(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:,.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1000
    return f"{size:,.1f} TB"


def main():
    rows = [("all-MiniLM-L6-v2, P=20, Adam (written)", *minilm())]
    for length in (20, 100):
        rows.append(
            (f"T5 1.1 XXL, P={length}, Adafactor (arithmetic)", *t5_xxl(length))
        )
    print(
        "| model | parameters | prompt checkpoint | BackupAndRestore "
        "(all weights) | ratio |"
    )
    print("|---|---|---|---|---|")
    for name, checkpoint, full, params in rows:
        print(
            f"| {name} | {params / 1e6:,.1f}M | {human(checkpoint)} | "
            f"{human(full)} | 1/{full / checkpoint:,.0f} |"
        )


if __name__ == "__main__":
    main()
