"""`keras-prompt predict`: run a tuned prompt on texts.

Rebuilds the trained model from the preset and the prompt file
(`from_preset(preset, prompts=...)`, with the run's sequence length and
frozen-weight dtype) and prints one JSON line per text:
`{"text", "label", "probability"}` for a classifier (the label's name when
the run's task names its classes), and for a text-to-text or causal LM
prompt on a task with class labels (the label string of highest
log-likelihood after the text, and its probability among the labels;
--decode generate for greedy decoding), `{"text", "output"}` (the
generated text) for other text-to-text or causal LM prompts.

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
from keras_prompt.cli.common import add_decode_argument
from keras_prompt.cli.common import add_run_command
from keras_prompt.cli.common import check_int_arg
from keras_prompt.cli.common import decode_choice
from keras_prompt.cli.common import load_run_model
from keras_prompt.cli.common import one_line_errors
from keras_prompt.cli.common import read_run

DEFAULT_BATCH_SIZE = 32
# A first line whose first field is one of these is a header.
HEADER_NAMES = ("sentence", "text", "input", "inputs")


def add_parser(subparsers):
    parser = add_run_command(
        subparsers,
        "predict",
        "run a tuned prompt on texts (JSON lines out)",
        __doc__,
        metavar="RUN_DIR_OR_PROMPT_FILE",
    )
    add = parser.add_argument
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
    add_decode_argument(
        parser, "score when the run's task has class labels, else generate"
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


def data_task(task_name):
    """The `keras_prompt.data` task of that name, or `None`."""
    from keras_prompt.data import get_task

    if not isinstance(task_name, str):
        return None
    try:
        return get_task(task_name)
    except ValueError:
        return None


def scored_records(model, texts, classes):
    """`{"label", "probability"}` of each text: the label string of highest
    log-likelihood and its probability among `classes`."""
    best, probability = model.predict_labels(texts, classes)
    return [
        {"label": classes[int(index)], "probability": float(p)}
        for index, p in zip(best, probability)
    ]


# -- the command ---------------------------------------------------------------
@one_line_errors
def run(args):
    """Runs `keras-prompt predict`; returns the exit code."""
    check_int_arg(args, "batch-size", 1)
    check_int_arg(args, "sequence-length", 2, optional=True)
    check_int_arg(args, "max-length", 1, optional=True)
    texts = read_texts(args)
    tuned = read_run(args.source, args.preset, "predict")
    from keras_prompt.tasks import task_class_of_prompt_file

    task = data_task(tuned.task_name)
    decode = decode_choice(
        args.decode,
        task_class_of_prompt_file(tuned.metadata, tuned.path),
        task,
        repr(args.source),
    )
    model = load_run_model(tuned, args.sequence_length, args.max_length)
    classes = None if task is None else task.label_strings
    infer_kwargs = {}
    if args.max_length is not None:
        infer_kwargs["max_length"] = args.max_length
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        if decode == "score":
            records = scored_records(model, batch, classes)
        else:
            outputs = model.infer(batch, **infer_kwargs)
            records = model.output_records(outputs, classes)
        for text, record in zip(batch, records):
            print(json.dumps(dict(text=text, **record), ensure_ascii=False))
    return 0
