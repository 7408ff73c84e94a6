"""The evaluation printer of `keras-prompt tune` (imports Keras, so the
CLI loads it only once a run starts)."""

import keras

from keras_prompt.cli.common import format_metrics


class PrintEvaluations(keras.callbacks.Callback):
    """Prints each evaluation of `Recipe.fit` (the checkpoint has put its
    metrics into the epoch's logs) after Keras' progress of the steps."""

    def __init__(self, steps, num_eval):
        super().__init__()
        self.steps, self.num_eval, self.line = steps, num_eval, None

    def on_epoch_end(self, epoch, logs=None):
        from keras_prompt.recipes import task_metrics

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
