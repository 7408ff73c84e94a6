"""Frozen prefixes computed once per training example.

A late prompt (`PromptConfig(start_layer=k)`) leaves the layers below `k`
frozen and fed by the text alone: without dropout there, what they compute
for an example (its *frozen prefix*, `keras_prompt.layers.frozen_prefix`) is the
same in every epoch. `FrozenPrefixCache` computes it once per training
example, before the first step, in length-sorted inference batches, and
keeps each example's real positions (in the backbone's compute dtype:
bfloat16 where the frozen weights are). Every training batch then carries
its examples' frozen prefixes, and a step runs only the layers from `k` on:
the bottom `k` layers leave every step, not only those after the first
epoch.

The cache lives in memory when it fits in `memory_limit` bytes, else in a
file under the run folder (`CACHE_FILE`), removed when the run ends and
at the start of the next one (a file left by a killed run is never read:
the cache is computed anew, so a resumed run takes the same steps).

`plan` decides whether a run uses it: `Recipe(frozen_prefix_cache=...)`,
`"auto"` (the default) when the prompt enters late, the layers below it
run without dropout, the run trains on a task's example split (the
classifier's token batches, or a text-to-text task's pairs, then packed
once as the model packs them) and makes more than one pass over it;
`True` asks for it (one `ValueError` naming what stands in the way),
`False` turns it off.
"""

import contextlib
import dataclasses
import os
import time

import keras
import numpy as np

from keras_prompt.data.batching import eval_batches
from keras_prompt.data.batching import padded_length
from keras_prompt.training.pipeline import is_examples

#: The cache file of a run whose cache does not fit in memory.
CACHE_FILE = "frozen_prefix.cache"

#: `Recipe.frozen_prefix_cache`'s values.
SETTINGS = ("auto", True, False)

#: Frozen prefixes larger than this many bytes go to a file.
MEMORY_LIMIT = 2 * 1024**3


def check_setting(value):
    """Raises unless `value` is one of `SETTINGS`."""
    if not (value is True or value is False or value == "auto"):
        raise ValueError(
            "`frozen_prefix_cache` must be 'auto', True or False. "
            f"Received: frozen_prefix_cache={value!r}"
        )
    return value


@dataclasses.dataclass
class Plan:
    """Whether a run caches frozen prefixes, and why (`reason`, for the
    run record)."""

    use: bool
    reason: str


def plan(setting, model, split, steps, batch_size):
    """Whether a run of `steps` x `batch_size` on `split` (an example
    split of `keras_prompt.training.splits`) caches `model`'s frozen
    prefixes (see the module docstring).

    Returns:
        A `Plan`. A `setting` of `True` that cannot be honoured is a
        `ValueError` naming the obstacle, before any compute.
    """
    check_setting(setting)
    backbone = getattr(model, "backbone", None)
    prefix = getattr(backbone, "frozen_prefix", None)
    obstacle = None
    if prefix is None:
        obstacle = (
            "the prompt enters with the tokens (start_layer=0): no "
            "frozen layers run below it"
        )
    elif not is_examples(split):
        obstacle = (
            "the training data come as `train_data` pairs or a dataset; "
            "the cache serves a task's example split"
        )
    else:
        dropout = prefix.active_dropout()
        if dropout:
            obstacle = (
                f"{len(dropout)} dropout layer(s) below layer "
                f"{prefix.start_layer} drop in training (e.g. "
                f"{dropout[0].name!r}, rate {dropout[0].rate}): their "
                "outputs change from epoch to epoch. Set "
                "`frozen_dropout=0.0` (tune: --frozen-dropout 0)"
            )
    if setting is False:
        return Plan(False, "turned off (frozen_prefix_cache=False)")
    if obstacle is not None:
        if setting is True:
            raise ValueError(
                f"`frozen_prefix_cache=True` cannot be honoured: {obstacle}. "
                "Received: frozen_prefix_cache=True"
            )
        return Plan(False, obstacle)
    passes = steps * batch_size / max(len(split), 1)
    if setting == "auto" and passes <= 1:
        return Plan(
            False,
            f"one pass over the {len(split)} examples ({passes:.2f}): "
            "nothing to reuse",
        )
    return Plan(
        True,
        f"{passes:.1f} passes over {len(split)} examples, prompt entering "
        f"at layer {prefix.start_layer}",
    )


class FrozenPrefixCache:
    """The frozen prefixes of a run's training examples, by index.

    Args:
        model: the task model (its `backbone.frozen_prefix` computes them).
        features: dict of `(N, length)` token arrays (`tokenize`, or a
            text-to-text task's packed pairs), right-padded; the frozen
            prefix's inputs among them.
        folder: the run folder, for a cache that does not fit in memory.
        batch_size: int, examples per inference batch.
        memory_limit: int, bytes kept in memory at most; `None`:
            `MEMORY_LIMIT`.
        verbose: bool, show a progress bar while computing.
    """

    def __init__(
        self,
        model,
        features,
        folder=None,
        batch_size=64,
        memory_limit=None,
        verbose=False,
    ):
        if memory_limit is None:
            memory_limit = MEMORY_LIMIT
        prefix = model.backbone.frozen_prefix
        mask = np.asarray(features[prefix.mask_name])
        self.lengths = mask.astype("int64").sum(axis=-1)
        self.sequence_length = int(mask.shape[1])
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        dim = int(model.backbone.hidden_dim)
        dtype = keras.backend.standardize_dtype(
            model.backbone.dtype_policy.compute_dtype
        )
        self.dtype = dtype
        array_dtype = _numpy_dtype(dtype)
        rows = int(self.offsets[-1])
        self.nbytes = rows * dim * np.dtype(array_dtype).itemsize
        self.path = None
        if self.nbytes > memory_limit:
            if folder is None:
                raise ValueError(
                    f"The frozen prefixes take {self.nbytes} bytes, over "
                    f"memory_limit={memory_limit}, and no run folder was "
                    "given for a cache file. Received: folder=None"
                )
            self.path = os.path.join(os.fspath(folder), CACHE_FILE)
            self.rows = np.lib.format.open_memmap(
                self.path,
                mode="w+",
                dtype=array_dtype,
                shape=(rows, dim),
            )
        else:
            self.rows = np.empty((rows, dim), array_dtype)
        start = time.perf_counter()
        self._compute(prefix, features, batch_size, verbose)
        self.seconds = time.perf_counter() - start

    @property
    def width(self):
        return int(self.rows.shape[1])

    @property
    def storage(self):
        return "memory" if self.path is None else "file"

    def _compute(self, prefix, features, batch_size, verbose):
        model = prefix.model_below()
        sequence_length = self.sequence_length
        batches = eval_batches(self.lengths, batch_size)
        bar = keras.utils.Progbar(len(batches)) if verbose else None
        for done, indices in enumerate(batches, 1):
            size = padded_length(self.lengths[indices].max(), sequence_length)
            inputs = {
                name: features[name][indices, :size]
                for name in prefix.names_below
            }
            states = keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
            for row, index in zip(states, indices):
                start, stop = self.offsets[index], self.offsets[index + 1]
                self.rows[start:stop] = row[: stop - start]
            if bar is not None:
                bar.update(done)
        self._check_finite()

    def _check_finite(self):
        for start in range(0, len(self.rows), 1 << 16):
            block = np.asarray(self.rows[start : start + (1 << 16)], "float32")
            if not np.isfinite(block).all():
                raise ValueError(
                    "The frozen layers below the prompt gave non-finite "
                    "hidden states for some training examples; the cache "
                    "is not used. Check the backbone's weights and dtype."
                )

    def gather(self, indices, size=None):
        """The frozen prefixes of examples `indices`, zero-padded to
        `size` positions (`None`: the sequences' full length):
        `(len(indices), size, hidden_dim)`."""
        size = self.sequence_length if size is None else size
        batch = np.zeros(
            (len(indices), size, self.rows.shape[1]), self.rows.dtype
        )
        for row, index in enumerate(indices):
            start = self.offsets[index]
            stop = min(self.offsets[index + 1], start + size)
            batch[row, : stop - start] = self.rows[start:stop]
        return batch

    def record(self, plan_):
        """The run record's entry for this cache."""
        return {
            "used": True,
            "reason": plan_.reason,
            "storage": self.storage,
            "bytes": int(self.nbytes),
            "dtype": self.dtype,
            "examples": int(len(self.lengths)),
            "seconds": float(self.seconds),
        }

    def close(self):
        """Drops the rows and removes the cache file, if any."""
        self.rows = None  # Closes a memory map before its file goes.
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


def _numpy_dtype(dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def remove_cache_file(folder):
    """Removes a cache file left in `folder` by an earlier (killed) run."""
    path = os.path.join(os.fspath(folder), CACHE_FILE)
    if os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def cache_for_run(plan_, model, features, folder, verbose=False):
    """The run's `FrozenPrefixCache` (or `None` when `plan_` says no),
    removed when the block ends, however it ends."""
    if folder is not None:
        remove_cache_file(folder)
    if not plan_.use:
        yield None
        return
    cache = FrozenPrefixCache(model, features, folder, verbose=verbose)
    try:
        yield cache
    finally:
        cache.close()
