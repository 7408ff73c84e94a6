"""Resumable prompt tuning: a training checkpoint of only what trains.

`keras.callbacks.BackupAndRestore` saves every weight of the model, which
for a frozen XXL backbone means gigabytes per checkpoint although only a
prompt of a few hundred kilobytes changes. `PromptTrainingCheckpoint` saves
what a bit-identical continuation needs and nothing else: the prompt file
(prompt and head, through the task's own `save_prompts`), the optimizer's
variables (its step count included), the states of the model's random seed
generators (dropout in the frozen layers still draws during `fit`), the
epoch and step, and the state of callbacks it tracks (e.g. the best score
of a `BestPromptCheckpoint`). Its size depends on the prompt, never on the
backbone.

Each checkpoint is a folder `step-<step>` written whole into a temporary
folder and renamed into place, so a process killed at any moment leaves
either the previous checkpoint or the new one, never a half-written one.
"""

import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np

from keras_prompt.prompt_files import RUN_PROMPT_FILE
from keras_prompt.prompt_files import atomic_write_bytes
from keras_prompt.prompt_files import default_mode
from keras_prompt.validation import check_bool
from keras_prompt.validation import check_int

FORMAT = "keras_prompt.training_state"
FORMAT_VERSION = 1
STATE_FILE = "training_state.safetensors"
_FOLDER = re.compile(r"^step-(\d{9})$")


def seed_generators(model):
    """Every `keras.random.SeedGenerator` of `model`'s layers, in a fixed
    order (the layer order, then the order a layer made them)."""
    generators, seen = [], set()
    for layer in model._flatten_layers(include_self=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                generators.append(generator)
    return generators


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _folder_step(name):
    match = _FOLDER.match(name)
    return int(match.group(1)) if match else None


def checkpoint_groups(model):
    """The variables a training checkpoint holds besides the prompt file:
    `(group, variables)` pairs (the optimizer's, the dropout seeds' and a
    reparameterised or additive prompt's own parameters)."""
    groups = [
        ("optimizer", model.optimizer.variables),
        ("seeds", [g.state for g in seed_generators(model)]),
    ]
    parameters = model.backbone.prompt_embedding.trained_parameters()
    if parameters:
        groups.append(("reparameterization", parameters))
    return groups


class PromptTrainingCheckpoint(keras.callbacks.Callback):
    """Saves and restores prompt-tuning progress, prompt-sized.

    Every `save_freq` steps and at every epoch end the callback writes a
    checkpoint folder into `directory`: the prompt file of the model (its
    prompt and any head, written by `model.save_prompts` and read back by
    `model.load_prompts`, with all of their checks), the optimizer
    variables, the model's seed-generator states, the step and the epoch,
    and the state of the `track`ed callbacks (their `get_state()`, and the
    files of their `state_files()`). It keeps the newest checkpoint and the
    newest one taken at an epoch end.

    When `fit` begins and `directory` holds a checkpoint, the newest one
    taken at an epoch end is restored and `fit` continues from the next
    epoch (as `BackupAndRestore` does): with data that yields the same
    batches in every run, the final prompt is bit-identical to an
    uninterrupted run's. Checkpoints taken inside an epoch are restored by
    `keras_prompt.training.Recipe.fit(..., resume=True)` and
    `keras-prompt tune --resume`, which also put the data at that step.

    The size of a checkpoint is that of the prompt, the head and their
    optimizer slots, whatever the size of the frozen backbone
    (`benchmarks/checkpoint_size.py`): 106 KB for a 20-token prompt and
    head on all-MiniLM-L6-v2 with Adam (its weights: 91 MB), 3.3 MB for
    the paper's 100-token prompt on T5 1.1 XXL with its Adafactor (its
    weights: 44.5 GB).

    Args:
        directory: str, the folder of the checkpoints (created if
            missing).
        save_freq: `"epoch"`, or an int: also save every this many
            optimizer steps. Defaults to `"epoch"`.
        config: optional JSON-able dict describing the run (settings,
            data). It is stored, and a checkpoint whose config differs is
            refused rather than continued with other settings.
        track: optional list of callbacks with `get_state()` (a JSON-able
            dict) and `set_state(state)`, e.g. a `BestPromptCheckpoint`,
            whose state is saved and restored with the model's.
        delete_on_train_end: bool, delete `directory` when `fit` ends
            normally (as `BackupAndRestore`), so the next run starts
            afresh. Defaults to `True`.
        restore_on_train_begin: bool, restore the newest epoch-end
            checkpoint when `fit` begins. Defaults to `True`.

    Example:

    ```python
    checkpoint = keras_prompt.PromptTrainingCheckpoint("ckpt", save_freq=100)
    # Killed at any time? Run the same lines again: it goes on where the
    # last epoch ended.
    model.fit(x, y, epochs=10, callbacks=[checkpoint])
    ```
    """

    def __init__(
        self,
        directory,
        save_freq="epoch",
        config=None,
        track=None,
        delete_on_train_end=True,
        restore_on_train_begin=True,
    ):
        super().__init__()
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(
            directory
        ):
            raise TypeError(
                "`directory` must be a non-empty folder path. "
                f"Received: directory={directory!r}"
            )
        if save_freq != "epoch":
            save_freq = check_int("save_freq", save_freq, 1)
        if config is not None:
            if not isinstance(config, dict):
                raise TypeError(
                    "`config` must be a JSON-able dict or None. "
                    f"Received: config={config!r}"
                )
            try:
                config = json.loads(json.dumps(config, sort_keys=True))
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"`config` must be JSON-able ({error}). "
                    f"Received: config={config!r}"
                ) from None
        track = list(track or [])
        for callback in track:
            for name in ("get_state", "set_state"):
                if not callable(getattr(callback, name, None)):
                    raise TypeError(
                        "Every callback of `track` needs `get_state` and "
                        f"`set_state`. Received: {type(callback).__name__}"
                    )
        check_bool("delete_on_train_end", delete_on_train_end)
        check_bool("restore_on_train_begin", restore_on_train_begin)
        self.directory = os.fspath(directory)
        self.save_freq = save_freq
        self.config = config
        self.track = track
        self.delete_on_train_end = delete_on_train_end
        self.restore_on_train_begin = restore_on_train_begin
        self.restored = None
        self._epoch = 0
        self._last_saved = None

    # -- finding checkpoints -------------------------------------------------
    def checkpoints(self, epoch_end_only=False):
        """Complete checkpoint folders in `directory`, newest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            step = _folder_step(name)
            folder = os.path.join(self.directory, name)
            if step is None or not all(
                os.path.isfile(os.path.join(folder, f))
                for f in (RUN_PROMPT_FILE, STATE_FILE)
            ):
                continue
            if epoch_end_only and not self.read_state(folder)[1]["epoch_end"]:
                continue
            found.append((step, folder))
        return [folder for _, folder in sorted(found, reverse=True)]

    def latest(self, epoch_end_only=False):
        """The newest checkpoint folder, or `None`."""
        found = self.checkpoints(epoch_end_only)
        return found[0] if found else None

    # -- reading -------------------------------------------------------------
    def read_state(self, folder):
        """`(tensors, state)` of the checkpoint `folder`, unrestored; a
        `ValueError` naming the file when it is not a readable one."""
        from safetensors import SafetensorError
        from safetensors import safe_open

        path = os.path.join(folder, STATE_FILE)
        try:
            with safe_open(path, framework="numpy") as f:
                header = f.metadata() or {}
                if header.get("format") != FORMAT:
                    raise ValueError("no training-state header")
                version = int(header.get("format_version", "0"))
                if version != FORMAT_VERSION:
                    raise ValueError(f"format version {version}")
                state = json.loads(header["state"])
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            for key in ("step", "epoch", "epoch_end", "optimizer", "seeds"):
                if key not in state:
                    raise ValueError(f"no {key!r} field")
        except (
            SafetensorError,
            OSError,
            KeyError,
            TypeError,
            ValueError,
        ) as error:
            raise ValueError(
                f"Not a keras_prompt training checkpoint: path={path!r} "
                f"({error}); delete its folder to resume from an older "
                "checkpoint, or start afresh"
            ) from None
        return tensors, state

    def restore(self, model=None, path=None, epoch_end_only=False):
        """Restores a checkpoint into `model` (default: the callback's).

        Everything is checked before anything is assigned: the config, the
        prompt file (by `model.load_prompts`), the optimizer variables and
        the seed generators must all match the model.

        Args:
            model: the model, defaults to the one `fit` set.
            path: optional checkpoint folder; defaults to the newest in
                `directory`.
            epoch_end_only: bool, only consider checkpoints taken at an
                epoch end.

        Returns:
            The checkpoint's state: a dict with `"step"` (optimizer steps
            taken), `"epoch"` (epochs completed, or the epoch it was taken
            in), `"epoch_end"`, `"batch"` and `"callbacks"`; `None` when
            there is no checkpoint.
        """
        model = self.model if model is None else model
        folder = path or self.latest(epoch_end_only)
        if folder is None:
            return None
        tensors, state = self.read_state(folder)
        state_path = os.path.join(folder, STATE_FILE)
        if self.config is not None and state.get("config") != self.config:
            stored = _flatten(state.get("config") or {})
            wanted = _flatten(self.config)
            keys = sorted(
                k
                for k in set(stored) | set(wanted)
                if stored.get(k) != wanted.get(k)
            )
            changes = ", ".join(
                f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in keys
            )
            raise ValueError(
                f"The training checkpoint path={folder!r} was written by a "
                f"run with other settings ({changes}); continue it with "
                "its own settings or start afresh."
            )
        optimizer = model.optimizer
        if optimizer is None:
            raise ValueError(
                "Compile the model before restoring a training checkpoint. "
                f"Received: path={folder!r}"
            )
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        pairs = []
        for group, variables in checkpoint_groups(model):
            names = state.get(group, [])
            if len(names) != len(variables):
                raise ValueError(
                    f"The training checkpoint {state_path!r} holds "
                    f"{len(names)} {group} variables; the model has "
                    f"{len(variables)}. It was written for another model "
                    "or optimizer."
                )
            for i, variable in enumerate(variables):
                key = f"{group}/{i:05d}"
                value = tensors.get(key)
                if value is None or tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"The tensor {key!r} ({names[i]}) of training "
                        f"checkpoint {state_path!r} does not match the "
                        f"model's {variable.path!r} of shape "
                        f"{tuple(variable.shape)}."
                    )
                if np.issubdtype(value.dtype, np.floating) and not np.all(
                    np.isfinite(value)
                ):
                    raise ValueError(
                        f"The tensor {key!r} of training checkpoint "
                        f"{state_path!r} holds non-finite values."
                    )
                pairs.append((variable, value))
        callback_states = state.get("callbacks", [])
        if len(callback_states) != len(self.track):
            raise ValueError(
                f"The training checkpoint {state_path!r} holds the state of "
                f"{len(callback_states)} callbacks; {len(self.track)} are "
                "tracked."
            )
        # The prompt file's head and prompt; a reparameterised prompt's
        # parameters then come from the "reparameterization" group.
        prompt_path = os.path.join(folder, RUN_PROMPT_FILE)
        model.load_prompt_state(
            *model.read_prompt_file(prompt_path), prompt_path
        )
        for variable, value in pairs:
            variable.assign(value.astype(variable.dtype))
        for i, (callback, saved) in enumerate(zip(self.track, callback_states)):
            callback.set_state(saved)
            for j, target in enumerate(_state_files(callback)):
                source = os.path.join(folder, f"track-{i}-{j}")
                if os.path.isfile(source):
                    with open(source, "rb") as f:
                        atomic_write_bytes(target, f.read())
                elif os.path.exists(target):
                    os.remove(target)
        self.restored = state
        self._last_saved = state["step"]
        return state

    # -- writing -------------------------------------------------------------
    def save(self, epoch_end=False, batch=None):
        """Writes a checkpoint of the model now; returns its folder."""
        from safetensors.numpy import save

        model = self.model
        step = _step(model)
        os.makedirs(self.directory, exist_ok=True)
        tensors = {}
        names = {}
        for group, variables in checkpoint_groups(model):
            names[group] = []
            for i, variable in enumerate(variables):
                # (`np.ascontiguousarray` would make scalars 1-D.)
                tensors[f"{group}/{i:05d}"] = np.array(
                    _numpy(variable), order="C"
                )
                names[group].append(variable.path)
        state = {
            "step": step,
            "epoch": self._epoch + 1 if epoch_end else self._epoch,
            "epoch_end": bool(epoch_end),
            "batch": batch,
            "config": self.config,
            "callbacks": [c.get_state() for c in self.track],
            **names,
        }
        header = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "state": json.dumps(state, sort_keys=True),
        }
        staging = tempfile.mkdtemp(
            dir=self.directory, prefix=f".step-{step:09d}.tmp-"
        )
        try:
            model.save_prompts(os.path.join(staging, RUN_PROMPT_FILE))
            atomic_write_bytes(
                os.path.join(staging, STATE_FILE), save(tensors, header)
            )
            for i, callback in enumerate(self.track):
                for j, source in enumerate(_state_files(callback)):
                    if os.path.isfile(source):
                        shutil.copyfile(
                            source, os.path.join(staging, f"track-{i}-{j}")
                        )
            os.chmod(staging, default_mode(directory=True))
            for name in os.listdir(staging):
                os.chmod(os.path.join(staging, name), default_mode())
            folder = os.path.join(self.directory, f"step-{step:09d}")
            if os.path.exists(folder):
                # The same step again (an epoch end after a step save):
                # move the old one aside first, then replace it.
                old = tempfile.mkdtemp(dir=self.directory, prefix=".old-")
                os.rename(folder, os.path.join(old, "x"))
                os.rename(staging, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, folder)
            staging = None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        self._last_saved = step
        self._prune()
        return folder

    def _prune(self):
        """Keeps the newest checkpoint and the newest epoch-end one; removes
        leftovers of interrupted writes."""
        keep = {self.latest(), self.latest(epoch_end_only=True)}
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            stale = name.startswith((".step-", ".old-"))
            if (stale or _folder_step(name) is not None) and path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    # -- Keras hooks ---------------------------------------------------------
    def on_train_begin(self, logs=None):
        if self.restore_on_train_begin and self.restored is None:
            state = self.restore(epoch_end_only=True)
            if state is not None:
                self.model._initial_epoch = state["epoch"]
        self._last_saved = _step(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        step = _step(self.model)
        steps = (self.params or {}).get("steps")
        if steps is not None and batch + 1 >= steps:
            return  # The epoch end saves this step, after evaluations.
        if step - self._last_saved >= self.save_freq:
            self.save(epoch_end=False, batch=batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch_end=True)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None
        self.restored = None
        if self.delete_on_train_end:
            shutil.rmtree(self.directory, ignore_errors=True)


def _flatten(config, prefix=""):
    """`{"a": {"b": 1}}` as `{"a.b": 1}`, to name what differs."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _state_files(callback):
    files = getattr(callback, "state_files", None)
    return list(files()) if callable(files) else []


def _step(model):
    return int(_numpy(model.optimizer.iterations))
