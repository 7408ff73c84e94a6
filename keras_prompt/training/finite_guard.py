"""Stop training the moment it diverges, before anything is written."""

import math

import keras
import numpy as np

from keras_prompt.validation import check_int


class TrainingDivergedError(ValueError):
    """Training produced a non-finite loss or prompt."""


class FiniteGuard(keras.callbacks.Callback):
    """Raises as soon as the loss or a trained variable is NaN or Inf.

    A diverged prompt is worth nothing, and `TerminateOnNaN` only stops
    quietly, so a script would go on to score and save it. This callback
    raises a `TrainingDivergedError` (a `ValueError`) naming the step, the
    value and what to change; since it stops `fit` before any later
    callback of that step runs, `BestPromptCheckpoint` and the CLI never
    write a non-finite prompt.

    Args:
        check_every: int, check the trained variables every this many
            steps (the loss is checked every step). Defaults to `1`.

    Example:

    ```python
    model.fit(x, y, callbacks=[keras_prompt.FiniteGuard()])
    ```
    """

    def __init__(self, check_every=1):
        super().__init__()
        check_every = check_int("check_every", check_every, 1)
        self.check_every = check_every
        self._step = 0

    def on_train_begin(self, logs=None):
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._raise(f"the loss is {float(loss)}")
        if self._step % self.check_every:
            return
        for variable in self.model.trainable_variables:
            value = keras.ops.convert_to_numpy(variable)
            if not np.all(np.isfinite(value)):
                self._raise(f"the variable {variable.path!r} is not finite")

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
