"""The evaluation printer of `keras-prompt tune` (imports Keras, so the
CLI loads it only once a run starts)."""

import time

import keras

from keras_prompt.cli.common import format_metrics
from keras_prompt.cli.common import format_seconds
from keras_prompt.training.evaluation import task_metrics


class PrintEvaluations(keras.callbacks.Callback):
    """Prints each evaluation of `Recipe.fit` (the checkpoint has put its
    metrics into the epoch's logs) after Keras' progress of the steps."""

    def __init__(self, steps, num_eval):
        super().__init__()
        self.steps, self.num_eval, self.line = steps, num_eval, None

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.line = (
            f"step {step}/{self.steps}: validation "
            f"{format_metrics(task_metrics(logs or {}))} "
            f"({self.num_eval} examples)"
        )

    def on_epoch_begin(self, epoch, logs=None):
        if self.line:
            print(self.line)
        self.line = None

    on_train_end = on_epoch_begin


class ProgressLines(keras.callbacks.Callback):
    """When output is not a terminal (a log file, CI), a line every
    `percent` of the run with the step, steps per second and the time
    left, instead of Keras' bar (one line per step there) or nothing until
    the epoch ends."""

    def __init__(self, steps, percent=5):
        super().__init__()
        self.steps = steps
        self.every = max(1, steps * percent // 100)
        self.start = self.first = None

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if self.start is None:
            # Timed from the first step on: it includes tracing.
            self.start, self.first = time.perf_counter(), step
            return
        if step % self.every and step != self.steps:
            return
        done = step - self.first
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        left = (self.steps - step) / rate if rate else 0.0
        loss = (logs or {}).get("loss")
        print(
            f"step {step}/{self.steps} ({100 * step // self.steps}%)"
            + (f", loss {float(loss):.4f}" if loss is not None else "")
            + f", {rate:.2f} steps/s, ETA {format_seconds(left)}",
            flush=True,
        )
