"""The training loop behind `Recipe.fit`: segments of epochs between dev
evaluations, resuming from a training checkpoint, timing, and the run
record.

A run writes into its output folder the best prompt (`BEST_PROMPT_FILE`),
the run record (`RUN_FILE`: the recipe's settings, the caller's run
settings, every evaluation, the best one, the history and the timings) and,
when it checkpoints, the training checkpoint folder (`CHECKPOINT_DIR`).
"""

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from typing import Any
from typing import Optional

import keras
import numpy as np

from keras_prompt.prompt_files import atomic_write_bytes
from keras_prompt.training import frozen_prefix_cache
from keras_prompt.training.best_prompt_checkpoint import BestPromptCheckpoint
from keras_prompt.training.evaluation import SCORE
from keras_prompt.training.evaluation import task_metrics
from keras_prompt.training.pipeline import check_train_source
from keras_prompt.training.pipeline import is_examples
from keras_prompt.training.training_checkpoint import PromptTrainingCheckpoint
from keras_prompt.validation import check_count

#: The prompt of the best evaluation, in the output folder of a run.
BEST_PROMPT_FILE = "best.prompt.safetensors"
#: The run record, in the output folder of a run.
RUN_FILE = "run.json"
#: The training checkpoint folder, in the output folder of a run.
CHECKPOINT_DIR = "checkpoint"


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
        record: dict, the run record `fit` wrote (`RUN_FILE`).
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
    record: dict = dataclasses.field(default_factory=dict)

    def task_history(self):
        """`[{"step": ..., **task metrics}, ...]`, one per evaluation, the
        metrics named as the task names them (see `task_metrics`)."""
        return [
            {"step": record["step"], **task_metrics(record)}
            for record in self.evaluations
        ]


def jsonable(value):
    """`value` with NumPy scalars made Python ones, keys made str and
    tuples made lists, for `json.dumps`."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value


def run_record(recipe, result, run_config=None, model=None):
    """The run record of a `fit`: the recipe's settings, the caller's run
    settings (`"run"`), the optimiser (its name and learning rate, `"auto"`
    and defaults resolved for `model`), the best evaluation, every
    evaluation, the history (one entry per evaluation, with the task's
    metrics) and the timings.

    Args:
        recipe: the `Recipe` that trained.
        result: the `RecipeResult` (its `record` is not read).
        run_config: optional JSON-able dict of the caller's settings.
        model: optional, the task trained.
    """
    epochs = result.history.history if result.history else {}
    optimizer = None
    if recipe.optimizer_name != "auto" or hasattr(
        model, "default_optimizer_name"
    ):
        name, rate = recipe.optimizer_settings(model)
        optimizer = {"name": name, "learning_rate": rate}
    record = {
        "recipe": recipe.to_dict(),
        "run": dict(run_config or {}),
        "optimizer": optimizer,
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
        "history": result.task_history(),
        "losses": list(epochs.get("loss", [])),
    }
    return jsonable(record)


def write_run_record(folder, record):
    """Writes `record` (a dict from `run_record`, with whatever the caller
    added) to `folder/RUN_FILE` atomically; returns the path."""
    path = os.path.join(folder, RUN_FILE)
    data = json.dumps(jsonable(record), indent=2, sort_keys=True)
    atomic_write_bytes(path, (data + "\n").encode("utf-8"))
    return path


def iterations(model):
    """The optimiser steps `model` has taken (0 before it is compiled)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def train_in_segments(
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
        before = iterations(model)
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
        taken = iterations(model) - before
        if not taken:
            break
        done += taken
    return history


def _check_model(model):
    for name in ("fit", "infer", "save_prompts", "load_prompts"):
        if not callable(getattr(model, name, None)):
            raise TypeError(
                "`model` must be a keras_prompt task with `fit`, "
                "`infer`, `save_prompts` and `load_prompts`. "
                f"Received: model={type(model).__name__}"
            )


def _training_data(
    recipe, model, data_dir, train_data, max_train_examples, prefixes
):
    """`(dataset, train)`: the training stream and `train(model, dataset,
    **fit_kwargs)`, which fits on it. `prefixes(split)` is the
    `fn(features)` giving the frozen-prefix cache of an example split's
    tokenized training examples, or `None` (`frozen_prefix_cache`)."""
    if train_data is None and recipe.task is not None:
        train_data = recipe.examples(
            model, "train", data_dir, max_train_examples
        )
    if is_examples(train_data):
        if not len(train_data):
            raise ValueError("No training examples.")
        dataset = train_data.train_dataset(
            model,
            recipe.batch_size,
            recipe.steps,
            recipe.seed,
            frozen_prefixes=prefixes(train_data),
        )
        return dataset, train_data.fit
    prefixes(None)  # Planned for pairs too: the record says why not.
    dataset = recipe.train_dataset(data_dir, train_data, max_train_examples)

    def train(model, dataset, **kwargs):
        return model.fit(dataset, **kwargs)

    return dataset, train


class _FrozenPrefixes:
    """The frozen-prefix cache of a run (`frozen_prefix_cache`): planned
    when the training split is known, computed when its examples are
    tokenized, removed when the run ends (`stack`). `record` is the run
    record's entry."""

    def __init__(self, recipe, model, folder, stack, verbose):
        self.recipe, self.model, self.folder = recipe, model, folder
        self.stack, self.verbose = stack, verbose
        self.record = None

    def __call__(self, split):
        recipe = self.recipe
        plan = frozen_prefix_cache.plan(
            recipe.frozen_prefix_cache,
            self.model,
            split,
            recipe.steps,
            recipe.batch_size,
        )
        self.record = {"used": False, "reason": plan.reason}
        if not plan.use:
            return None

        def make(features):
            cache = self.stack.enter_context(
                frozen_prefix_cache.cache_for_run(
                    plan, self.model, features, self.folder, self.verbose
                )
            )
            self.record = cache.record(plan)
            return cache

        return make


def _training_checkpoint(
    recipe, folder, checkpoint, every, run_config, interval, max_train
):
    """The `PromptTrainingCheckpoint` of a `fit` in `folder`, tracking the
    best prompt's checkpoint; its config is everything that decides the
    batches and the updates."""
    check_count("checkpoint_every", every, allow_none=True)
    config = {
        "recipe": jsonable(recipe.to_dict()),
        "eval_interval": interval,
        "max_train_examples": max_train,
    }
    if run_config is not None:
        config["run"] = jsonable(run_config)
    return PromptTrainingCheckpoint(
        folder,
        save_freq=every or "epoch",
        config=config,
        track=[checkpoint],
        delete_on_train_end=False,
        restore_on_train_begin=False,
    )


def fit(
    recipe,
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
    checkpoint_dir=None,
):
    """Trains the prompt and keeps the best one on the dev split.

    Trains `model` (compiled with its own optimiser: `build_model`
    compiles with the recipe's; an uncompiled model is compiled here)
    for `steps` steps of `batch_size` examples, evaluating every
    `eval_interval` steps. The prompt of the best evaluation is written
    to `output_dir/best.prompt.safetensors` (only when the score
    improves) and loaded back into `model` at the end. The run record
    (the recipe's settings, `run_config`, every evaluation, the best
    one, the history and the timings) goes to `output_dir/run.json`
    (`keras_prompt.training.trainer.RUN_FILE`).

    The task's `"train"` split is read in the model's form (`examples`)
    and drawn in reshuffled passes; a classifier trains on
    length-trimmed token batches (`keras_prompt.data.batching`).

    Called as `Recipe.fit(model, output_dir, ...)`.

    Args:
        recipe: the `Recipe` (`self` of `Recipe.fit`).
        model: a keras_prompt task, e.g. from `build_model`.
        output_dir: str, folder for the best prompt file and the run record
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
            times the prompt's size) to `output_dir/checkpoint` every
            this many steps and after each evaluation.
        resume: bool, continue from the newest checkpoint in
            the checkpoint folder (from the start when there is
            none). The data resumes at the checkpoint's step, so the
            final prompt is bit-identical to an uninterrupted run's.
            Without it, an existing checkpoint is refused rather than
            overwritten.
        run_config: optional JSON-able dict of further settings of the
            run (e.g. the preset) stored in the checkpoint: a checkpoint
            of other settings is refused when resuming. It is also
            recorded in the run record, as `"run"`.
        checkpoint_dir: optional str, the training checkpoint folder
            instead of `output_dir/checkpoint`.

    Returns:
        A `RecipeResult`.
    """
    _check_model(model)
    check_count("eval_interval", eval_interval, allow_none=True)
    interval = eval_interval or recipe.eval_interval
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(
            "`output_dir` must be a folder path. "
            f"Received: output_dir={output_dir!r}"
        )
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    if getattr(model, "optimizer", None) is None:
        recipe.compile(model)
    check_train_source(recipe, train_data)
    loud = bool(verbose) and verbose != "auto"
    evaluate = recipe.evaluation_fn(
        data_dir, validation_data, evaluate_fn, max_eval_examples
    )
    prompt_path = os.path.join(output_dir, BEST_PROMPT_FILE)
    checkpoint = BestPromptCheckpoint(
        prompt_path,
        monitor=SCORE,
        mode="max",
        evaluate_fn=evaluate,
        patience=recipe.patience,
        restore_best=restore_best,
        verbose=int(loud if print_evaluations is None else print_evaluations),
    )
    start_step = iterations(model)
    callbacks = [checkpoint] + list(callbacks or [])
    done = 0
    if checkpoint_every is not None or resume:
        saver = _training_checkpoint(
            recipe,
            checkpoint_dir or os.path.join(output_dir, CHECKPOINT_DIR),
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
    with contextlib.ExitStack() as stack:
        # The frozen-prefix cache (if any) lives until training ends.
        prefixes = _FrozenPrefixes(recipe, model, output_dir, stack, loud)
        # After every check: tokenizing (and computing frozen prefixes)
        # is the first real work.
        dataset, train = _training_data(
            recipe, model, data_dir, train_data, max_train_examples, prefixes
        )
        evaluations_before = len(checkpoint.evaluations)
        start = time.perf_counter()
        with warnings.catch_warnings():
            # A last, shorter interval ends when the finite data runs out.
            warnings.filterwarnings("ignore", "Your input ran out of data")
            history = train_in_segments(
                train,
                model,
                dataset,
                done,
                recipe.steps,
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
        monitor=SCORE,
        steps=iterations(model) - start_step,
        stopped_early=checkpoint.stopped_early,
        train_seconds=total - eval_seconds,
        eval_seconds=eval_seconds,
        evaluations=list(checkpoint.evaluations),
    )
    result.record = run_record(recipe, result, run_config, model)
    result.record["frozen_prefix_cache"] = prefixes.record
    write_run_record(output_dir, result.record)
    return result
