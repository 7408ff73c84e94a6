"""`keras-prompt evaluate`: score a tuned prompt on a task's split.

Rebuilds the run's model as `keras-prompt predict` does (the preset,
sequence lengths and frozen-weight dtype that `run.json` records, and the
prompt file), reads the split as `keras-prompt tune` reads it and scores it
the same way: the accuracy of a classifier's most likely class (and the
task's other metrics), or the task's metrics of a text-to-text or causal
LM's answers: the label string of highest log-likelihood (--decode score)
or its greedy generation (--decode generate). Prints the metrics on one
line, then a JSON line `{"run", "task", "split", "examples", "metrics"}`
(and `"decode"` for text-to-text and causal LMs).

By default it evaluates what the run evaluated (the run's task, its
validation split, its --max-eval-examples, its decoding, the same
batches), so it reproduces run.json's `validation_accuracy` exactly.

Examples:

  keras-prompt evaluate runs/glue/sst2
  keras-prompt evaluate runs/glue/sst2 --max-examples 0   # every example
  keras-prompt evaluate runs/glue/sst2 --split train --max-examples 1000
  keras-prompt evaluate runs/glue/sst2 --data-dir ../shared/tfds
  keras-prompt evaluate sst2.prompt.safetensors --preset ./my_bert \\
      --task glue/sst2
"""

import json
import os

from keras_prompt.cli import CliError
from keras_prompt.cli.common import EVAL_BATCH_SIZE
from keras_prompt.cli.common import add_decode_argument
from keras_prompt.cli.common import add_run_command
from keras_prompt.cli.common import check_data_dir
from keras_prompt.cli.common import check_dataset
from keras_prompt.cli.common import check_int_arg
from keras_prompt.cli.common import decode_choice
from keras_prompt.cli.common import format_metrics
from keras_prompt.cli.common import load_run_model
from keras_prompt.cli.common import one_line
from keras_prompt.cli.common import one_line_errors
from keras_prompt.cli.common import read_run

DEFAULT_SPLIT = "validation"


def add_parser(subparsers):
    parser = add_run_command(
        subparsers,
        "evaluate",
        "score a tuned prompt on a task's split (metrics, JSON line)",
        __doc__,
    )
    add = parser.add_argument
    add(
        "--task",
        help="keras_prompt.data task name (default: the run's, from "
        "run.json, else the prompt file's)",
    )
    add(
        "--split",
        default=DEFAULT_SPLIT,
        help="the split to score, e.g. validation or train "
        "(default: %(default)s, the split tune scores)",
    )
    add(
        "--data-dir",
        help="TFDS data dir (default: $TFDS_DATA_DIR, else the run's, from "
        "run.json, else the TFDS default)",
    )
    add(
        "--max-examples",
        type=int,
        help="score the first N examples, 0 for all (default: the run's "
        "--max-eval-examples, from run.json, else all)",
    )
    add(
        "--batch-size",
        type=int,
        default=EVAL_BATCH_SIZE,
        help="inputs per batch (default: %(default)s, as tune: another "
        "size pads classifier batches differently, which may move scores "
        "in their last bits)",
    )
    add(
        "--preset",
        help="the preset the prompt was trained on (default: the run's, "
        "from run.json)",
    )
    add_decode_argument(
        parser,
        "the run's, from run.json, on its task; else score for tasks with "
        "class labels",
    )
    parser.set_defaults(run=run)


def data_dir_of(args, tuned):
    """--data-dir, else $TFDS_DATA_DIR, else the run's data dir while it
    exists, else `None` (the TFDS default)."""
    if args.data_dir is not None:
        return args.data_dir
    if os.environ.get("TFDS_DATA_DIR"):
        return os.environ["TFDS_DATA_DIR"]
    recorded = tuned.settings.get("data_dir")
    if recorded and os.path.isdir(recorded):
        return recorded
    return None


def max_examples_of(args, tuned):
    """--max-examples (0: `None`, all), else the run's
    --max-eval-examples."""
    if args.max_examples is None:
        return tuned.settings.get("max_eval_examples")
    return args.max_examples or None


def data_task_of(args, tuned):
    """The `keras_prompt.data` task to score, and its checked split."""
    from keras_prompt.data import get_task

    name = args.task or tuned.task_name
    if name is None:
        raise CliError(
            f"{args.source!r} records no task (no run.json, no task name in "
            "the prompt file); pass --task, e.g. --task glue/sst2"
        )
    try:
        data_task = get_task(name)
    except ValueError as error:
        raise CliError(f"--task {name!r}: {one_line(error)}") from None
    try:
        data_task.resolve_split(args.split)
    except ValueError as error:
        raise CliError(f"--split {args.split!r}: {one_line(error)}") from None
    return data_task


def recorded_decode(tuned):
    """The decoding run.json records (runs that predate the setting
    generated), or `None` without run.json."""
    return tuned.recipe.get("decode", "generate") if tuned.recipe else None


def decode_of(args, tuned, data_task, task_class):
    """--decode, else the run's on its own task, checked (`None`: a
    classifier)."""
    decode = args.decode
    if decode is None and data_task.name == tuned.recipe.get("task"):
        if task_class.generates_text:
            decode = recorded_decode(tuned)
    return decode_choice(decode, task_class, data_task)


def recorded_metrics(args, tuned, data_task, max_examples):
    """run.json's validation metrics when this evaluation is the run's own
    (same task, split, examples, decoding and batches), else `None`."""
    same = (
        data_task.name == tuned.recipe.get("task")
        and args.split == DEFAULT_SPLIT
        and max_examples == tuned.settings.get("max_eval_examples")
        and args.batch_size == EVAL_BATCH_SIZE
        and args.decode in (None, recorded_decode(tuned))
    )
    return tuned.info.get("validation") if same else None


# -- the command -------------------------------------------------------------
@one_line_errors
def run(args):
    """Runs `keras-prompt evaluate`; returns the exit code."""
    check_int_arg(args, "batch-size", 1)
    check_int_arg(args, "max-examples", 0, optional=True)
    check_data_dir(args.data_dir)
    tuned = read_run(args.source, args.preset, "evaluate")
    data_task = data_task_of(args, tuned)
    data_dir = data_dir_of(args, tuned)
    max_examples = max_examples_of(args, tuned)
    from keras_prompt.tasks import task_class_of_prompt_file
    from keras_prompt.training.task_kinds import task_kind

    decode = decode_of(
        args,
        tuned,
        data_task,
        task_class_of_prompt_file(tuned.metadata, tuned.path),
    )
    check_dataset(data_task, data_dir, args.split)

    model = load_run_model(tuned)
    examples = task_kind(type(model)).read_examples(
        data_task, args.split, data_dir, max_examples
    )
    if not len(examples):
        raise CliError(
            f"--task {data_task.name!r} --split {args.split!r}: "
            "no examples read"
        )
    metrics = {
        name: float(value)
        for name, value in examples.score(
            model, args.batch_size, decode
        ).items()
    }
    recorded = recorded_metrics(args, tuned, data_task, max_examples)
    print(
        f"{data_task.name} {args.split}, {len(examples)} examples: "
        f"{format_metrics(metrics)}"
        + (f" (run.json: {format_metrics(recorded)})" if recorded else "")
    )
    record = {
        "run": args.source,
        "task": data_task.name,
        "split": args.split,
        "examples": len(examples),
        "metrics": metrics,
    }
    if decode is not None:
        record["decode"] = decode
    print(json.dumps(record))
    return 0
