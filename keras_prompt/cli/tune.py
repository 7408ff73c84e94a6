"""`keras-prompt tune`: prompt-tune a frozen pretrained model on a task.

With no arguments it trains deep prompts (a 20-token prompt at each of the
6 layers; `--no-deep` for the input prompt alone) and a linear head for
2,000 steps of 32, the learning rate on a cosine decay and the frozen
model's dropout off (under 15 minutes on 2 CPU cores), on a frozen
all-MiniLM-L6-v2 (the `keras-prompt[minilm]` extra; nothing is
downloaded) for GLUE SST-2 from TFDS, reports validation accuracy and writes
`runs/glue/sst2/prompt.safetensors` and `run.json`. T5 and decoder-only
presets train the input prompt unless `--deep` is given, for 300 steps.

Encoder presets (BERT, RoBERTa, DistilBERT) train a `PromptClassifier` on
the task's raw sentences and class indices; T5 presets train a
`PromptSeq2SeqLM` on the task's text-to-text pairs; decoder-only presets
(GPT-2, Llama, Gemma, Mistral, Qwen) train a `PromptCausalLM` on the same
pairs joined into one sequence, the loss on the target tokens only. Both
are scored by ranking the task's label strings by their log-likelihood
(`--decode score`, the default for tasks with class labels) or on their
greedy continuations (`--decode generate`, and tasks without labels).
`--preset smollm2` is SmolLM2-135M-Instruct (the `keras-prompt[smollm2]`
extra, converted once from its GGUF file; nothing is downloaded).

The final files are written only when training and evaluation have
finished, into a staging folder beside the output that replaces it in one
atomic step (`keras_prompt.run_folders`), so a failed, diverged or killed
run never leaves a half-written prompt, nor a prompt beside another run's
`run.json`; one `tune` at a time writes an output (a second is refused at
once, naming the first's pid). Progress is saved every --checkpoint-every
steps into `<output>/checkpoint/` (prompt, head, optimizer and random
states, the step: a few times the prompt's size, whatever the backbone);
after an interruption (Ctrl-C, a killed job) the same command with
--resume goes on from there and ends with the prompt an uninterrupted run
would have.
"""

import os
import shlex
import shutil
import sys
import tempfile
import time

from keras_prompt.cli import CliError
from keras_prompt.cli.common import EVAL_BATCH_SIZE
from keras_prompt.cli.common import TARGET_LENGTH
from keras_prompt.cli.common import check_dataset
from keras_prompt.cli.common import check_no_earlier_run
from keras_prompt.cli.common import check_output
from keras_prompt.cli.common import count_parameters
from keras_prompt.cli.common import decode_choice
from keras_prompt.cli.common import default_output
from keras_prompt.cli.common import file_digest
from keras_prompt.cli.common import format_seconds
from keras_prompt.cli.common import load_backbone
from keras_prompt.cli.common import locked_output
from keras_prompt.cli.common import one_line
from keras_prompt.cli.common import one_line_errors
from keras_prompt.cli.common import recorded_data_dir
from keras_prompt.cli.common import recorded_preset
from keras_prompt.cli.common import resolve_preset
from keras_prompt.cli.common import write_outputs
from keras_prompt.cli.preflight import check_tune_memory
from keras_prompt.cli.tune_arguments import DEFAULT_PROMPT_LENGTH
from keras_prompt.cli.tune_arguments import FROZEN_PREFIX_CACHE
from keras_prompt.cli.tune_arguments import add_arguments
from keras_prompt.cli.tune_arguments import check_args
from keras_prompt.prompt_files import RUN_PROMPT_FILE
from keras_prompt.training.trainer import CHECKPOINT_DIR
from keras_prompt.training.trainer import RUN_FILE
from keras_prompt.training.trainer import write_run_record


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "tune",
        help="prompt-tune a frozen pretrained model on a GLUE/SuperGLUE task",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def init_of(args, task):
    """--init-from's prompt, else --init, else class-label initialisation
    for a task with class labels and sampled vocabulary otherwise."""
    if args.init_from is not None:
        if args.init is not None:
            raise CliError("give --init or --init-from, not both")
        from keras_prompt.initializers import FromPromptFile

        try:
            return FromPromptFile(args.init_from)
        except (ValueError, OSError) as error:
            raise CliError(f"--init-from: {one_line(error)}") from None
    init = args.init
    if init is None:
        init = "class_label" if task.label_strings else "sampled_vocab"
    if init == "class_label" and not task.label_strings:
        raise CliError(
            f"--init class_label needs class labels, and task {task.name!r} "
            "has none"
        )
    return init


# -- checkpoints -------------------------------------------------------------
def run_settings(args, preset, dtype):
    """What a checkpoint must agree on besides the recipe: a resumed run
    with other settings would not reach the same prompt."""
    return {
        "preset": recorded_preset(preset),
        "max_eval_examples": args.max_eval_examples,
        "dtype": dtype,
    }


def check_interrupted_run(work, args):
    """Refuses to start afresh over an interrupted run's checkpoint unless
    asked (--overwrite removes it); --resume continues it."""
    if not os.path.isdir(work) or args.resume:
        return
    if not args.overwrite:
        raise CliError(
            f"{work!r} holds the checkpoint of an interrupted run; pass "
            "--resume (with the same arguments) to continue it, or "
            "--overwrite to start afresh"
        )
    shutil.rmtree(work)


def missing_folders(path):
    """`path` and those of its parents that do not exist yet, deepest
    first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def remove_folders(folders):
    """Removes what `missing_folders` listed (the first one whole)."""
    if folders:
        shutil.rmtree(folders[0], ignore_errors=True)
    for folder in folders[1:]:
        try:
            os.rmdir(folder)
        except OSError:
            break


def saved_step(work):
    """The step of the newest checkpoint in `work`, or `None`."""
    from keras_prompt.training.training_checkpoint import (
        PromptTrainingCheckpoint,
    )

    saver = PromptTrainingCheckpoint(work)
    latest = saver.latest()
    return saver.read_state(latest)[1]["step"] if latest else None


def print_resume_hint(model, work, steps, args):
    """After Ctrl-C: what was kept, and the command that goes on."""
    import keras

    step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if work is None:
        kept = "--checkpoint-every 0 was given, so the progress is lost"
    else:
        saved = saved_step(work)
        argv = getattr(args, "argv", None) or sys.argv[1:]
        command = shlex.join(
            ["keras-prompt"]
            + [a for a in argv if a not in ("--resume", "--overwrite")]
            + ["--resume"]
        )
        kept = (
            f"progress up to step {saved} is saved in {work}"
            if saved
            else "no checkpoint was written yet"
        ) + f"; continue with: {command}"
    print(
        f"keras-prompt tune: stopped at step {step} of {steps}; {kept}",
        file=sys.stderr,
    )


# -- the command -------------------------------------------------------------
def load_frozen_backbone(args, preset):
    """`(backbone, dtype)`: the preset's backbone with its frozen weights
    in --dtype (`auto` resolved here, once), and that dtype."""
    from keras_prompt.convert.precision import resolve_dtype

    dtype, reason = resolve_dtype(args.dtype)
    print(
        f"Loading the backbone {preset} with {dtype} frozen weights ("
        + (f"auto: {reason}" if args.dtype == "auto" else f"--dtype {dtype}")
        + ")"
    )
    return load_backbone(preset, dtype=dtype), dtype


def build_model(args, task, init, preset, backbone):
    """The recipe of the arguments (`init`: the resolved --init; the task
    kind's defaults where they are not given) and the prompt task that
    fits it (a classifier on encoders, a text-to-text model on T5 and
    decoder-only models)."""
    from keras_prompt.adapters import get_adapter
    from keras_prompt.layers import additive_deep_prompts
    from keras_prompt.layers.prompt_config import PromptConfig
    from keras_prompt.tasks import task_class_for
    from keras_prompt.training.recipe import Recipe
    from keras_prompt.training.task_kinds import find_task_kind

    try:
        task_class = task_class_for(backbone)
    except ValueError as error:
        raise CliError(f"--preset {preset!r}: {one_line(error)}") from None
    decode_choice(args.decode, task_class, task)
    kind = find_task_kind(task_class)
    if kind is None:
        raise CliError(
            f"--preset {preset!r}: {type(backbone).__name__} is a "
            f"{get_adapter(backbone).kind} backbone, which `keras-prompt "
            "tune` cannot train yet. Train it with "
            f"keras_prompt.{task_class.__name__}"
        )
    steps = args.steps or kind.tune_steps
    source = init.settings() if hasattr(init, "settings") else {}
    deep = kind.tune_deep if args.deep is None else args.deep
    if args.deep is None and "deep" in source:
        deep = source["deep"]
    deep_mode = args.deep_mode or "replace"
    if deep_mode != "replace":
        if args.deep is False:
            raise CliError(
                f"--deep-mode {deep_mode} trains deep prompts; drop --no-deep"
            )
        deep = True
    start_layer = args.start_layer
    if start_layer is None:
        start_layer = source.get("start_layer", 0)
    prompt_length = args.prompt_length
    if prompt_length is None:
        prompt_length = source.get("length", DEFAULT_PROMPT_LENGTH)
    reparameterization = args.reparameterization
    if reparameterization == "none":
        reparameterization = None
    # The prompt's full specification (the fields below repeat it).
    try:
        prompt_config = PromptConfig(
            length=prompt_length,
            deep=deep,
            deep_mode=deep_mode,
            start_layer=start_layer,
            reparameterization=reparameterization,
        )
        additive_deep_prompts.check_applies(
            prompt_config, get_adapter(backbone), type(backbone).__name__
        )
    except ValueError as error:
        raise CliError(one_line(error)) from None
    recipe = Recipe(
        task=task,
        prompt_length=prompt_length,
        deep=deep,
        start_layer=start_layer,
        reparameterization=reparameterization,
        prompt_config=prompt_config if deep_mode != "replace" else None,
        initializer=init,
        optimizer_name=args.optimizer,
        learning_rate=args.learning_rate,
        schedule=args.schedule or kind.tune_schedule,
        frozen_dropout=(
            kind.tune_frozen_dropout
            if args.frozen_dropout is None
            else args.frozen_dropout
        ),
        frozen_prefix_cache=FROZEN_PREFIX_CACHE[args.frozen_prefix_cache],
        batch_size=args.batch_size,
        steps=steps,
        eval_interval=steps,
        eval_batch_size=EVAL_BATCH_SIZE,
        encoder_sequence_length=args.sequence_length,
        decoder_sequence_length=TARGET_LENGTH,
        seed=args.seed,
        pooling=args.pooling or kind.tune_pooling,
        decode=args.decode,
    )
    return recipe, recipe.build_model(preset, backbone=backbone)


def init_name(initializer):
    """How the run line names the initialisation."""
    path = getattr(initializer, "path", None)
    if path is not None:
        return f"transfer ({path})"
    return str(initializer)


def describe_training(recipe, model, num_train):
    """The line saying what the run trains."""
    optimizer_name, learning_rate = recipe.optimizer_settings(model)
    seen = recipe.steps * recipe.batch_size
    passes = (
        f"a random {seen:,} of the {num_train:,} training examples"
        if seen <= num_train
        else f"{seen / num_train:.1f} passes over {num_train:,} examples"
    )
    depth = model.backbone.prompt_depth
    start = model.backbone.start_layer
    prompts = f"deep prompts at {depth} layers" if depth else "input prompt"
    if start:
        prompts = (
            f"deep prompts at layers {start}-{start + depth - 1}"
            if depth
            else f"prompt entering at layer {start}"
        )
    if model.backbone.prompt_config.reparameterization:
        prompts += " (residual reparameterisation)"
    if model.backbone.prompt_config.deep_mode == "add":
        prompts += " (added to the hidden states)"
    return (
        f"Training {recipe.steps} steps of {recipe.batch_size} ({passes}); "
        f"{prompts}, {init_name(recipe.initializer)} init, {optimizer_name} at "
        f"learning rate {learning_rate:g}"
        + (" (cosine decay to 0)" if recipe.schedule == "cosine" else "")
        + (f"; {recipe.pooling}-pooling head" if recipe.pooling else "")
        + (
            ""
            if recipe.frozen_dropout is None
            else f"; frozen model's dropout {recipe.frozen_dropout:g}"
        )
    )


@one_line_errors
def run(args):
    """Runs `keras-prompt tune`; returns the exit code."""
    start = time.time()
    check_args(args)
    from keras_prompt.data import get_task

    try:
        task = get_task(args.task)
    except ValueError as error:
        raise CliError(f"--task: {one_line(error)}") from None
    init = init_of(args, task)  # Checked before anything is loaded.
    decode_choice(args.decode, None, task)
    output = default_output(task.name) if args.output is None else args.output
    check_output(output)
    with locked_output(output):
        return train_and_publish(args, start, task, init, output)


def train_and_publish(args, start, task, init, output):
    """`run` holding the lock of `output`."""
    check_no_earlier_run(output, (RUN_PROMPT_FILE, RUN_FILE), args.overwrite)
    work = os.path.join(output, CHECKPOINT_DIR)
    check_interrupted_run(work, args)
    preset = resolve_preset(args.preset)
    check_tune_memory(args, preset, init)
    # TFDS reads TFDS_DATA_DIR once, at import: resolve it here so the
    # variable set at any time (or by a caller) is honoured.
    data_dir = args.data_dir or os.environ.get("TFDS_DATA_DIR") or None
    check_dataset(task, data_dir)

    import keras

    import keras_prompt
    from keras_prompt.cli.progress import PrintEvaluations
    from keras_prompt.cli.progress import ProgressLines

    keras_prompt.set_random_seed(args.seed)
    backbone, dtype = load_frozen_backbone(args, preset)
    recipe, model = build_model(args, task, init, preset, backbone)
    trainable, total = count_parameters(model)
    print(
        f"{type(model).__name__} on a frozen "
        f"{type(model.backbone.backbone).__name__}: training {trainable:,} "
        f"of {total:,} parameters ({100 * trainable / total:.3f}%)"
    )
    print(f"Reading {task.name} from TFDS")
    train = recipe.examples(model, "train", data_dir, args.max_train_examples)
    validation = recipe.examples(
        model, "validation", data_dir, args.max_eval_examples
    )
    num_train, num_eval = len(train), len(validation)
    if not num_train or not num_eval:
        raise CliError(
            f"--task {task.name!r}: no training or validation examples were "
            "read"
        )
    print(describe_training(recipe, model, num_train))
    steps = recipe.steps
    checkpointing = args.checkpoint_every > 0
    if args.resume and checkpointing and os.path.isdir(work):
        saved = saved_step(work)
        print(
            f"Resuming the run in {work} from step {saved}"
            if saved
            else f"No checkpoint in {work} yet: starting from step 0"
        )
    created = missing_folders(work)
    verbose = 1 if sys.stdout.isatty() else 0
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = recipe.fit(
                model,
                scratch,
                data_dir,
                train_data=train,
                validation_data=validation,
                callbacks=[
                    keras_prompt.FiniteGuard(),
                    PrintEvaluations(steps, num_eval),
                ]
                + ([] if verbose else [ProgressLines(steps)]),
                verbose=verbose,
                print_evaluations=False,
                restore_best=False,  # The run keeps its last prompt.
                eval_interval=args.eval_every or steps,
                checkpoint_every=args.checkpoint_every or None,
                resume=checkpointing,
                run_config=run_settings(args, preset, dtype),
                checkpoint_dir=work if checkpointing else None,
            )
        except KeyboardInterrupt:
            print_resume_hint(
                model, work if checkpointing else None, steps, args
            )
            raise
        except Exception:
            # A failed (e.g. diverged) run leaves nothing behind but an
            # earlier interrupted run's checkpoint it was resuming.
            remove_folders(created)
            raise
    last = result.task_history()[-1]
    validation = {k: v for k, v in last.items() if k != "step"}
    # The trainer's record, and what tune adds: the run's other settings,
    # the model, the data and the published prompt.
    record = dict(result.record)
    record["run"] = {
        **record["run"],
        "dtype_choice": args.dtype,
        "eval_every": args.eval_every,
        "max_train_examples": args.max_train_examples,
        # Absolute, as the preset: `keras-prompt evaluate` reads it.
        "data_dir": recorded_data_dir(data_dir),
    }
    record.update(
        backbone_class=type(model.backbone.backbone).__name__,
        model_class=type(model).__name__,
        train_examples=num_train,
        train_examples_used=min(steps * recipe.batch_size, num_train),
        validation_examples=num_eval,
        validation_accuracy=validation.get("accuracy"),
        validation=validation,
        trainable_parameters=trainable,
        total_parameters=total,
        prompt_file=RUN_PROMPT_FILE,
        keras_prompt_version=keras_prompt.__version__,
        keras_version=keras.__version__,
    )

    def write_files(folder):
        prompt_path = os.path.join(folder, RUN_PROMPT_FILE)
        model.save_prompts(prompt_path, task_names=[task.name])
        record["prompt_file_bytes"] = os.path.getsize(prompt_path)
        record["prompt_file_sha256"] = file_digest(prompt_path)
        record["wall_seconds"] = round(time.time() - start, 1)
        write_run_record(folder, record)

    # The checkpoint leaves with the earlier folder.
    write_outputs(output, write_files, drop=(CHECKPOINT_DIR,))
    accuracy = validation.get("accuracy", float("nan"))
    print(
        f"Validation accuracy {accuracy:.4f} on {num_eval} examples after "
        f"{steps} steps; {format_seconds(time.time() - start)} in all"
    )
    print(
        f"Wrote {os.path.join(output, RUN_PROMPT_FILE)} "
        f"({record['prompt_file_bytes']:,} bytes: prompt"
        f"{' and head' if model.head_variables() else ''}) and "
        f"{os.path.join(output, RUN_FILE)}"
    )
    return 0
