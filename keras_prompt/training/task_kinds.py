"""What training needs to know of each prompt task class.

A `TaskKind` holds, for one task class, how the recipe builds it for a data
task, the preprocessor lengths it loads, how a split is read in the form
the task trains and is scored on (`keras_prompt.training.splits`), the
`compile` arguments training adds, and the defaults of `keras-prompt tune`
that measured best for it. `task_kind(task_class)` looks a class (or its
nearest registered base class) up in `TASK_KINDS`; the task classes know
nothing of training.
"""

import dataclasses
from typing import Callable
from typing import Optional

from keras_prompt.tasks import PromptCausalLM
from keras_prompt.tasks import PromptClassifier
from keras_prompt.tasks import PromptSeq2SeqLM
from keras_prompt.tasks.prompt_classifier import POOLINGS
from keras_prompt.training import splits


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """The training facts of one prompt task class.

    Attributes:
        preprocessor_lengths: `fn(sequence_length, target_length)`, the
            `load_preprocessor` arguments for inputs of `sequence_length`
            tokens (the prompt comes on top) and targets of
            `target_length` tokens.
        build: `fn(task_class, backbone, preprocessor, data_task, recipe)`,
            the task the recipe trains on `data_task`, not yet compiled.
        examples: the `keras_prompt.training.splits` class a split is read
            with (`read_examples`).
        compile_kwargs: dict, `compile` arguments training adds.
        poolings: the pooling names the task takes (`Recipe.pooling`);
            empty for a task without a pooling head.
        tune_deep: bool, whether `keras-prompt tune` trains deep prompts
            unless told otherwise. The Python API's default is always the
            paper's input prompt (`deep=False`).
        tune_steps: int, the training steps of `keras-prompt tune` unless
            told otherwise (`--steps`).
        tune_pooling: optional str, the pooling of `keras-prompt tune`
            (`--pooling`) for a task with a pooling head.
        tune_schedule: str, the learning-rate schedule of `keras-prompt
            tune` (`--schedule`, `Recipe.schedule`).
        tune_frozen_dropout: optional float, the frozen model's dropout
            rate in `keras-prompt tune` (`--frozen-dropout`,
            `Recipe.frozen_dropout`); `None`: the checkpoint's.
    """

    preprocessor_lengths: Callable
    build: Callable
    examples: type
    compile_kwargs: dict = dataclasses.field(default_factory=dict)
    poolings: tuple = ()
    tune_deep: bool = False
    tune_steps: int = 300
    tune_pooling: Optional[str] = None
    tune_schedule: str = "constant"
    tune_frozen_dropout: Optional[float] = None

    def read_examples(self, data_task, split, data_dir=None, max_examples=None):
        """A split of `data_task` in the form the task trains and is scored
        on.

        Args:
            data_task: a `keras_prompt.data.TextToTextTask`.
            split: str, e.g. `"train"` or `"validation"`.
            data_dir: the TFDS data dir.
            max_examples: optional int, read only the first this many.
        """
        return self.examples.read(
            data_task, split, data_dir=data_dir, max_examples=max_examples
        )

    def check_pooling(self, task_class, pooling):
        """Raises a `ValueError` for a `pooling` the task does not take
        (`None` is the task's default)."""
        if pooling is None or pooling in self.poolings:
            return
        wanted = (
            f"one of {self.poolings}"
            if self.poolings
            else f"None: a {task_class.__name__} has no pooling head"
        )
        raise ValueError(
            f"`pooling` must be {wanted}. Received: pooling={pooling!r}"
        )


def _build_classifier(task_class, backbone, preprocessor, data_task, recipe):
    """A classifier with one class per label of `data_task` (a text
    classification task of `keras_prompt.data`)."""
    from keras_prompt.data.classification import classification_fields

    classification_fields(data_task)  # Raises for other tasks.
    pooling = {} if recipe.pooling is None else {"pooling": recipe.pooling}
    return task_class(
        backbone,
        num_classes=len(data_task.label_strings),
        preprocessor=preprocessor,
        compile=False,
        **pooling,
    )


def _build_seq2seq(task_class, backbone, preprocessor, data_task, recipe):
    """A text-to-text model for any `data_task`."""
    return task_class(backbone, preprocessor, compile=False)


def _build_causal(task_class, backbone, preprocessor, data_task, recipe):
    """A text-to-text model for any `data_task`: the input and the target
    in one sequence, the loss on the target tokens only."""
    return task_class(
        backbone,
        preprocessor,
        target_length=recipe.decoder_sequence_length,
        compile=False,
    )


CLASSIFIER = TaskKind(
    # A classifier reads `sequence_length` tokens; it has no targets.
    preprocessor_lengths=lambda sequence, target: {"sequence_length": sequence},
    build=_build_classifier,
    # The raw sentences and class indices, trained on as length-trimmed
    # token batches and scored on the argmax class.
    examples=splits.ClassificationExamples,
    # Training batches are cut to their longest example and change length:
    # XLA would recompile for each one.
    compile_kwargs={"jit_compile": False},
    poolings=POOLINGS,
    # all-MiniLM-L6-v2 on SST-2, `keras-prompt tune` defaults, seeds 0 / 1:
    # deep 0.8337 / 0.8406 against shallow 0.8188 / 0.8291 dev, at the same
    # time per step (benchmarks/minilm_sst2.py: 82.1 against 81.3).
    tune_deep=True,
    # The same, deep, seeds 0 / 1: 0.8475 / 0.8463 dev after 1,500 steps
    # against 0.8337 / 0.8406 after 300 (both before `fit` ran in training
    # mode); in training mode 0.8372 / 0.8349 after 1,500 against 0.8280
    # (seed 0) after 300. Then (bfloat16, seed 0): constant rate 1,500
    # steps 0.8475; a cosine decay over 2,000 steps 0.8509, and with the
    # frozen model's dropout off 0.8555 (about 11 minutes on 2 CPU cores,
    # within the 15 asked of the default; docs/performance.md).
    tune_steps=2000,
    tune_schedule="cosine",
    tune_frozen_dropout=0.0,
    # Mean pooling: +4 points on MiniLM/SST-2 (benchmarks/minilm_sst2.py).
    tune_pooling="mean",
)

SEQ2SEQ = TaskKind(
    # Inputs of `sequence_length` tokens, targets of `target_length`.
    preprocessor_lengths=lambda sequence, target: {
        "encoder_sequence_length": sequence,
        "decoder_sequence_length": target,
    },
    build=_build_seq2seq,
    # Text-to-text pairs, scored on generations.
    examples=splits.TextToTextExamples,
)

CAUSAL = TaskKind(
    # One sequence holds the input and the target (the prompt comes on
    # top).
    preprocessor_lengths=lambda sequence, target: {
        "sequence_length": sequence + target
    },
    build=_build_causal,
    examples=splits.TextToTextExamples,
    # `keras-prompt tune`'s defaults stay the input prompt with the paper's
    # Adafactor: on SmolLM2-135M / SST-2 (150 steps of 8, all 872 dev,
    # three seeds) 0.818 against 0.795 for additive deep prompts at Adam
    # 3e-3, which led in a benchmark's own loop (docs/performance.md).
)

#: The `TaskKind` of each task class the recipe trains.
TASK_KINDS = {
    PromptClassifier: CLASSIFIER,
    PromptSeq2SeqLM: SEQ2SEQ,
    PromptCausalLM: CAUSAL,
}


def find_task_kind(task_class):
    """The `TaskKind` of `task_class` (or of its nearest registered base
    class), or `None` when the recipe cannot train it."""
    for base in getattr(task_class, "__mro__", ()):
        if base in TASK_KINDS:
            return TASK_KINDS[base]
    return None


def task_kind(task_class):
    """The `TaskKind` of `task_class`; a `ValueError` when the recipe
    cannot train it."""
    kind = find_task_kind(task_class)
    if kind is None:
        name = getattr(task_class, "__name__", repr(task_class))
        raise ValueError(
            f"{name} cannot be built by the training recipe yet. "
            f"Received: task_class={name}"
        )
    return kind
