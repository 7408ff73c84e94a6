"""What a task's steps need to train under any `tf.distribute` strategy.

Keras 3.15's TensorFlow trainer has two issues with strategies: it
all-reduces the first distributed batch only to learn its shapes (which
fails for boolean padding masks), and under `MultiWorkerMirroredStrategy`
it averages scalar logs along an axis they do not have. The prompt tasks
fix both in their own `_maybe_symbolic_build`, `train_step` and
`test_step` with the functions here; `keras_prompt.distribute.prepare_model`
installs the same fixes on other Keras models.
"""

import tensorflow as tf


def first_replica_symbolic_build(self, iterator=None, data_batch=None):
    """`_maybe_symbolic_build` that reads one replica's batch, no reduce.

    The prompt tasks use it as their own `_maybe_symbolic_build`, so a
    plain `fit` works under any strategy.

    Keras 3.15's TF trainer all-reduces (MEAN) the first distributed batch
    only to learn its shapes, which fails for boolean padding masks (as
    keras-hub preprocessors make them: "AddN ... bool") under
    MirroredStrategy and for any dict of inputs under
    MultiWorkerMirroredStrategy. Shapes and dtypes are all the symbolic
    build needs, so the first local replica's values serve.
    """
    if self._distribute_strategy is None:
        return
    strategy = self.distribute_strategy
    if iterator is not None:
        for _, _, it in iterator:
            batch = next(it)

            def local(value):
                if isinstance(value, tf.distribute.DistributedValues):
                    return strategy.experimental_local_results(value)[0]
                return value

            data_batch = tf.nest.map_structure(local, batch)
            break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def is_multi_worker(strategy):
    """Whether Keras takes its multi-worker reduction path for `strategy`."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    in_multi_worker_mode = getattr(
        strategy.extended, "_in_multi_worker_mode", None
    )
    return in_multi_worker_mode() if in_multi_worker_mode else True


def rank_one(logs):
    """`logs` with every scalar tensor reshaped to `(1,)`.

    Under `MultiWorkerMirroredStrategy` Keras 3.15 averages each replica's
    logs with `strategy.reduce("MEAN", value, axis=0)`, which rejects
    scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
    With shape `(1,)` the same call averages the replicas' values into a
    scalar, as intended.
    """

    def reshape(value):
        if tf.is_tensor(value) and value.shape.rank == 0:
            return tf.reshape(value, [1])
        return value

    return tf.nest.map_structure(reshape, logs)


def rank_one_logs(model, logs):
    """`logs` with scalars reshaped to `(1,)` (see `rank_one`) when `model`
    trains under a multi-worker strategy; unchanged otherwise. The prompt
    tasks apply it in their `train_step` / `test_step`."""
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or not is_multi_worker(strategy):
        return logs
    return rank_one(logs)


def with_rank_one_logs(step):
    """Wraps a train/test step so that its scalar logs have shape `(1,)`
    (see `rank_one`)."""

    def step_with_rank_one_logs(data):
        return rank_one(step(data))

    return step_with_rank_one_logs
