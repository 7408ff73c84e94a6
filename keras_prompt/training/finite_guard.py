"""Stop training the moment it diverges, before anything is written."""

import collections
import math

import keras
import numpy as np

from keras_prompt.validation import check_float
from keras_prompt.validation import check_int


class TrainingDivergedError(ValueError):
    """Training produced a non-finite loss or prompt."""


class FiniteGuard(keras.callbacks.Callback):
    """Raises as soon as the loss or a trained variable is NaN or Inf, or
    the loss runs away from where it started.

    A diverged prompt is worth nothing, and `TerminateOnNaN` only stops
    quietly, so a script would go on to score and save it. This callback
    raises a `TrainingDivergedError` (a `ValueError`) naming the step, the
    value and what to change; since it stops `fit` before any later
    callback of that step runs, `BestPromptCheckpoint` and the CLI never
    write a diverged prompt.

    A learning rate far too large need not overflow: the loss can climb
    and stay finite (with Adafactor's bounded updates, from 0.69 to 1e7 on
    a two-class task). The divergence rule: from step `window + 1` of a
    `fit` on, the mean training loss of the last `window` steps must stay
    at most `factor` times the loss of its first step (the loss of the
    weights it started from; with `steps_per_execution`, the mean loss
    of the first steps reported together). A run that has learned
    anything is far below that; one 10 times above where it started is
    lost. The rule is off when the first loss is not positive (it bounds
    nothing then), or with `factor=None`.

    Args:
        check_every: int, check the trained variables every this many
            steps (the loss is checked every step). Defaults to `1`.
        factor: float > 1, or `None` (no divergence rule). Defaults to
            `10`.
        window: int, the steps averaged by the divergence rule. Defaults
            to `10`.

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_prompt.FiniteGuard()])
    ```
    """

    def __init__(self, check_every=1, factor=10.0, window=10):
        super().__init__()
        check_every = check_int("check_every", check_every, 1)
        self.check_every = check_every
        self.factor = check_float("factor", factor, 1.0, True, False)
        self.window = check_int("window", window, 1)
        self.on_train_begin()
        self.on_epoch_begin(0)

    def on_train_begin(self, logs=None):
        self._step = 0
        self._start = None
        self._recent = collections.deque(maxlen=self.window)

    def on_epoch_begin(self, epoch, logs=None):
        # Keras reports the epoch's running mean of the loss: its sum over
        # the steps seen gives each step's own.
        self._seen = (0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        loss = (logs or {}).get("loss")
        if loss is not None:
            loss = float(loss)
            if not math.isfinite(loss):
                self._raise(f"the loss is {loss}")
            self._check_runaway(batch, loss)
        if self._step % self.check_every:
            return
        for variable in self.model.trainable_variables:
            value = keras.ops.convert_to_numpy(variable)
            if not np.all(np.isfinite(value)):
                self._raise(f"the variable {variable.path!r} is not finite")

    def _check_runaway(self, batch, mean):
        """The divergence rule, on the loss of the steps since the last
        call (`mean`: the epoch's running mean after step `batch`)."""
        if self.factor is None:
            return
        seen, total = self._seen
        count = max(batch + 1 - seen, 1)
        loss = (mean * (batch + 1) - total) / count
        self._seen = (batch + 1, mean * (batch + 1))
        if self._start is None:
            self._start = loss
            return
        self._recent.extend([loss] * count)
        if self._start <= 0 or len(self._recent) < self.window:
            return
        recent = float(np.mean(self._recent))
        if recent > self.factor * self._start:
            self._raise(
                f"the mean loss of the last {self.window} steps, "
                f"{recent:.4g}, is over {self.factor:g} times the loss it "
                f"started from ({self._start:.4g})"
            )

    def _raise(self, what):
        self.model.stop_training = True
        learning_rate = getattr(self.model.optimizer, "learning_rate", None)
        try:
            learning_rate = float(keras.ops.convert_to_numpy(learning_rate))
        except (TypeError, ValueError):
            learning_rate = None
        hint = (
            f" (learning_rate={learning_rate:g})"
            if learning_rate is not None
            else ""
        )
        raise TrainingDivergedError(
            f"Training diverged at step {self._step}: {what}. Nothing was "
            "saved. Lower the learning rate" + hint + " and train again."
        )
