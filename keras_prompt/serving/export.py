"""TF SavedModel export: raw strings in, strings or probabilities out.

`export_saved_model(model, path)` writes a SavedModel whose serving
signature takes raw strings (and task names for a `PromptBank`), tokenises
them inside the graph with the model's tensorflow-text tokenizer, runs the
frozen model with its prompts and returns generated strings (seq2seq and
causal models) or class probabilities (classifiers). It loads with
`tf.saved_model.load` (after `import tensorflow_text`) and serves with TF
Serving; see `docs/serving.md`.

Prompt-only updates: the prompts (and classifier heads) and the task-name
table are read from two small asset files, `assets/keras_prompt_state.tsv`
(the task model's `state_variables()`, one line each: its name and its
`tf.io.serialize_tensor` bytes in URL-safe base64, since a lookup table
initialised from an asset file, the one asset reader that survives
`ExportArchive`, reads text lines) and `assets/keras_prompt_tasks.tsv`,
not from the graph. The state file
fills the prompt variables on the first request (a flag variable guards
the copy); the task table is a lookup table initialised from its file at
load time. `update_exported_prompts` writes a new version folder in which
everything else (graph, frozen weights) is hard-linked from the old one
and only those two files are new, so the backbone is never re-exported or
re-traced. This holds while the bank's shape (capacity, prompt length)
stays; a bank that grew must be exported again.

Batch size: keras-hub's generation loop needs a static batch size inside
the graph, so generation runs on fixed chunks of `batch_size`: the
signature takes any number of inputs, pads them to a multiple of
`batch_size`, generates chunk by chunk and slices the padding off.
Classifiers take any batch size directly.
"""

import contextlib
import json
import os
import shutil

import numpy as np

from keras_prompt.prompt_files import default_mode
from keras_prompt.run_folders import FolderLock
from keras_prompt.run_folders import link_or_copy
from keras_prompt.run_folders import make_staging
from keras_prompt.run_folders import publish_folder
from keras_prompt.run_folders import remove_leftovers
from keras_prompt.run_folders import target_path
from keras_prompt.serving.serving_graph import STATE_ASSET
from keras_prompt.serving.serving_graph import TASKS_ASSET
from keras_prompt.serving.serving_graph import ServingGraph
from keras_prompt.validation import check_bool
from keras_prompt.validation import check_int
from keras_prompt.validation import require_tensorflow
from keras_prompt.version import __version__

FORMAT = "keras_prompt.saved_model"
FORMAT_VERSION = 2
MANIFEST = os.path.join("assets.extra", "keras_prompt.json")


# -- what is exported ---------------------------------------------------------
def _resolve(obj):
    """What to export: the task model, its state variables, the bank's
    slots by task name and an ensemble's member slots."""
    from keras_prompt.frozen_backbone import FrozenBackbone
    from keras_prompt.serving.ensemble import PromptEnsemble
    from keras_prompt.serving.prompt_bank import PromptBank
    from keras_prompt.tasks.prompt_task import PromptTaskMixin

    members = None
    if isinstance(obj, PromptEnsemble):
        members = [int(i) for i in obj.member_ids]
        obj = obj.bank
    if isinstance(obj, PromptBank):
        return {
            "model": obj.model,
            "variables": obj.state_variables(),
            # An ensemble's inputs name no task: its members are baked in.
            "slots": obj.slots if members is None else None,
            "members": members,
        }
    if isinstance(obj, PromptTaskMixin) and isinstance(
        getattr(obj, "backbone", None), FrozenBackbone
    ):
        if obj.backbone.num_prompts > 1:
            raise ValueError(
                "This model holds a bank of "
                f"{obj.backbone.num_prompts} prompts without task names; "
                "export a `keras_prompt.serving.PromptBank` (tasks by name) "
                "or a `PromptEnsemble` instead."
            )
        return {
            "model": obj,
            "variables": obj.state_variables(),
            "slots": None,
            "members": None,
        }
    raise TypeError(
        "`model` must be a keras_prompt task model (PromptSeq2SeqLM, "
        "PromptCausalLM, PromptClassifier), a PromptBank or a "
        f"PromptEnsemble. Received: model={type(obj).__name__}"
    )


def _state_lines(variables):
    """`name<TAB>base64(tf.io.serialize_tensor(value))` per variable."""
    import tensorflow as tf

    lines = []
    for key, variable in variables.items():
        value = np.asarray(_to_numpy(variable), dtype="float32")
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"The prompt state {key!r} holds non-finite values (NaN or "
                "Inf); a diverged prompt is never exported or served."
            )
        encoded = tf.io.encode_base64(tf.io.serialize_tensor(value))
        lines.append(f"{key}\t{encoded.numpy().decode('ascii')}\n")
    return "".join(lines)


def _task_lines(slots):
    """`name<TAB>slot` per task name of `slots` (task name -> slot)."""
    # First a sentinel row (empty name, slot -1): a table file may not be
    # empty, and a bank may be exported before its first task.
    rows = [("", -1)] + list((slots or {}).items())
    return "".join(f"{name}\t{slot}\n" for name, slot in rows)


def _to_numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable)


def _manifest(spec, batch_size, max_length, jit_compile, output):
    model = spec["model"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "keras_prompt_version": __version__,
        "task_class": type(model).__name__,
        "kind": model.backbone.adapter.kind,
        "output": output,
        "batch_size": batch_size,
        "max_length": max_length,
        "jit_compile": jit_compile,
        "state": {
            key: list(variable.shape)
            for key, variable in spec["variables"].items()
        },
        "tasks": spec["slots"],
        "ensemble_members": spec["members"],
        "prompt_fingerprint": model.backbone.prompt_metadata()[
            "embedding_fingerprint"
        ],
        "prompt_form": _prompt_form(model),
    }


def _prompt_form(model):
    """How the exported graph reads its prompt state: plain vectors, or a
    reparameterised or additive prompt's own parameters (which state of
    another form would silently misread)."""
    config = model.backbone.prompt_config
    return {
        "deep_mode": config.deep_mode,
        "reparameterization": config.reparameterization,
    }


@contextlib.contextmanager
def _staged_export(path, overwrite):
    """Yields `(path, staging)`: the absolute export path and a folder to
    write the export into, which is published at `path` in one atomic
    step when the block ends (`keras_prompt.run_folders`; a kill leaves
    the whole old folder or the whole new one). Holds the lock of `path`
    throughout (a second writer is refused at once) and first removes what
    killed exports left beside it."""
    path = target_path(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with FolderLock(path, "The export path", nested=True):
        remove_leftovers(path)
        if os.path.exists(path) and not overwrite:
            raise ValueError(
                f"The export path already exists; pass `overwrite=True` or "
                f"write a new version folder. Received: path={path!r}"
            )
        # An ordinary folder mode: TF Serving may run as another user.
        staging = make_staging(path)
        try:
            os.chmod(staging, default_mode(directory=True))
            yield path, staging
            publish_folder(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _write_archive(
    spec, folder, assets, batch_size, max_length, jit_compile, verbose
):
    """Writes the SavedModel of `spec` into `folder` (the asset files the
    serving graph reads are written into `assets` first)."""
    import keras
    import tensorflow as tf

    with open(os.path.join(assets, STATE_ASSET), "w") as f:
        f.write(_state_lines(spec["variables"]))
    with open(os.path.join(assets, TASKS_ASSET), "w") as f:
        f.write(_task_lines(spec["slots"]))
    serving = ServingGraph(spec, assets, batch_size, max_length, jit_compile)
    strings = tf.TensorSpec([None], tf.string)
    archive = keras.export.ExportArchive()
    archive.track(spec["model"])
    archive.track(serving.holder)
    if spec["slots"] is None:
        archive.add_endpoint(
            "serve",
            lambda inputs: serving.serve(inputs),
            input_signature=[strings],
        )
    else:
        archive.add_endpoint(
            "serve",
            lambda inputs, tasks: serving.serve(inputs, tasks),
            input_signature=[strings, strings],
        )
    # The traced graph copied the prompt variables' current values into
    # the checkpoint; the state asset is what serving reads.
    archive.write_out(folder, verbose=verbose)
    os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)


def export_saved_model(
    model,
    path,
    batch_size=8,
    max_length=None,
    jit_compile=False,
    overwrite=False,
    verbose=False,
):
    """Exports a prompt-tuned model, bank or ensemble as a TF SavedModel.

    The `serve` signature (also `serving_default`) takes:

    - `inputs`: 1-D `tf.string`, raw input texts (any number);
    - `tasks`: 1-D `tf.string`, one task name per input (banks only; an
      unknown name fails the request with a message listing the known
      tasks);

    and returns `{"outputs": strings}` for seq2seq and causal models
    (causal outputs include the input text, as `generate` does), or
    `{"probabilities": (N, num_classes)}` for classifiers. Ensembles also
    return `"member_outputs"` / `"member_probabilities"`. Reloaded with
    `tf.saved_model.load` (after `import tensorflow_text`), outputs equal
    the in-memory model's.

    The folder is written into a staging sibling and published in one
    atomic step, replacing an existing one whole
    (`keras_prompt.run_folders`), by one writer at a time: while another
    process exports to `path`, a `FolderLockedError` (an `OSError`) naming
    it is raised at once. Prompts and the task table live in asset files, so
    `update_exported_prompts` can publish new prompts without
    re-exporting the backbone.

    Args:
        model: a `PromptSeq2SeqLM`, `PromptCausalLM` or `PromptClassifier`
            with a single prompt, a `keras_prompt.serving.PromptBank`, or a
            `keras_prompt.serving.PromptEnsemble`. Its preprocessor is
            exported with it.
        path: the SavedModel folder to write, e.g. `"models/sst2/1"` (TF
            Serving wants a numbered version folder).
        batch_size: int, the fixed batch of the generation graph: inputs
            are generated in chunks of this size (padded, then sliced).
            Unused by classifiers. Defaults to `8`.
        max_length: int, generated tokens (seq2seq) or total tokens
            (causal). Defaults to the preprocessor's sequence length.
        jit_compile: bool, compile the decoding loop with XLA (several
            times faster on CPU, as in-memory `generate`). TF Serving then
            needs `--xla_cpu_compilation_enabled=true` on CPU. Defaults to
            `False`, which serves everywhere.
        overwrite: bool, replace an existing folder at `path`.
        verbose: bool, print the signatures.

    Returns:
        The absolute path written.

    Example:

    ```python
    bank = keras_prompt.serving.PromptBank(model)
    bank.add_task("sentiment", "sst2.prompt.safetensors")
    keras_prompt.export_saved_model(bank, "models/multitask/1")

    import tensorflow as tf
    import tensorflow_text  # noqa: F401, registers the tokenizer ops

    served = tf.saved_model.load("models/multitask/1")
    served.serve(
        inputs=tf.constant(["a gripping film"]),
        tasks=tf.constant(["sentiment"]),
    )["outputs"]
    ```
    """
    require_tensorflow(
        "SavedModel export",
        "Prompt files saved on any backend load on TensorFlow for export.",
    )
    import tensorflow_text  # noqa: F401

    spec = _resolve(model)
    batch_size = check_int("batch_size", batch_size, 1)
    check_bool("jit_compile", jit_compile)
    if max_length is not None:
        max_length = check_int("max_length", max_length, 1)
    if spec["model"].preprocessor is None:
        raise ValueError(
            "Exporting needs the model's preprocessor (tokenisation runs in "
            "the graph). Received a model with preprocessor=None."
        )
    if max_length is not None:
        spec["model"].check_generation_length(max_length)
    output = "outputs" if spec["model"].generates_text else "probabilities"
    with _staged_export(path, overwrite) as (path, tmp):
        # The asset files the graph reads, copied into the export.
        assets = make_staging(path)
        try:
            _write_archive(
                spec, tmp, assets, batch_size, max_length, jit_compile, verbose
            )
            with open(os.path.join(tmp, MANIFEST), "w") as f:
                json.dump(
                    _manifest(
                        spec, batch_size, max_length, jit_compile, output
                    ),
                    f,
                    indent=2,
                )
        finally:
            shutil.rmtree(assets, ignore_errors=True)
    return path


def read_manifest(path):
    """The `keras_prompt` manifest of an exported folder (a dict)."""
    manifest = os.path.join(os.fspath(path), MANIFEST)
    if not os.path.isfile(manifest):
        raise ValueError(
            "Not a SavedModel exported by keras_prompt (no "
            f"{MANIFEST}): path={os.fspath(path)!r}"
        )
    with open(manifest) as f:
        return json.load(f)


def update_exported_prompts(model, export_dir, new_dir, overwrite=False):
    """Publishes new prompts (and task table) as a new SavedModel version,
    without re-exporting the backbone.

    Everything of `export_dir` but the state and task assets is hard-linked
    (copied where links are impossible) into `new_dir`; those two files are
    written from `model`. Nothing is traced and no TensorFlow graph is
    built. `model` must have the exported shape: same kind, same backbone,
    same bank capacity and prompt length (a bank that grew past its
    capacity must be exported again); an ensemble keeps its member slots.

    Args:
        model: the updated task model, `PromptBank` or `PromptEnsemble`.
        export_dir: a folder written by `export_saved_model`.
        new_dir: the new version folder, e.g. `"models/multitask/2"`.
        overwrite: bool, replace an existing `new_dir`.

    Returns:
        The absolute path of `new_dir`.

    Example:

    ```python
    bank.replace_task("sentiment", "sst2_v2.prompt.safetensors")
    bank.add_task("nli", "rte.prompt.safetensors")  # within capacity
    keras_prompt.serving.update_exported_prompts(
        bank, "models/multitask/1", "models/multitask/2"
    )
    ```
    """
    manifest = read_manifest(export_dir)
    export_dir = os.path.abspath(os.fspath(export_dir))
    if os.path.abspath(os.fspath(new_dir)) == export_dir:
        raise ValueError(
            "`new_dir` must differ from `export_dir` (serve it as a new "
            f"version). Received: new_dir={os.fspath(new_dir)!r}"
        )
    spec = _resolve(model)
    shapes = {k: list(v.shape) for k, v in spec["variables"].items()}
    fingerprint = spec["model"].backbone.prompt_metadata()[
        "embedding_fingerprint"
    ]
    problems = []
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"export format {manifest.get('format_version')} vs "
            f"{FORMAT_VERSION} written by this keras_prompt"
        )
    if type(spec["model"]).__name__ != manifest["task_class"]:
        problems.append(
            f"task class {type(spec['model']).__name__} vs exported "
            f"{manifest['task_class']}"
        )
    if fingerprint != manifest["prompt_fingerprint"]:
        problems.append("another frozen backbone (embedding fingerprint)")
    if shapes != manifest["state"]:
        problems.append(f"prompt state shapes {shapes} vs {manifest['state']}")
    # Exports that predate the record held plain prompts.
    exported_form = manifest.get(
        "prompt_form", {"deep_mode": "replace", "reparameterization": None}
    )
    if _prompt_form(spec["model"]) != exported_form:
        problems.append(
            f"prompt form {_prompt_form(spec['model'])} vs exported "
            f"{exported_form}"
        )
    if (spec["slots"] is None) != (manifest["tasks"] is None):
        problems.append("a bank and a single-prompt model")
    if spec["members"] != manifest["ensemble_members"]:
        problems.append(
            f"ensemble member slots {spec['members']} vs "
            f"{manifest['ensemble_members']}"
        )
    if problems:
        raise ValueError(
            "`model` does not fit the exported graph at "
            f"export_dir={os.fspath(export_dir)!r}: {'; '.join(problems)}. "
            "Export it again with `export_saved_model`."
        )
    replaced = {
        os.path.join("assets", STATE_ASSET),
        os.path.join("assets", TASKS_ASSET),
        MANIFEST,
    }
    with _staged_export(new_dir, overwrite) as (path, tmp):
        for root, _, files in os.walk(export_dir):
            relative_root = os.path.relpath(root, export_dir)
            os.makedirs(os.path.join(tmp, relative_root), exist_ok=True)
            for name in files:
                relative = os.path.normpath(os.path.join(relative_root, name))
                if relative in replaced:
                    continue
                link_or_copy(
                    os.path.join(root, name), os.path.join(tmp, relative)
                )
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets", STATE_ASSET), "w") as f:
            f.write(_state_lines(spec["variables"]))
        if spec["slots"] is not None:
            with open(os.path.join(tmp, "assets", TASKS_ASSET), "w") as f:
                f.write(_task_lines(spec["slots"]))
        manifest["tasks"] = spec["slots"]
        manifest["keras_prompt_version"] = __version__
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
    return path
