"""The paper's training recipe in one call.

`lester2021()` returns a `Recipe` holding the settings of Prompt Tuning
(Lester, Al-Rfou and Constant, 2021, "The Power of Scale for
Parameter-Efficient Prompt Tuning", arXiv:2104.08691), section 3:

| setting           | paper                                | `Recipe` field   |
|-------------------|--------------------------------------|------------------|
| optimiser         | Adafactor                            | `optimizer()`    |
| learning rate     | 0.3, constant                        | `learning_rate`, |
|                   |                                      | `schedule`       |
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
- **Decoding.** Dev predictions are the label string of highest
  log-likelihood (rank classification, `decode="score"`) for tasks with
  class labels, else greedy generations; T5-style exact-match metrics.
- **Dropout** stays as the checkpoint defines it (0.1 for T5 1.1 and the
  LM-adapted checkpoints), as in the paper: Keras applies a frozen
  layer's dropout during `fit`. `frozen_dropout` sets another rate for
  the frozen model's dropout layers (`0.0`: off, as SuperPos-Prompt
  recommends; `keras-prompt tune` turns it off for classifiers, where it
  measured better); a task head's own dropout is not affected.
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
from typing import Any
from typing import Optional
from typing import Sequence

from keras_prompt import initializers as prompt_initializers
from keras_prompt import optimizers
from keras_prompt.layers.prompt_config import PromptConfig
from keras_prompt.training import evaluation
from keras_prompt.training import pipeline
from keras_prompt.training import recipe_checks
from keras_prompt.training import trainer
from keras_prompt.training.splits import resolve_decode
from keras_prompt.training.task_kinds import find_task_kind
from keras_prompt.training.task_kinds import task_kind
from keras_prompt.validation import check_count

# The paper's Adafactor settings are `Adafactor`'s defaults: written there.
_PAPER = optimizers.paper_adafactor_settings()
SCHEDULES = recipe_checks.SCHEDULES


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
        learning_rate: float, the optimiser's step size (its start with
            a `schedule`), or `None` for the optimiser's default. Paper:
            0.3.
        schedule: `"constant"` (paper) or `"cosine"`: the rate decays
            from `learning_rate` to zero over `steps` on a half cosine
            (`keras.optimizers.schedules.CosineDecay`; resumed runs go on
            from the optimiser's saved step).
        decay_rate: float, Adafactor's second-moment decay exponent. The
            Adafactor settings apply when the optimiser is Adafactor.
            Paper: 0.8.
        weight_decay_rate: float, decoupled weight decay. Paper: 1e-5.
        frozen_dropout: optional float in `[0, 1)`, the rate of every
            dropout layer of the frozen model while the prompt trains
            (`0.0`: off); `None` keeps the checkpoint's. Paper: `None`.
        frozen_prefix_cache: `"auto"`, `True` or `False`: compute the
            hidden states a late prompt's frozen layers give each
            training example once, and run only the layers above them in
            every step (`keras_prompt.training.frozen_prefix_cache`).
            `"auto"`: when the prompt enters late (`start_layer > 0`), no
            dropout acts below it (see `frozen_dropout`), the run trains
            on the task's examples (not `train_data` pairs) and makes
            more than one pass over them. The trained prompt is the one
            training without it gives (to float rounding). Not in the
            paper.
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
        pooling: optional str, a classifier's pooling (`"cls"`, `"mean"`);
            `None`: the task's default (the only one other tasks take).
        start_layer: int, late prompts: the layer the prompt enters
            before (see `keras_prompt.PromptConfig`). Paper: `0`.
        reparameterization: optional, the prompt's reparameterisation
            while it trains (`"residual"`; see `PromptConfig`). Paper:
            `None`.
        prompt_config: optional `keras_prompt.PromptConfig`: the prompt
            fields above left at their defaults take its values; a field
            set to another value than the config's is a `ValueError`.
        decode: `"score"` (rank the task's label strings by likelihood)
            or `"generate"` (greedy): how text-generating models are
            scored. `None`: `"score"` for tasks with label strings.

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
    schedule: str = "constant"
    decay_rate: float = _PAPER["decay_rate"]
    weight_decay_rate: float = _PAPER["weight_decay_rate"]
    frozen_dropout: Optional[float] = None
    frozen_prefix_cache: Any = "auto"
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
    pooling: Optional[str] = None
    start_layer: int = 0
    reparameterization: Any = None
    prompt_config: Any = None
    decode: Optional[str] = None

    def __post_init__(self):
        recipe_checks.check_recipe(self)

    def fill_from_prompt_config(self):
        """With a `prompt_config`, the prompt fields left at their defaults
        take its values (`prompt_length`, `deep`, `start_layer`,
        `reparameterization`, and an initializer other than its default);
        `prompt_settings` then checks that the rest agree."""
        config = self.prompt_config
        if config is None:
            return
        config = PromptConfig.resolve(config, owner="Recipe")
        self.prompt_config = config
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, field in (
            ("prompt_length", "length"),
            ("deep", "deep"),
            ("start_layer", "start_layer"),
            ("reparameterization", "reparameterization"),
        ):
            if getattr(self, name) == defaults[name]:
                setattr(self, name, getattr(config, field))
        initializer = config.initializer
        if self.initializer == defaults["initializer"] and not (
            isinstance(initializer, str) and initializer == "random_uniform"
        ):
            self.initializer = initializer

    def prompt_settings(self, initializer=None):
        """The `PromptConfig` of the model this recipe builds (its
        `prompt_config` with the recipe's prompt fields; `initializer`, the
        resolved one, replaces the recipe's name)."""
        return PromptConfig.resolve(
            self.prompt_config,
            owner="Recipe",
            prompt_length=self.prompt_length,
            deep=self.deep,
            start_layer=self.start_layer,
            reparameterization=self.reparameterization,
        ).replace(initializer=initializer or "random_uniform")

    # -- settings -----------------------------------------------------------
    def replace(self, **changes):
        """A copy of this recipe with some fields changed."""
        check_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The settings as a JSON-able dict (the task by name)."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "task" and value is not None:
                value = value.name
            elif field.name == "prompt_config" and value is not None:
                value = value.get_config()
                if not isinstance(value["initializer"], (str, type(None))):
                    value["initializer"] = value["initializer"]["class_name"]
            elif field.name == "initializer" and not isinstance(value, str):
                path = getattr(value, "path", None)
                value = type(value).__name__ + (f"({path})" if path else "")
            elif field.name == "decode":
                value = resolve_decode(value, self.task)
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
        if self.schedule == "cosine":
            import keras

            rate = keras.optimizers.schedules.CosineDecay(rate, self.steps)
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
        models: greedy decoding), and the `compile` arguments training adds
        for its task class (`TaskKind.compile_kwargs`).

        Args:
            model: a keras_prompt task.
            **kwargs: further `compile` arguments (e.g. `jit_compile`).
        """
        kind = find_task_kind(type(model))
        kwargs = {**(kind.compile_kwargs if kind else {}), **kwargs}
        model.compile(optimizer=self.optimizer(model), **kwargs)
        return model

    def build_model(
        self,
        preset=None,
        *,
        backbone=None,
        preprocessor=None,
        **kwargs,
    ):
        """The prompt task for this recipe's prompt, compiled.

        The task class follows the backbone (`keras_prompt.tasks.
        task_class_for`): a `PromptSeq2SeqLM` on T5, a `PromptClassifier`
        (one class per label of the recipe's `task`, its head reading
        `pooling`) on BERT, RoBERTa and DistilBERT, a `PromptCausalLM` on
        decoder-only LMs. Give a `preset` (keras-hub preset or Hugging Face
        folder), or a keras-hub backbone and its preprocessor, or both a
        backbone already loaded from `preset` and the `preset` (its
        preprocessor is loaded).

        Args:
            preset: str, the pretrained model to load.
            backbone: a keras-hub backbone (not yet wrapped; with
                `frozen_dropout` set, its dropout layers take that rate).
            preprocessor: the task's preprocessor (e.g. a
                `T5Seq2SeqLMPreprocessor`); needed with `backbone` alone,
                optional with `preset` (it is then used as is, with its own
                sequence lengths).
            **kwargs: passed to `compile` (e.g. `jit_compile=False`).

        Returns:
            A compiled keras_prompt task.
        """
        from keras_prompt.convert.presets import load_backbone
        from keras_prompt.convert.presets import load_preprocessor
        from keras_prompt.frozen_backbone import FrozenBackbone
        from keras_prompt.layers.float32_noise_dropout import set_dropout_rate
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
            backbone = load_backbone(preset, dtype="auto")
        task_class = task_class_for(backbone)
        kind = find_task_kind(task_class)
        if kind is None:
            raise ValueError(
                f"The recipe cannot train a {task_class.__name__} yet "
                f"({type(backbone).__name__}). Received: "
                f"backbone={type(backbone).__name__}"
            )
        kind.check_pooling(task_class, self.pooling)
        if preprocessor is None:
            preprocessor = load_preprocessor(
                preset,
                task_class.preprocessor_cls,
                **kind.preprocessor_lengths(
                    self.encoder_sequence_length, self.decoder_sequence_length
                ),
            )
        if self.frozen_dropout is not None:
            set_dropout_rate(backbone, self.frozen_dropout)
        wrapped = FrozenBackbone(
            backbone,
            prompt_config=self.prompt_settings(
                self.make_initializer(preprocessor.tokenizer)
            ),
        )
        model = kind.build(task_class, wrapped, preprocessor, self.task, self)
        return self.compile(model, **kwargs)

    def examples(self, model, split, data_dir=None, max_examples=None):
        """The `split` (e.g. `"train"`) of the recipe's task in the form
        `model` trains and is scored on (`TaskKind.read_examples`, which
        documents the arguments): text-to-text pairs, or sentences and
        class indices for a classifier."""
        if self.task is None:
            raise ValueError(
                "The recipe has no `task` to read. Received: task=None"
            )
        check_count("max_examples", max_examples, allow_none=True)
        return task_kind(type(model)).read_examples(
            self.task, split, data_dir=data_dir, max_examples=max_examples
        )

    # -- data, evaluation and training -------------------------------------
    # The functions of `pipeline`, `evaluation` and `trainer`, as methods:
    # the recipe is their first argument.
    train_dataset = pipeline.train_dataset
    evaluation_fn = evaluation.evaluation_fn
    fit = trainer.fit


def check_fields(changes):
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
    check_fields(overrides)
    return Recipe(task=task, **overrides)


paper_recipe = lester2021
