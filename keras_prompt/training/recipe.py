"""The paper's training recipe in one call.

`lester2021()` returns a `Recipe` holding the settings of Prompt Tuning
(Lester, Al-Rfou and Constant, 2021, "The Power of Scale for
Parameter-Efficient Prompt Tuning", arXiv:2104.08691), section 3:

| setting           | paper                                | `Recipe` field   |
|-------------------|--------------------------------------|------------------|
| optimiser         | Adafactor                            | `optimizer()`    |
| learning rate     | 0.3, constant                        | `learning_rate`  |
| 2nd-moment decay  | 0.8                                  | `decay_rate`     |
| weight decay      | 1e-5                                 | `weight_decay_   |
|                   |                                      | rate`            |
| parameter scaling | off                                  | `multiply_by_    |
|                   |                                      | parameter_scale` |
| update clipping   | 1.0 (Adafactor's usual threshold)    | `clipping_       |
|                   |                                      | threshold`       |
| 2nd moment        | unfactored for a 100-token prompt    | `factored`       |
| prompt length     | 100 tokens                           | `prompt_length`  |
| initialisation    | class labels (sampled vocabulary for | `initializer`    |
|                   | the positions beyond the labels)     |                  |
| batch size        | 32                                   | `batch_size`     |
| training steps    | 30,000                               | `steps`          |
| model selection   | best dev-set checkpoint, on the      | `eval_split`,    |
|                   | task's metric (mean of its metrics   | `eval_interval`  |
|                   | when it has several)                 |                  |

Where this recipe departs from the paper, and why:

- **Evaluation interval.** The paper selects the best checkpoint on the
  development set but does not say how often it evaluated. The recipe
  decodes the dev set every `eval_interval=1000` steps (30 evaluations in
  30,000 steps); `steps` must be a multiple of it, since Keras epochs have
  a fixed length.
- **Only the best prompt is kept.** Selection writes the prompt file (a few
  kilobytes) when the dev score improves instead of keeping model
  checkpoints; with a frozen backbone the prompt is all that changes, so
  this selects the same model.
- **Early stopping is off by default.** In the paper "early stopping" means
  picking the best dev checkpoint of a full 30,000-step run, which is what
  `patience=None` does. `patience=N` additionally stops after `N`
  evaluations without improvement (saves time, may stop before a late
  improvement).
- **No packing; fixed lengths.** T5X input pipelines can pack several short
  examples into one 512-token row. keras-hub's preprocessor pads (or
  truncates) each example to `encoder_sequence_length=512` tokens instead,
  with the prompt's 100 positions on top, and targets to
  `decoder_sequence_length=128` (the paper gives no target length; 128
  holds every GLUE/SuperGLUE target). A batch is therefore always 32
  examples; short tasks spend compute on padding. These lengths apply
  when the recipe loads the preprocessor from a preset; a preprocessor
  passed to `build_model` keeps its own.
- **Factoring.** T5X's Adafactor factors a matrix's second moment only
  when both of its dimensions are at least 128, so a 100-token prompt is
  unfactored there as well. The recipe keeps every prompt unfactored
  (`factored=False`), also prompts of 128 tokens or more, whose exact
  statistics cost little memory.
- **Loss normalisation.** Keras averages the token cross-entropy over all
  `batch * decoder_sequence_length` target positions (padding counts as
  zero), a constant factor away from a sum or a per-token mean. Adafactor
  divides the gradient by its own running RMS, so a constant factor does
  not change the updates (apart from `epsilon1=1e-30`).
- **Span tasks.** Tasks without class labels (ReCoRD, WSC) fall back to
  sampled-vocabulary initialisation (5,000 most common tokens), the
  paper's next-best initialiser; the paper does not say what it used.
- **Decoding.** Dev predictions are decoded greedily and scored by exact
  match of the stripped text (`keras_prompt.data`'s T5-style metrics).
- **Dropout** stays as the checkpoint defines it (0.1 for T5 1.1 and the
  LM-adapted checkpoints), as in the paper: Keras applies a frozen
  layer's dropout during `fit`. It is not a recipe setting; tiny test
  models are built with dropout 0.
- **Numerics.** The paper trained with T5X on TPUs (where bfloat16 is
  usual); the recipe runs in the backbone's dtype (float32 for presets it
  loads; pass your own `backbone` for another dtype).
- **Checkpoint.** The paper's main results use T5 1.1 "LM-adapted"
  checkpoints; the recipe takes any keras-hub T5 preset or Hugging Face T5
  folder (`keras_prompt.convert` reads the LM-adapted ones).
- **Data.** Training examples are reshuffled on every pass over the train
  split and repeated for `steps` batches; the dev split is TFDS
  `"validation"` (MNLI: `"validation_matched"`). The dev score of the
  selected prompt is optimistic, since the same split picks it.
"""

import dataclasses
import json
import math
import numbers
import os
import time
import warnings
from typing import Any
from typing import Optional
from typing import Sequence

import keras
import numpy as np

from keras_prompt import initializers as prompt_initializers
from keras_prompt import optimizers
from keras_prompt.prompt_files import atomic_write_bytes
from keras_prompt.training.best_prompt_checkpoint import BestPromptCheckpoint
from keras_prompt.training.training_checkpoint import PromptTrainingCheckpoint

# The paper's Adafactor settings are `Adafactor`'s defaults: written there.
_PAPER = optimizers.paper_adafactor_settings()
_OPTIMIZER_NAMES = ("auto",) + optimizers.NAMES
PROMPT_FILE = "best.prompt.safetensors"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
_INITIALIZER_NAMES = ("class_label", "sampled_vocab", "random_uniform")


def _check_int(name, value, minimum=1, allow_none=False):
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        extra = "None or " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {extra}an int >= {minimum}. "
            f"Received: {name}={value!r}"
        )


def _check_float(name, value, minimum=0.0, allow_none=False):
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < minimum
    ):
        extra = "None or " if allow_none else ""
        raise ValueError(
            f"`{name}` must be {extra}a finite number >= {minimum}. "
            f"Received: {name}={value!r}"
        )


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


@dataclasses.dataclass
class RecipeResult:
    """What `Recipe.fit` returns.

    Attributes:
        history: the `keras.callbacks.History` of `model.fit`.
        best_value: float, the best dev score (`monitor`), or `None` when
            no evaluation ran.
        best_metrics: dict, every dev metric at the best evaluation.
        best_step: int, the optimiser step of the best evaluation.
        prompt_path: str, the prompt file of the best evaluation.
        monitor: str, the name of the selection score (`"val_score"`).
        steps: int, optimiser steps trained.
        stopped_early: bool, whether `patience` ended training.
        train_seconds: float, wall time of `fit` minus evaluation time.
        eval_seconds: float, wall time spent evaluating.
        evaluations: list of dicts, one per evaluation.
    """

    history: Any
    best_value: Optional[float]
    best_metrics: dict
    best_step: Optional[int]
    prompt_path: str
    monitor: str
    steps: int
    stopped_early: bool
    train_seconds: float
    eval_seconds: float
    evaluations: list

    def task_history(self):
        """`[{"step": ..., **task metrics}, ...]`, one per evaluation, the
        metrics named as the task names them (see `task_metrics`)."""
        return [
            {"step": record["step"], **task_metrics(record)}
            for record in self.evaluations
        ]


def task_metrics(record):
    """The task's metrics in an evaluation record or epoch logs of
    `Recipe.fit`: the `"val_"` metrics, unprefixed, without the selection
    score `"val_score"` the recipe adds."""
    return {
        key[len("val_") :]: value
        for key, value in record.items()
        if key.startswith("val_") and key != "val_score"
    }


@dataclasses.dataclass
class Recipe:
    """Prompt-tuning settings, with the paper's values as defaults.

    Build one with `keras_prompt.training.lester2021(...)`; see the module
    docstring for the paper's numbers and every place the recipe departs
    from them. A recipe is plain data: `replace(**changes)` returns a
    modified copy, `to_dict()` a JSON-able summary.

    Args:
        task: str or `keras_prompt.data.TextToTextTask`, e.g.
            `"glue/sst2"`: the training data, the dev metric and the class
            labels. May be `None` when `fit` gets `train_data` and
            `validation_data` (or `evaluate_fn`).
        prompt_length: int, prompt vectors. Paper: 100.
        deep: bool, deep prompts (a prompt at every layer, P-Tuning v2;
            see `FrozenBackbone`). Paper: `False`.
        initializer: `"class_label"` (paper; the task's `label_strings`
            or `labels`, sampled vocabulary when there are none),
            `"sampled_vocab"`, `"random_uniform"`, or a prompt initialiser
            instance.
        labels: optional list of label strings for class-label
            initialisation instead of the task's `label_strings`.
        optimizer_name: `"adafactor"` (paper), `"adam"`, or `"auto"`: the
            model's `compile()` default (`default_optimizer_name`: Adam for
            a `PromptClassifier`, Adafactor for text-to-text models).
        learning_rate: float, the optimiser's constant step size, or
            `None` for the optimiser's default. Paper: 0.3.
        decay_rate: float, Adafactor's second-moment decay exponent. The
            Adafactor settings apply when the optimiser is Adafactor.
            Paper: 0.8.
        weight_decay_rate: float, decoupled weight decay. Paper: 1e-5.
        clipping_threshold: float, Adafactor update clipping. Paper: 1.0.
        multiply_by_parameter_scale: bool. Paper: `False`.
        factored: bool, factored second moments. `False`: the prompt's
            second moment is kept in full (it is small).
        batch_size: int, training examples per step. Paper: 32.
        steps: int, optimiser steps. Paper: 30,000.
        eval_interval: int, steps between dev evaluations (a Keras epoch).
            Not in the paper; 1,000.
        eval_split: str, the split that selects the prompt. `"validation"`.
        eval_batch_size: optional int, inputs per `generate` call when
            evaluating; defaults to `batch_size`.
        patience: optional int: stop after this many evaluations without
            improvement. `None` (paper): train all `steps`.
        encoder_sequence_length: int, input tokens (the prompt comes on
            top), when the preprocessor is loaded from a preset. 512.
        decoder_sequence_length: int, target tokens, likewise (tasks that
            generate them). 128.
        sampled_vocab_top_k: int, sampled-vocabulary initialisation draws
            from this many most common tokens. Paper: 5,000.
        seed: optional int, seeds the initialiser and the data shuffling.

    Example:

    ```python
    recipe = keras_prompt.training.lester2021(task="glue/sst2")
    model = recipe.build_model("t5_1.1_small")
    result = recipe.fit(model, data_dir="../shared/tfds",
                        output_dir="runs/sst2")
    result.best_value, result.prompt_path
    ```
    """

    task: Any = None
    prompt_length: int = 100
    deep: bool = False
    initializer: Any = "class_label"
    labels: Optional[Sequence[str]] = None
    optimizer_name: str = "adafactor"
    learning_rate: Optional[float] = _PAPER["learning_rate"]
    decay_rate: float = _PAPER["decay_rate"]
    weight_decay_rate: float = _PAPER["weight_decay_rate"]
    clipping_threshold: float = _PAPER["clipping_threshold"]
    multiply_by_parameter_scale: bool = _PAPER["multiply_by_parameter_scale"]
    factored: bool = _PAPER["factored"]
    batch_size: int = 32
    steps: int = 30_000
    eval_interval: int = 1_000
    eval_split: str = "validation"
    eval_batch_size: Optional[int] = None
    patience: Optional[int] = None
    encoder_sequence_length: int = 512
    decoder_sequence_length: int = 128
    sampled_vocab_top_k: int = 5_000
    seed: Optional[int] = 0

    def __post_init__(self):
        if self.task is not None:
            from keras_prompt.data import get_task

            self.task = get_task(self.task)
        for name in (
            "prompt_length",
            "batch_size",
            "steps",
            "eval_interval",
            "encoder_sequence_length",
            "decoder_sequence_length",
            "sampled_vocab_top_k",
        ):
            _check_int(name, getattr(self, name))
        _check_int("eval_batch_size", self.eval_batch_size, allow_none=True)
        _check_int("patience", self.patience, allow_none=True)
        _check_int("seed", self.seed, minimum=0, allow_none=True)
        _check_float("learning_rate", self.learning_rate, allow_none=True)
        if self.optimizer_name not in _OPTIMIZER_NAMES:
            raise ValueError(
                f"`optimizer_name` must be one of {_OPTIMIZER_NAMES}. "
                f"Received: optimizer_name={self.optimizer_name!r}"
            )
        _check_float("decay_rate", self.decay_rate)
        _check_float("weight_decay_rate", self.weight_decay_rate)
        _check_float(
            "clipping_threshold", self.clipping_threshold, allow_none=True
        )
        for name in ("multiply_by_parameter_scale", "factored", "deep"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"`{name}` must be a bool. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if self.steps % self.eval_interval:
            raise ValueError(
                "`steps` must be a multiple of `eval_interval` (each "
                "evaluation ends a Keras epoch of `eval_interval` steps). "
                f"Received: steps={self.steps}, "
                f"eval_interval={self.eval_interval}"
            )
        if not isinstance(self.eval_split, str) or not self.eval_split:
            raise ValueError(
                "`eval_split` must be a split name. "
                f"Received: eval_split={self.eval_split!r}"
            )
        if isinstance(self.initializer, str):
            if self.initializer not in _INITIALIZER_NAMES:
                raise ValueError(
                    f"`initializer` must be one of {_INITIALIZER_NAMES} or "
                    "an initialiser instance. "
                    f"Received: initializer={self.initializer!r}"
                )
        elif not callable(self.initializer):
            raise TypeError(
                "`initializer` must be a name or an initialiser instance. "
                f"Received: initializer={self.initializer!r}"
            )
        if self.labels is not None:
            if isinstance(self.labels, str) or not all(
                isinstance(label, str) for label in self.labels
            ):
                raise TypeError(
                    "`labels` must be a list of strings. "
                    f"Received: labels={self.labels!r}"
                )
            self.labels = tuple(self.labels)
            if not self.labels:
                raise ValueError("`labels` must not be empty. Received: []")

    # -- settings -----------------------------------------------------------
    def replace(self, **changes):
        """A copy of this recipe with some fields changed."""
        _check_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The settings as a JSON-able dict (the task by name)."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "task" and value is not None:
                value = value.name
            elif field.name == "initializer" and not isinstance(value, str):
                value = type(value).__name__
            elif isinstance(value, tuple):
                value = list(value)
            values[field.name] = value
        return values

    @property
    def label_strings(self):
        """The labels of class-label initialisation, or `None`."""
        if self.labels is not None:
            return self.labels
        if self.task is not None and self.task.label_strings:
            return tuple(self.task.label_strings)
        return None

    def optimizer_settings(self, model=None):
        """`(name, learning_rate)` of the optimiser for `model`: the
        `"auto"` name resolved from the model's `default_optimizer_name`,
        a `None` learning rate from the optimiser's default."""
        name = self.optimizer_name
        if name == "auto":
            if model is None:
                raise ValueError(
                    "`optimizer_name='auto'` picks the model's default "
                    "optimiser; pass the model. Received: model=None"
                )
            name = model.default_optimizer_name
        rate = self.learning_rate
        if rate is None:
            rate = optimizers.default_learning_rate(name)
        return name, rate

    def optimizer(self, model=None):
        """A new optimiser with these settings: by default the paper's
        `keras_prompt.optimizers.Adafactor`.

        Args:
            model: the task to train; needed with `optimizer_name="auto"`.
        """
        name, rate = self.optimizer_settings(model)
        if name != "adafactor":
            return optimizers.get(name, rate)
        return optimizers.Adafactor(
            learning_rate=rate,
            decay_rate=self.decay_rate,
            beta1=None,
            clipping_threshold=self.clipping_threshold,
            multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            factored=self.factored,
            weight_decay_rate=self.weight_decay_rate,
        )

    def make_initializer(self, tokenizer=None):
        """The prompt initialiser, unbound (`FrozenBackbone` binds it).

        Args:
            tokenizer: the model's tokenizer; needed for class-label
                initialisation when there are labels.
        """
        init = self.initializer
        if not isinstance(init, str):
            return init
        if init == "random_uniform":
            return prompt_initializers.RandomUniform(seed=self.seed)
        labels = self.label_strings
        if init == "sampled_vocab" or labels is None:
            return prompt_initializers.SampledVocab(
                top_k=self.sampled_vocab_top_k, seed=self.seed
            )
        if tokenizer is None:
            raise ValueError(
                "Class-label initialisation needs the model's tokenizer. "
                "Received: tokenizer=None"
            )
        return prompt_initializers.ClassLabel(
            labels=list(labels),
            tokenizer=tokenizer,
            top_k=self.sampled_vocab_top_k,
            seed=self.seed,
        )

    # -- model --------------------------------------------------------------
    def compile(self, model, **kwargs):
        """Compiles `model` with the recipe's optimiser (text-to-text
        models: greedy decoding), and the task's `train_compile_kwargs`.

        Args:
            model: a keras_prompt task.
            **kwargs: further `compile` arguments (e.g. `jit_compile`).
        """
        kwargs = {**getattr(model, "train_compile_kwargs", {}), **kwargs}
        model.compile(optimizer=self.optimizer(model), **kwargs)
        return model

    def build_model(
        self,
        preset=None,
        *,
        backbone=None,
        preprocessor=None,
        task_options=None,
        **kwargs,
    ):
        """The prompt task for this recipe's prompt, compiled.

        The task class follows the backbone (`keras_prompt.tasks.
        task_class_for`): a `PromptSeq2SeqLM` on T5, a `PromptClassifier`
        (one class per label of the recipe's `task`) on BERT, RoBERTa and
        DistilBERT. Give a `preset` (keras-hub preset or Hugging Face
        folder), or a keras-hub backbone and its preprocessor, or both a
        backbone already loaded from `preset` and the `preset` (its
        preprocessor is loaded).

        Args:
            preset: str, the pretrained model to load.
            backbone: a keras-hub backbone (not yet wrapped).
            preprocessor: the task's preprocessor (e.g. a
                `T5Seq2SeqLMPreprocessor`); needed with `backbone` alone,
                optional with `preset` (it is then used as is, with its own
                sequence lengths).
            task_options: optional dict of task settings, e.g.
                `{"pooling": "mean"}` for a classifier's head (settings of
                other task kinds are ignored).
            **kwargs: passed to `compile` (e.g. `jit_compile=False`).

        Returns:
            A compiled keras_prompt task.
        """
        from keras_prompt.convert.presets import load_backbone
        from keras_prompt.convert.presets import load_preprocessor
        from keras_prompt.frozen_backbone import FrozenBackbone
        from keras_prompt.tasks import task_class_for

        if preset is None and backbone is None:
            raise ValueError(
                "Pass exactly one of `preset` and `backbone` (or both, a "
                "backbone loaded from `preset`). Received: preset=None, "
                "backbone=None"
            )
        if isinstance(backbone, FrozenBackbone):
            raise TypeError(
                "`backbone` is already a FrozenBackbone; pass the plain "
                "keras-hub backbone so the recipe can add its prompt. "
                "Received: backbone=FrozenBackbone"
            )
        if preset is None and preprocessor is None:
            raise ValueError(
                "`preprocessor` is needed with `backbone` (its tokenizer "
                "reads the text and the class labels). "
                "Received: preprocessor=None"
            )
        if backbone is None:
            backbone = load_backbone(preset)
        task_class = task_class_for(backbone)
        if not task_class.trains_with_recipe:
            raise ValueError(
                f"The recipe cannot train a {task_class.__name__} yet "
                f"({type(backbone).__name__}). Received: "
                f"backbone={type(backbone).__name__}"
            )
        if preprocessor is None:
            preprocessor = load_preprocessor(
                preset,
                task_class.preprocessor_cls,
                **task_class.preprocessor_lengths(
                    self.encoder_sequence_length, self.decoder_sequence_length
                ),
            )
        wrapped = FrozenBackbone(
            backbone,
            prompt_length=self.prompt_length,
            initializer=self.make_initializer(preprocessor.tokenizer),
            deep=self.deep,
        )
        options = {"target_length": self.decoder_sequence_length}
        options.update(task_options or {})
        model = task_class.from_recipe(
            wrapped, preprocessor, self.task, **options
        )
        return self.compile(model, **kwargs)

    def examples(self, model, split, data_dir=None, max_examples=None):
        """A split of the recipe's task in the form `model` trains and is
        scored on (`model.read_examples`): text-to-text pairs, or sentences
        and class indices for a classifier.

        Args:
            model: a keras_prompt task.
            split: str, e.g. `"train"` or `"validation"`.
            data_dir: the TFDS data dir.
            max_examples: optional int, read only the first this many.
        """
        if self.task is None:
            raise ValueError(
                "The recipe has no `task` to read. Received: task=None"
            )
        _check_int("max_examples", max_examples, allow_none=True)
        return model.read_examples(
            self.task, split, data_dir=data_dir, max_examples=max_examples
        )

    # -- data ---------------------------------------------------------------
    def train_dataset(self, data_dir=None, train_data=None, max_examples=None):
        """The endless, shuffled, batched training stream.

        Args:
            data_dir: the TFDS data dir of the task's `"train"` split.
            train_data: instead of the task's split: a `(inputs, targets)`
                pair of string lists, or a `tf.data.Dataset` of
                `(input, target)` string pairs (batched or not).
            max_examples: optional int, read only the first this many
                training examples (TFDS order).

        Returns:
            A `tf.data.Dataset` of `(inputs, targets)` batches of
            `batch_size` strings, repeated forever.
        """
        import tensorflow as tf

        _check_int("max_examples", max_examples, allow_none=True)
        if train_data is None:
            if self.task is None:
                raise ValueError(
                    "The recipe has no `task`; pass `train_data`. "
                    "Received: task=None, train_data=None"
                )
            from keras_prompt.data import load_text_to_text

            dataset = load_text_to_text(
                self.task,
                "train",
                data_dir=data_dir,
                shuffle=True,
                seed=self.seed,
                max_examples=max_examples,
            )
        elif isinstance(train_data, tf.data.Dataset):
            dataset = _pairs_dataset(train_data)
            if max_examples is not None:
                dataset = dataset.take(max_examples)
            dataset = dataset.shuffle(
                10_000, seed=self.seed, reshuffle_each_iteration=True
            )
        else:
            inputs, targets = _string_pairs(train_data, "train_data")
            if max_examples is not None:
                inputs, targets = inputs[:max_examples], targets[:max_examples]
            dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
            dataset = dataset.shuffle(
                len(inputs), seed=self.seed, reshuffle_each_iteration=True
            )
        dataset = dataset.repeat().batch(self.batch_size, drop_remainder=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def evaluation_fn(
        self,
        data_dir=None,
        validation_data=None,
        evaluate_fn=None,
        max_examples=None,
    ):
        """The dev evaluation: `fn(model) -> {"val_<metric>": ...}`.

        The returned dict holds each metric prefixed `"val_"` and
        `"val_score"`, the selection score: the metric, or the mean of the
        metrics when there are several (the paper's stopping metric).

        The task's `eval_split` is read once, on the first evaluation, in
        the model's form (`examples`) and scored by its `score`: the task's
        metrics of the generations, or of a classifier's argmax classes.

        Args:
            data_dir: the TFDS data dir of the task's `eval_split`.
            validation_data: instead of the task's split: a
                `(inputs, targets)` pair of string lists, scored by exact
                match (`"accuracy"`) of the stripped generations, or
                examples from `examples`.
            evaluate_fn: instead of both: `evaluate_fn(model)` returning a
                float or a dict of metrics.
            max_examples: optional int, evaluate only the first this many
                dev examples (TFDS order).
        """
        _check_int("max_examples", max_examples, allow_none=True)
        batch_size = self.eval_batch_size or self.batch_size
        if evaluate_fn is not None:
            if not callable(evaluate_fn):
                raise TypeError(
                    "`evaluate_fn` must be callable. "
                    f"Received: evaluate_fn={evaluate_fn!r}"
                )
            scorer = evaluate_fn
        elif _is_examples(validation_data):

            def scorer(model):
                return validation_data.score(model, batch_size)

        elif validation_data is not None:
            inputs, targets = _string_pairs(validation_data, "validation_data")
            if max_examples is not None:
                inputs, targets = inputs[:max_examples], targets[:max_examples]

            def scorer(model):
                return {
                    "accuracy": exact_match_accuracy(
                        model, inputs, targets, batch_size
                    )
                }

        elif self.task is not None:
            read = []

            def scorer(model):
                if not read:
                    read.append(
                        self.examples(
                            model, self.eval_split, data_dir, max_examples
                        )
                    )
                    if not len(read[0]):
                        raise ValueError(
                            f"Task {self.task.name!r}: split "
                            f"{self.eval_split!r} has no examples to "
                            "evaluate."
                        )
                return read[0].score(model, batch_size)

        else:
            raise ValueError(
                "The recipe has no `task`; pass `validation_data` or "
                "`evaluate_fn`. Received: task=None"
            )

        def evaluate(model):
            result = scorer(model)
            if not isinstance(result, dict):
                result = {"score": result}
            metrics = {f"val_{k}": float(v) for k, v in result.items()}
            if "val_score" not in metrics:
                metrics["val_score"] = float(np.mean(list(metrics.values())))
            return metrics

        return evaluate

    # -- training -----------------------------------------------------------
    def fit(
        self,
        model,
        output_dir,
        data_dir=None,
        *,
        train_data=None,
        validation_data=None,
        evaluate_fn=None,
        max_train_examples=None,
        max_eval_examples=None,
        callbacks=None,
        verbose="auto",
        restore_best=True,
        eval_interval=None,
        print_evaluations=None,
        checkpoint_every=None,
        resume=False,
        run_config=None,
    ):
        """Trains the prompt and keeps the best one on the dev split.

        Trains `model` (compiled with its own optimiser: `build_model`
        compiles with the recipe's; an uncompiled model is compiled here)
        for `steps` steps of `batch_size` examples, evaluating every
        `eval_interval` steps. The prompt of the best evaluation is written
        to `output_dir/best.prompt.safetensors` (only when the score
        improves) and loaded back into `model` at the end. A summary
        (settings, every evaluation, the best metrics) goes to
        `output_dir/results.json`.

        The task's `"train"` split is read in the model's form (`examples`)
        and drawn in reshuffled passes; a classifier trains on
        length-trimmed token batches (`keras_prompt.data.batching`).

        Args:
            model: a keras_prompt task, e.g. from `build_model`.
            output_dir: str, folder for the prompt file and the results
                (created if missing).
            data_dir: the TFDS data dir, e.g. `"../shared/tfds"`.
            train_data: optional training pairs instead of the task's
                `"train"` split (see `train_dataset`), or examples from
                `examples`.
            validation_data: optional `(inputs, targets)` dev pairs instead
                of the task's `eval_split` (see `evaluation_fn`).
            evaluate_fn: optional `evaluate_fn(model)` instead of both.
            max_train_examples: optional int, train on the first this many
                training examples only.
            max_eval_examples: optional int, evaluate on the first this
                many dev examples only.
            callbacks: optional further Keras callbacks.
            verbose: passed to `model.fit`; also prints evaluations when
                truthy and not `"auto"`.
            restore_best: bool, load the best prompt back at the end;
                `False` keeps the last one (the prompt file still holds the
                best).
            eval_interval: optional int, evaluate every this many steps and
                after the last one instead of every `eval_interval` steps of
                the recipe: the last interval may be shorter.
            print_evaluations: optional bool, print a line per evaluation;
                `None` follows `verbose`.
            checkpoint_every: optional int: write a training checkpoint
                (`PromptTrainingCheckpoint`: prompt, head, optimizer and
                seed states, the step and the evaluations so far; a few
                times the prompt's size) to `output_dir/checkpoints` every
                this many steps and after each evaluation.
            resume: bool, continue from the newest checkpoint in
                `output_dir/checkpoints` (from the start when there is
                none). The data resumes at the checkpoint's step, so the
                final prompt is bit-identical to an uninterrupted run's.
                Without it, an existing checkpoint is refused rather than
                overwritten.
            run_config: optional JSON-able dict of further settings of the
                run (e.g. the preset) stored in the checkpoint: a checkpoint
                of other settings is refused when resuming.

        Returns:
            A `RecipeResult`.
        """
        for name in ("fit", "infer", "save_prompts", "load_prompts"):
            if not callable(getattr(model, name, None)):
                raise TypeError(
                    "`model` must be a keras_prompt task with `fit`, "
                    "`infer`, `save_prompts` and `load_prompts`. "
                    f"Received: model={type(model).__name__}"
                )
        _check_int("eval_interval", eval_interval, allow_none=True)
        interval = eval_interval or self.eval_interval
        if not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(
                "`output_dir` must be a folder path. "
                f"Received: output_dir={output_dir!r}"
            )
        output_dir = os.fspath(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        if getattr(model, "optimizer", None) is None:
            self.compile(model)
        if train_data is None and self.task is not None:
            train_data = self.examples(
                model, "train", data_dir, max_train_examples
            )
        if _is_examples(train_data):
            if not len(train_data):
                raise ValueError("No training examples.")
            dataset = train_data.train_dataset(
                model, self.batch_size, self.steps, self.seed
            )
            train = train_data.fit
        else:
            dataset = self.train_dataset(
                data_dir, train_data, max_train_examples
            )

            def train(model, dataset, **kwargs):
                return model.fit(dataset, **kwargs)

        evaluate = self.evaluation_fn(
            data_dir, validation_data, evaluate_fn, max_eval_examples
        )
        prompt_path = os.path.join(output_dir, PROMPT_FILE)
        checkpoint = BestPromptCheckpoint(
            prompt_path,
            monitor="val_score",
            mode="max",
            evaluate_fn=evaluate,
            patience=self.patience,
            restore_best=restore_best,
            verbose=int(
                bool(verbose) and verbose != "auto"
                if print_evaluations is None
                else print_evaluations
            ),
        )
        start_step = _iterations(model)
        callbacks = [checkpoint] + list(callbacks or [])
        done = 0
        if checkpoint_every is not None or resume:
            saver = self._training_checkpoint(
                output_dir,
                checkpoint,
                checkpoint_every,
                run_config,
                interval,
                max_train_examples,
            )
            if resume:
                state = saver.restore(model)
                done = 0 if state is None else state["step"] - start_step
            elif saver.latest() is not None:
                raise ValueError(
                    f"{saver.directory!r} holds a training checkpoint of an "
                    "earlier run: pass `resume=True` to continue it, or "
                    "delete the folder to start afresh."
                )
            callbacks.append(saver)  # Last: it saves what the rest did.
        evaluations_before = len(checkpoint.evaluations)
        start = time.perf_counter()
        with warnings.catch_warnings():
            # A last, shorter interval ends when the finite data runs out.
            warnings.filterwarnings("ignore", "Your input ran out of data")
            history = _train_in_segments(
                train,
                model,
                dataset,
                done,
                self.steps,
                interval,
                checkpoint,
                callbacks=callbacks,
                shuffle=False,  # the data is shuffled already
                verbose=verbose,
            )
        total = time.perf_counter() - start
        eval_seconds = sum(
            e["seconds"] for e in checkpoint.evaluations[evaluations_before:]
        )
        result = RecipeResult(
            history=history,
            best_value=checkpoint.best_value,
            best_metrics=dict(checkpoint.best_metrics or {}),
            best_step=checkpoint.best_step,
            prompt_path=prompt_path,
            monitor="val_score",
            steps=_iterations(model) - start_step,
            stopped_early=checkpoint.stopped_early,
            train_seconds=total - eval_seconds,
            eval_seconds=eval_seconds,
            evaluations=list(checkpoint.evaluations),
        )
        _write_results(os.path.join(output_dir, RESULTS_FILE), self, result)
        return result

    def _training_checkpoint(
        self, output_dir, checkpoint, every, run_config, interval, max_train
    ):
        """The `PromptTrainingCheckpoint` of a `fit`, tracking the best
        prompt's checkpoint; its config is everything that decides the
        batches and the updates."""
        _check_int("checkpoint_every", every, allow_none=True)
        config = {
            "recipe": _jsonable(self.to_dict()),
            "eval_interval": interval,
            "max_train_examples": max_train,
        }
        if run_config is not None:
            config["run"] = _jsonable(run_config)
        return PromptTrainingCheckpoint(
            os.path.join(output_dir, CHECKPOINT_DIR),
            save_freq=every or "epoch",
            config=config,
            track=[checkpoint],
            delete_on_train_end=False,
            restore_on_train_begin=False,
        )


def _train_in_segments(
    train, model, dataset, done, steps, interval, checkpoint, **kwargs
):
    """Runs `train` over steps `done..steps` of `dataset`, in epochs of
    `interval` steps counted from step 0.

    From step 0 this is one `fit`. A run resumed inside an epoch first
    finishes that epoch (a shorter one), then goes on in whole epochs, so
    evaluations fall on the same steps as in an uninterrupted run; the data
    is skipped to the step the run resumes at. Returns one `History` of
    all the epochs run.
    """
    history = keras.callbacks.History()
    history.history, history.epoch = {}, []
    epochs = math.ceil(steps / interval)
    while done < steps and not checkpoint.stopped_early:
        epoch = done // interval
        if done % interval:
            steps_per_epoch = min((epoch + 1) * interval, steps) - done
            last_epoch = epoch + 1
        else:
            steps_per_epoch, last_epoch = interval, epochs
        before = _iterations(model)
        part = train(
            model,
            dataset.skip(done) if done else dataset,
            steps_per_epoch=steps_per_epoch,
            epochs=last_epoch,
            initial_epoch=epoch,
            **kwargs,
        )
        history.epoch.extend(part.epoch)
        history.params = part.params
        for key, values in part.history.items():
            history.history.setdefault(key, []).extend(values)
        taken = _iterations(model) - before
        if not taken:
            break
        done += taken
    return history


def _is_examples(data):
    """Whether `data` is a split read by `Recipe.examples`."""
    return all(
        callable(getattr(data, name, None))
        for name in ("train_dataset", "fit", "score")
    )


def _iterations(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def _write_results(path, recipe, result):
    summary = {
        "recipe": recipe.to_dict(),
        "prompt_file": os.path.basename(result.prompt_path),
        "monitor": result.monitor,
        "best_value": result.best_value,
        "best_step": result.best_step,
        "best_metrics": result.best_metrics,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "evaluations": result.evaluations,
        "history": result.history.history if result.history else {},
    }
    data = json.dumps(_jsonable(summary), indent=2, sort_keys=True)
    atomic_write_bytes(path, (data + "\n").encode("utf-8"))


def _string_pairs(data, name):
    """`(inputs, targets)` lists of str from a pair of sequences."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            f"`{name}` must be a `(inputs, targets)` pair of string lists "
            f"or a tf.data.Dataset. Received: {name}={type(data).__name__}"
        )
    inputs, targets = ([_text(v) for v in np.asarray(d)] for d in data)
    if len(inputs) != len(targets) or not inputs:
        raise ValueError(
            f"`{name}` needs as many targets as inputs, and at least one. "
            f"Received: {len(inputs)} inputs, {len(targets)} targets"
        )
    return inputs, targets


def _pairs_dataset(dataset):
    """An unbatched dataset of `(input, target)` string scalars."""
    import tensorflow as tf

    spec = dataset.element_spec
    ok = (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(s.dtype == tf.string for s in spec)
        and all(s.shape.rank in (0, 1) for s in spec)
    )
    if not ok:
        raise ValueError(
            "`train_data` must yield `(input, target)` string pairs. "
            f"Received: element_spec={spec!r}"
        )
    if spec[0].shape.rank == 1:
        dataset = dataset.unbatch()
    return dataset


def exact_match_accuracy(model, inputs, targets, batch_size=32):
    """Share of `model.generate` outputs equal to their target (stripped).

    Args:
        model: anything with `generate(list_of_str)`.
        inputs: list of input strings.
        targets: list of target strings.
        batch_size: int, inputs per `generate` call.

    Returns:
        A float in `[0, 1]`.
    """
    correct = 0
    for start in range(0, len(inputs), batch_size):
        outputs = model.generate(list(inputs[start : start + batch_size]))
        for output, target in zip(outputs, targets[start : start + batch_size]):
            correct += _text(output).strip() == _text(target).strip()
    return correct / len(inputs)


def _check_fields(changes):
    names = {field.name for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise TypeError(
            f"Unknown recipe settings {unknown}. Known settings: "
            f"{sorted(names)}."
        )


def lester2021(task=None, **overrides):
    """The Prompt Tuning paper's recipe (Lester et al., 2021).

    Returns a `Recipe` with the paper's settings: Adafactor at a constant
    learning rate of 0.3 (decay rate 0.8, weight decay 1e-5, no parameter
    scaling, update clipping 1.0), a 100-token prompt initialised from the
    task's class labels, batches of 32, 30,000 steps and selection of the
    best prompt on the dev split. Any field can be overridden by keyword;
    see the module docstring for where the recipe departs from the paper.

    Args:
        task: str or `keras_prompt.data.TextToTextTask`, e.g.
            `"glue/sst2"`, or `None` (then `fit` needs data).
        **overrides: `Recipe` fields to change, e.g. `steps=200`.

    Returns:
        A `Recipe`.

    Example:

    ```python
    from keras_prompt.training.recipe import lester2021

    recipe = lester2021(task="glue/sst2")
    model = recipe.build_model("t5_1.1_small")
    result = recipe.fit(
        model, data_dir="../shared/tfds", output_dir="runs/sst2"
    )
    print(result.best_metrics, result.prompt_path)
    # Tiny settings for a smoke test:
    quick = lester2021(
        "glue/sst2", prompt_length=10, steps=20, eval_interval=10
    )
    ```
    """
    _check_fields(overrides)
    return Recipe(task=task, **overrides)


paper_recipe = lester2021
