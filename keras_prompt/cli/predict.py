"""`keras-prompt predict`: run a tuned prompt on texts.

Rebuilds the trained model from the preset and the prompt file
(`from_preset(preset, prompts=...)`) and prints one JSON line per text:
`{"text", "label", "probability"}` for a classifier (the label's name when
the run's task names its classes), `{"text", "output"}` (the generated
text) for a text-to-text or causal LM prompt.

RUN is a run folder of `keras-prompt tune` (`prompt.safetensors` and
`run.json`, which records the preset, the task and the sequence length)
or a prompt file (its folder's `run.json` is read when there is one; else
pass --preset).

Examples:

  keras-prompt predict runs/glue/sst2 "a gripping, funny film" "dull"
  keras-prompt predict runs/glue/sst2 --input ../shared/data/sst2/dev.tsv
  cat reviews.txt | keras-prompt predict runs/glue/sst2 --input -
  keras-prompt predict rte.prompt.safetensors --preset t5_base_multi \\
      "rte hypothesis: ... premise: ..."
"""

import json
import os
import sys

from keras_prompt.cli import CliError
from keras_prompt.cli.common import RUN_FILE
from keras_prompt.cli.common import _one_line
from keras_prompt.cli.common import check_int_arg
from keras_prompt.cli.common import one_line_errors
from keras_prompt.cli.common import resolve_preset

DEFAULT_BATCH_SIZE = 32
# A first line whose first field is one of these is a header.
HEADER_NAMES = ("sentence", "text", "input", "inputs")


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "predict",
        help="run a tuned prompt on texts (JSON lines out)",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "source",
        metavar="RUN_DIR_OR_PROMPT_FILE",
        help="a run folder of `keras-prompt tune`, or a prompt file",
    )
    add("texts", nargs="*", metavar="TEXT", help="texts to run the prompt on")
    add(
        "--input",
        metavar="FILE",
        help="read texts from a file, one per line, or from stdin with '-'; "
        "in a .tsv file the first column (a header line such as "
        "'sentence<TAB>label' is skipped)",
    )
    add(
        "--preset",
        help="the preset the prompt was trained on (default: the run's, "
        "from run.json)",
    )
    add(
        "--sequence-length",
        type=int,
        help="input tokens per text, the prompt not included (default: the "
        "run's, from run.json, else the model's default)",
    )
    add(
        "--max-length",
        type=int,
        help="text-to-text and causal LMs: the most tokens generated "
        "(default: the model's)",
    )
    add(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="texts per batch (default: %(default)s)",
    )
    parser.set_defaults(run=run)


# -- inputs --------------------------------------------------------------------
def read_texts(args, stdin=None):
    """The texts of the command line and of `--input`, in that order."""
    texts = list(args.texts)
    if args.input is not None:
        if args.input == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            texts += parse_lines(lines, tsv=False)
        else:
            if not os.path.isfile(args.input):
                raise CliError(f"--input {args.input!r}: no such file")
            with open(args.input, encoding="utf-8") as f:
                lines = f.read().splitlines()
            texts += parse_lines(lines, args.input.endswith(".tsv"))
    if not texts:
        raise CliError(
            "no texts: pass them after RUN_DIR_OR_PROMPT_FILE, or --input "
            "FILE (or - for stdin)"
        )
    return texts


def parse_lines(lines, tsv):
    """Non-empty lines (in a TSV: their first field), header skipped."""
    if tsv:
        lines = [line.split("\t")[0] for line in lines]
        if lines and lines[0].strip().lower() in HEADER_NAMES:
            lines = lines[1:]
    return [line.strip() for line in lines if line.strip()]


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
        raise CliError(f"{run_file!r}: {_one_line(error)}") from None
    if not isinstance(info, dict):
        raise CliError(f"{run_file!r} does not hold a JSON object")
    return path, info


def label_strings(task_name):
    """The class names of a `keras_prompt.data` task, or `None`."""
    from keras_prompt.data import get_task

    if not isinstance(task_name, str):
        return None
    try:
        return get_task(task_name).label_strings
    except ValueError:
        return None


# -- the command ---------------------------------------------------------------
@one_line_errors
def run(args):
    """Runs `keras-prompt predict`; returns the exit code."""
    check_int_arg(args, "batch-size", 1)
    check_int_arg(args, "sequence-length", 2, optional=True)
    check_int_arg(args, "max-length", 1, optional=True)
    texts = read_texts(args)
    path, info = locate_run(args.source)
    if args.preset is None and not info.get("preset"):
        raise CliError(
            f"{args.source!r} has no {RUN_FILE} beside it recording the "
            "preset; pass --preset (the preset the prompt was trained on)"
        )
    preset = resolve_preset(args.preset or info["preset"])
    config = info.get("config") or {}

    from keras_prompt import prompt_files
    from keras_prompt.tasks import task_class_of_prompt_file

    metadata = prompt_files.read_prompt_source(path).metadata
    if metadata["num_prompts"] != 1:
        raise CliError(
            f"{path!r} holds a bank of {metadata['num_prompts']} prompts; "
            "predict runs single-prompt files (serve banks with "
            "keras_prompt.serving.PromptBank.from_preset)"
        )
    task_class = task_class_of_prompt_file(metadata, path)
    names = metadata.get("task_names") or []
    task_name = info.get("task") or (names[0] if names else None)

    kwargs = {}
    sequence_length = args.sequence_length or config.get("sequence_length")
    if sequence_length is not None:
        target_length = args.max_length or config.get("target_length") or 16
        kwargs = task_class.preprocessor_lengths(sequence_length, target_length)
    model = task_class.from_preset(preset, prompts=path, **kwargs)
    classes = label_strings(task_name)
    infer_kwargs = {}
    if args.max_length is not None:
        infer_kwargs["max_length"] = args.max_length
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        outputs = model.infer(batch, **infer_kwargs)
        for text, record in zip(batch, model.output_records(outputs, classes)):
            print(json.dumps(dict(text=text, **record), ensure_ascii=False))
    return 0
