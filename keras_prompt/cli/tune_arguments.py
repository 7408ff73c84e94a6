"""The arguments of `keras-prompt tune` and their checks (those that need
no model or data)."""

import argparse
import math

from keras_prompt.cli import CliError
from keras_prompt.cli.common import add_decode_argument
from keras_prompt.cli.common import check_choice
from keras_prompt.cli.common import check_data_dir
from keras_prompt.cli.common import check_int_arg

DEFAULT_TASK = "glue/sst2"
DEFAULT_BATCH_SIZE = 32
DEFAULT_PROMPT_LENGTH = 20
DEFAULT_SEQUENCE_LENGTH = 128
INITIALIZERS = ("random_uniform", "sampled_vocab", "class_label")
OPTIMIZERS = ("auto", "adam", "adafactor")
DEFAULT_CHECKPOINT_EVERY = 50

#: `--frozen-prefix-cache`'s choices, as `Recipe.frozen_prefix_cache`.
FROZEN_PREFIX_CACHE = {"auto": "auto", "on": True, "off": False}


def add_arguments(parser):
    """Adds `keras-prompt tune`'s arguments to `parser`."""
    from keras_prompt.optimizers import default_learning_rate
    from keras_prompt.training.recipe import SCHEDULES

    add = parser.add_argument
    default = " (default: %(default)s)"
    add(
        "--preset",
        help="keras-hub preset name, kaggle:// or hf:// handle, or a local "
        "preset / Hugging Face checkpoint folder, or minilm / smollm2: the "
        "pretrained models of the keras-prompt[minilm] / [smollm2] extras "
        "(default: minilm, all-MiniLM-L6-v2)",
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
        default=None,
        help=f"prompt vectors (default: {DEFAULT_PROMPT_LENGTH}, or "
        "--init-from's)",
    )
    add(
        "--deep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="deep prompts: a prompt at every transformer layer (T5: every "
        "encoder layer), P-Tuning v2; --no-deep: the input prompt only "
        "(default: deep for classifiers (encoders), where it measured "
        "better; the input prompt for T5 and decoder-only models)",
    )
    add(
        "--deep-mode",
        choices=("replace", "add"),
        default=None,
        help="how deep prompts meet the hidden states: replace (P-Tuning v2) "
        "or add (decoder-only models: each layer's prompt is added to what "
        "reaches the prompt positions, so the input prompt's effect carries "
        "through; saved folded into plain vectors); add implies --deep "
        "(default: replace)",
    )
    add(
        "--start-layer",
        type=int,
        default=None,
        help="late prompts: the transformer layer the prompt enters before "
        "(T5: encoder layer); layers below it run on the text alone and get "
        "no gradient (default: 0, the input)",
    )
    add(
        "--reparameterization",
        choices=("none", "residual"),
        default=None,
        help="train the prompt through a reparameterisation, folded into "
        "plain vectors when saved: residual (Residual Prompt Tuning: a "
        "shared bottleneck MLP with LayerNorm and a skip connection) "
        "(default: none)",
    )
    add(
        "--init-from",
        metavar="RUN_OR_FILE",
        help="transfer: start from another run's prompt (a run folder or a "
        "prompt file of the same model); its length, depth and start layer "
        "are taken unless given, a mismatch is an error",
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
        help="training steps (default: 2000 for classifiers, within 15 "
        "minutes on 2 CPU cores; 300 for T5 and decoder-only models)",
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
        "(T5, causal LMs)",
    )
    add(
        "--optimizer",
        default="auto",
        help="auto (Adam for encoders, Adafactor for T5 and causal LMs), "
        "adam or adafactor",
    )
    add(
        "--schedule",
        choices=SCHEDULES,
        help="learning rate: constant (the paper's), or cosine, decaying "
        "from --learning-rate to zero over --steps (default: cosine for "
        "classifiers, where it measured better; constant for T5 and "
        "decoder-only models)",
    )
    add(
        "--frozen-dropout",
        type=float,
        metavar="RATE",
        help="dropout rate of the frozen model while the prompt trains (0: "
        "off); the classification head keeps its own (default: 0 for "
        "classifiers, where it measured better; the checkpoint's for T5 "
        "and decoder-only models)",
    )
    add(
        "--frozen-prefix-cache",
        choices=tuple(FROZEN_PREFIX_CACHE),
        default="auto",
        help="with --start-layer K: compute the frozen layers below K once "
        "per training example and run only the layers from K on in each "
        "step; auto: when no dropout acts below K and the run makes "
        "several passes over its examples (default: auto)",
    )
    add(
        "--sequence-length",
        type=int,
        default=DEFAULT_SEQUENCE_LENGTH,
        help="input tokens per example, the prompt not included" + default,
    )
    add(
        "--pooling",
        choices=("mean", "cls"),
        help="encoders: what the classification head reads, the mean over "
        "[CLS], prompt and tokens, or the final [CLS] state (default: mean; "
        "+4 points on MiniLM/SST-2, benchmarks/minilm_sst2.py)",
    )
    add(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="dtype of the frozen weights; the prompt, head and optimizer "
        "state are float32 always. bfloat16: 1.4-1.6x faster steps and 18%% "
        "less memory on MiniLM here, SST-2 dev accuracy 0.8394 vs 0.8409 "
        "over five seeds, a run up to 1.3 points either way, as float32 on "
        "other kernels moves (docs/performance.md); auto: "
        "bfloat16 where the hardware "
        "multiplies it natively (TPU, GPUs of compute capability >= 8.0, "
        "CPUs with AVX512-BF16 or AMX), float32 elsewhere" + default,
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
    add_decode_argument(
        parser,
        "score for tasks with class labels; encoder classifiers always "
        "score their classes",
    )
    add("--output", help="output folder (default: runs/<task>)")
    add(
        "--overwrite",
        action="store_true",
        help="replace the prompt file and run.json of an earlier run in "
        "--output (refused otherwise)",
    )
    add(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        help="save the training progress every N steps (and after each "
        "evaluation) into <output>/checkpoint, removed when the run ends; "
        "0: never" + default,
    )
    add(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --output from its last "
        "checkpoint (same arguments; starts from step 0 if there is none)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the prompt, head, data subset and order" + default,
    )


# -- argument checks ---------------------------------------------------------
def check_args(args):
    """Validates the arguments that need no model or data; one-line errors."""
    for name, minimum in (
        ("batch-size", 1),
        ("sequence-length", 2),
        ("eval-every", 0),
        ("checkpoint-every", 0),
    ):
        check_int_arg(args, name, minimum)
    check_int_arg(args, "prompt-length", 1, optional=True)
    check_int_arg(args, "start-layer", 0, optional=True)
    check_int_arg(args, "steps", 1, optional=True)
    check_int_arg(args, "max-eval-examples", 1, optional=True)
    check_int_arg(args, "max-train-examples", 1, optional=True)
    check_choice(args, "init", INITIALIZERS, optional=True)
    check_choice(args, "optimizer", OPTIMIZERS)
    rate = args.learning_rate
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise CliError(f"--learning-rate must be positive, got {rate!r}")
    rate = args.frozen_dropout
    if rate is not None and not 0 <= rate < 1:
        raise CliError(f"--frozen-dropout must be in [0, 1), got {rate!r}")
    check_data_dir(args.data_dir)
