"""The `keras-prompt` console script: one subcommand per module.

Each subcommand module exposes `add_parser(subparsers)` (registering its
arguments and `set_defaults(run=...)`) and a `run(args) -> int`. Errors the
user can fix (`CliError`, `ValueError`, `FileNotFoundError`...) print one
clear line and exit non-zero; nothing half-written is left behind.
"""

import argparse
import importlib
import os
import sys

SUBCOMMANDS = ("tune", "predict", "evaluate", "export", "demo", "plan")


class CliError(Exception):
    """A problem with the user's input, reported as one line."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-prompt",
        description="Prompt Tuning (Lester et al., 2021) for keras-hub.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's own log lines (hidden by default)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"keras_prompt.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"keras_prompt.cli.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv=None, verbose=False):
    """Runs the command line `argv` (default: `sys.argv[1:]`); returns the
    exit status.

    Args:
        argv: list of str, the arguments after the program name.
        verbose: bool, as the global `--verbose` flag (the `keras-prompt`
            launcher, `keras_prompt_cli`, strips the flag and passes it
            here): TensorFlow's log level is left as it is. Subcommands
            read it as `args.verbose`.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.verbose = bool(verbose or args.verbose)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    debug = os.environ.get("KERAS_PROMPT_DEBUG")
    try:
        return int(args.run(args) or 0)
    except (CliError, ValueError, TypeError, FileNotFoundError, OSError) as e:
        if debug:
            raise
        print(f"keras-prompt {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-prompt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
