"""`keras-prompt export`: a tuned prompt as a TF Serving model.

Rebuilds the run's model as `keras-prompt predict` does and writes it with
`keras_prompt.export_saved_model` into OUT_DIR, a TF Serving version folder
such as `models/sst2/1`: a SavedModel whose `serve` signature (also
`serving_default`) takes raw strings (`inputs`), tokenizes them in the
graph and returns class probabilities (`probabilities`, classifiers) or
generated strings (`outputs`, text-to-text models). The prompt (and head)
sit in a small asset file, so `keras_prompt.serving.update_exported_prompts`
can publish a new prompt without exporting the backbone again. Load it with
`tf.saved_model.load` after `import tensorflow_text`, or serve it with TF
Serving (docs/serving.md).

An existing OUT_DIR is refused unless --overwrite is given; the folder is
written into a staging sibling and published in one atomic step (a kill
leaves the whole old folder or the whole new one), by one export at a time
(a second is refused at once, naming the first's pid).

Examples:

  keras-prompt export runs/glue/sst2 models/sst2/1
  keras-prompt export runs/glue/sst2 models/sst2/1 --overwrite
  keras-prompt export runs/glue/rte models/rte/1 --batch-size 16
  tensorflow_model_server --rest_api_port=8501 --model_name=sst2 \\
      --model_base_path="$PWD/models/sst2"
"""

import os
import sys

from keras_prompt.cli import CliError
from keras_prompt.cli.common import add_run_command
from keras_prompt.cli.common import check_int_arg
from keras_prompt.cli.common import check_output
from keras_prompt.cli.common import load_run_model
from keras_prompt.cli.common import locked_output
from keras_prompt.cli.common import one_line_errors
from keras_prompt.cli.common import read_run

DEFAULT_BATCH_SIZE = 8


def add_parser(subparsers):
    parser = add_run_command(
        subparsers,
        "export",
        "export a tuned prompt as a TF Serving SavedModel",
        __doc__,
    )
    add = parser.add_argument
    add(
        "out_dir",
        metavar="OUT_DIR",
        help="the SavedModel folder to write: a numbered version folder for "
        "TF Serving, e.g. models/sst2/1",
    )
    add(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT_DIR (refused otherwise)",
    )
    add(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="text-to-text models: the fixed batch of the generation graph "
        "(requests of any size are generated in chunks of it); classifiers "
        "take any batch (default: %(default)s)",
    )
    add(
        "--max-length",
        type=int,
        help="text-to-text models: the most tokens generated (default: the "
        "run's target length)",
    )
    add(
        "--preset",
        help="the preset the prompt was trained on (default: the run's, "
        "from run.json)",
    )
    parser.set_defaults(run=run)


def check_out_dir(args):
    """Raises unless OUT_DIR may be written: new (or --overwrite) and in a
    writable place."""
    out_dir = args.out_dir
    if os.path.exists(out_dir) and not args.overwrite:
        name = os.path.basename(os.path.normpath(out_dir))
        newer = (
            f", or export a new version, e.g. "
            f"{os.path.join(os.path.dirname(out_dir), str(int(name) + 1))}"
            if name.isdigit()
            else ""
        )
        raise CliError(
            f"OUT_DIR {out_dir!r} already exists; pass --overwrite to "
            f"replace it{newer}"
        )
    check_output(out_dir, name="OUT_DIR")


# -- the command -------------------------------------------------------------
@one_line_errors
def run(args):
    """Runs `keras-prompt export`; returns the exit code."""
    check_int_arg(args, "batch-size", 1)
    check_int_arg(args, "max-length", 1, optional=True)
    check_out_dir(args)
    with locked_output(args.out_dir, "OUT_DIR"):
        return export_run(args)


def export_run(args):
    """`run` holding the lock of OUT_DIR."""
    tuned = read_run(args.source, args.preset, "export")
    if not os.path.basename(os.path.normpath(args.out_dir)).isdigit():
        print(
            f"keras-prompt export: note: TF Serving serves numbered version "
            f"folders; {args.out_dir!r} is not one (e.g. models/sst2/1)",
            file=sys.stderr,
        )

    from keras_prompt.serving import export_saved_model
    from keras_prompt.serving import read_manifest

    model = load_run_model(tuned, max_length=args.max_length)
    path = export_saved_model(
        model,
        args.out_dir,
        batch_size=args.batch_size,
        max_length=args.max_length,
        overwrite=args.overwrite,
    )
    manifest = read_manifest(path)
    print(
        f"Exported the {manifest['task_class']} of {tuned.path} to {path}: "
        f"signature serve(inputs: strings) -> {manifest['output']}"
    )
    base = os.path.dirname(path)
    print(
        "Serve it with: tensorflow_model_server --rest_api_port=8501 "
        f"--model_name={os.path.basename(base)} --model_base_path={base}"
    )
    return 0
