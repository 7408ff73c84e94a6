"""A Keras callback that keeps the best prompt, never the whole model."""

import math
import numbers
import os
import re
import time

import keras
import numpy as np
from keras.src.callbacks.monitor_callback import MonitorCallback

from keras_prompt.validation import check_bool

_MAX_WORDS = {"acc", "accuracy", "auc", "em", "f1", "f1a", "score"}
_MIN_WORDS = {"loss", "error", "perplexity", "mse", "mae"}


def _resolve_mode(mode, monitor):
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(
            "`mode` must be one of 'auto', 'min' or 'max'. "
            f"Received: mode={mode!r}"
        )
    words = set(re.split(r"[^a-z0-9]+", monitor.lower()))
    if words & _MIN_WORDS:
        return "min"
    if words & _MAX_WORDS or "f1" in monitor or "accuracy" in monitor:
        return "max"
    raise ValueError(
        f"Cannot tell whether `monitor={monitor!r}` should go up or down; "
        "pass `mode='min'` or `mode='max'`. Received: mode='auto'"
    )


def _as_float(value, monitor):
    if isinstance(value, (list, tuple)) or (
        hasattr(value, "shape") and tuple(value.shape) not in ((), (1,))
    ):
        raise TypeError(
            f"The monitored value {monitor!r} must be a scalar. "
            f"Received: {monitor}={value!r}"
        )
    try:
        return float(np.asarray(keras.ops.convert_to_numpy(value)).item())
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"The monitored value {monitor!r} must be a number. "
            f"Received: {monitor}={value!r}"
        ) from error


class BestPromptCheckpoint(MonitorCallback):
    """Saves the prompt file whenever a monitored value improves.

    After every epoch (or every `every_n_steps` optimiser steps) the
    callback reads the monitored value, either from the training logs
    (e.g. `"val_loss"` when `fit` has `validation_data`) or by calling
    `evaluate_fn(model)`, which may decode with `model.generate` and score
    the text (e.g. with `keras_prompt.data.evaluate_generation`). When the
    value improves on the best so far (by more than `min_delta`), it writes
    the prompt with `model.save_prompts(path)`: a file of a few kilobytes,
    written atomically, holding only what trains (the prompt, and a task's
    extra tensors such as a classifier head), never the frozen backbone.
    Nothing is written on evaluations that do not improve.

    With `patience`, training stops after that many evaluations in a row
    without improvement (early stopping). With `restore_best=True` the best
    prompt file is loaded back into the model when training ends, so the
    model holds the best prompt, not the last one.

    The values of `evaluate_fn` are also put into the epoch logs (so
    `History` records them) when it evaluates at epoch ends; every
    evaluation is recorded in `evaluations` as
    `{"step", "epoch", "value", "improved", "seconds", ...metrics}`.

    One instance passed to several `fit` calls continues across them: the
    best value (and its step, epoch and metrics), the count of evaluations
    without improvement and the records carry over, so a later `fit` that
    does worse never replaces the best prompt file. Call `reset()` (or pass
    `reset_on_train_begin=True`) to start afresh, e.g. for another model.
    The state round-trips through `get_state()` / `set_state()`, which
    `PromptTrainingCheckpoint(track=[...])` saves and restores.

    Args:
        path: str, the prompt file to write, conventionally
            `"*.prompt.safetensors"`. Its folder must exist.
        monitor: str, the value to watch: a key of the logs, or of the
            dict `evaluate_fn` returns. Defaults to `"val_loss"`.
        mode: `"auto"`, `"min"` or `"max"`. `"auto"` picks `"min"` for
            losses and errors and `"max"` for accuracies, F1, exact match
            and scores, and raises for other names.
        evaluate_fn: optional callable `evaluate_fn(model)` returning a
            number (the monitored value) or a dict of metrics holding
            `monitor`. Called with the model being trained.
        patience: optional int >= 1: stop training after this many
            evaluations without improvement. `None` never stops early.
        restore_best: bool, load the best prompt file back at the end of
            training. Defaults to `False`.
        min_delta: float >= 0, the smallest change that counts as an
            improvement. Defaults to `0.0`.
        every_n_steps: optional int >= 1: evaluate every this many
            optimiser steps instead of at the end of each epoch.
        verbose: int, 1 prints a line per evaluation. Defaults to `0`.
        reset_on_train_begin: bool, forget the best value, the patience
            count and the records at the start of every `fit`, as if the
            instance were new. Defaults to `False`.

    Example:

    ```python
    from keras_prompt.data import evaluate_generation

    def dev_accuracy(model):
        return evaluate_generation(
            model, "glue/sst2", "validation", data_dir="../shared/tfds",
            max_examples=200,
        )["accuracy"]

    checkpoint = keras_prompt.BestPromptCheckpoint(
        "sst2.prompt.safetensors",
        monitor="val_accuracy",
        mode="max",
        evaluate_fn=dev_accuracy,
        patience=5,
        restore_best=True,
    )
    model.fit(train_ds, steps_per_epoch=1000, epochs=30,
              callbacks=[checkpoint])
    checkpoint.best_value, checkpoint.best_step
    ```
    """

    def __init__(
        self,
        path,
        monitor="val_loss",
        mode="auto",
        evaluate_fn=None,
        patience=None,
        restore_best=False,
        min_delta=0.0,
        every_n_steps=None,
        verbose=0,
        reset_on_train_begin=False,
    ):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(
                f"`path` must be a non-empty file path. Received: path={path!r}"
            )
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                "`monitor` must be a non-empty string. "
                f"Received: monitor={monitor!r}"
            )
        if evaluate_fn is not None and not callable(evaluate_fn):
            raise TypeError(
                "`evaluate_fn` must be callable or None. "
                f"Received: evaluate_fn={evaluate_fn!r}"
            )
        for name, value in (
            ("patience", patience),
            ("every_n_steps", every_n_steps),
        ):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, numbers.Integral)
                or value < 1
            ):
                raise ValueError(
                    f"`{name}` must be None or an int >= 1. "
                    f"Received: {name}={value!r}"
                )
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, numbers.Real)
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            raise ValueError(
                "`min_delta` must be a finite number >= 0. "
                f"Received: min_delta={min_delta!r}"
            )
        check_bool("restore_best", restore_best)
        check_bool("reset_on_train_begin", reset_on_train_begin)
        # Keras' `MonitorCallback` holds the monitor, the mode, `min_delta`
        # and the best value (`best`), and decides what improves
        # (`_is_improvement`); `mode="auto"` is resolved here, by name.
        super().__init__(
            monitor=monitor,
            mode=_resolve_mode(mode, monitor),
            min_delta=float(min_delta),
        )
        self._set_monitor_op()
        self.path = os.fspath(path)
        self.evaluate_fn = evaluate_fn
        self.patience = None if patience is None else int(patience)
        self.restore_best = restore_best
        self.every_n_steps = (
            None if every_n_steps is None else int(every_n_steps)
        )
        self.verbose = verbose
        self.reset_on_train_begin = reset_on_train_begin
        self.reset()

    @property
    def best_value(self):
        """The best monitored value so far (`MonitorCallback.best`)."""
        return self.best

    def reset(self):
        """Forgets the best value, the patience count and the records: the
        next evaluation saves the prompt file whatever its value."""
        self.best = None
        self.best_step = None
        self.best_epoch = None
        self.best_metrics = None
        self.wait = 0
        self.saves = 0
        self.stopped_early = False
        self.evaluations = []
        self._last_eval_step = 0
        self._epoch = 0

    # -- Keras hooks --------------------------------------------------------
    def on_train_begin(self, logs=None):
        for name in ("save_prompts", "load_prompts"):
            if not callable(getattr(self.model, name, None)):
                raise TypeError(
                    "`BestPromptCheckpoint` needs a model with "
                    "`save_prompts` and `load_prompts` (a keras_prompt task "
                    "or FrozenBackbone). Received: "
                    f"model={type(self.model).__name__}"
                )
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise ValueError(
                "The folder of the prompt file does not exist. "
                f"Received: path={self.path!r}"
            )
        if self.reset_on_train_begin:
            self.reset()
        self.stopped_early = False
        self._epoch = 0
        self._last_eval_step = self._step()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps is None:
            return
        step = self._step()
        if step - self._last_eval_step >= self.every_n_steps:
            self._evaluate(logs, step)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_steps is None:
            self._evaluate(logs, self._step(), epoch_logs=logs)

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_step is not None:
            self.model.load_prompts(self.path)
            if self.verbose:
                print(
                    f"BestPromptCheckpoint: restored the prompt of step "
                    f"{self.best_step} ({self.monitor}={self.best_value:.6g})"
                )

    # -- state ---------------------------------------------------------------
    _STATE = (
        "best",
        "best_step",
        "best_epoch",
        "best_metrics",
        "wait",
        "saves",
        "stopped_early",
        "evaluations",
    )

    def get_state(self):
        """The best value, patience count and records, JSON-able."""
        return {name: getattr(self, name) for name in self._STATE}

    def set_state(self, state):
        """Restores what `get_state` returned."""
        missing = sorted(set(self._STATE) - set(state))
        if missing:
            raise ValueError(
                f"`state` lacks {missing}. Received: state={state!r}"
            )
        for name in self._STATE:
            setattr(self, name, state[name])

    def state_files(self):
        """The file whose contents belong to the state: the best prompt."""
        return [self.path]

    # -- the work -----------------------------------------------------------
    def _step(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return 0
        return int(keras.ops.convert_to_numpy(optimizer.iterations))

    def _read(self, logs):
        metrics = {}
        if self.evaluate_fn is not None:
            result = self.evaluate_fn(self.model)
            if isinstance(result, dict):
                metrics = dict(result)
                if self.monitor not in metrics:
                    raise ValueError(
                        f"`evaluate_fn` returned no {self.monitor!r} (the "
                        f"`monitor`). It returned keys {sorted(metrics)}."
                    )
                value = metrics[self.monitor]
            else:
                value = result
                metrics = {self.monitor: value}
        else:
            logs = logs or {}
            if self.monitor not in logs:
                raise ValueError(
                    f"The monitored value {self.monitor!r} is not in the "
                    f"training logs (keys: {sorted(logs)}). Pass "
                    "`validation_data` to `fit`, monitor another key, or "
                    "give an `evaluate_fn`."
                )
            value = logs[self.monitor]
        metrics = {k: _as_float(v, k) for k, v in metrics.items()}
        return _as_float(value, self.monitor), metrics

    def _improved(self, value):
        if math.isnan(value):
            return False
        best = None if self.best is None else np.float64(self.best)
        return bool(self._is_improvement(np.float64(value), best))

    def _evaluate(self, logs, step, epoch_logs=None):
        start = time.perf_counter()
        value, metrics = self._read(logs)
        self._last_eval_step = step
        improved = self._improved(value)
        if improved:
            self.model.save_prompts(self.path)
            self.best = value
            self.best_step = step
            self.best_epoch = self._epoch
            self.best_metrics = dict(metrics) or {self.monitor: value}
            self.wait = 0
            self.saves += 1
        else:
            self.wait += 1
        if epoch_logs is not None:
            epoch_logs.update(metrics)
        record = dict(metrics)
        record.update(
            step=step,
            epoch=self._epoch,
            value=value,
            improved=improved,
            seconds=time.perf_counter() - start,
        )
        self.evaluations.append(record)
        if self.verbose:
            best = (
                f"{self.best_value:.6g}" if self.best_value is not None else "-"
            )
            note = "saved" if improved else f"no improvement ({self.wait})"
            print(
                f"BestPromptCheckpoint: step {step} {self.monitor}="
                f"{value:.6g} (best {best}): {note}"
            )
        if self.patience is not None and self.wait >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True
            if self.verbose:
                print(
                    f"BestPromptCheckpoint: stopping, {self.wait} "
                    "evaluations without improvement."
                )
