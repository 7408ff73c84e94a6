"""The `keras-prompt` console script: a light launcher for `keras_prompt.cli`.

Importing `keras_prompt` imports TensorFlow, whose native libraries print
start-up lines to the process's stderr while they load (oneDNN, CUDA
stubs, CPU features, absl's "All log messages before
absl::InitializeLog()" notice), on every call, `--help` included, and
before any Python code could lower their log level. A Ctrl-C during that
import also printed a raw traceback. This module imports nothing heavy
itself: it sets `TF_CPP_MIN_LOG_LEVEL=3` (unless already set: TensorFlow's
native INFO, WARNING and ERROR records, e.g. "failed call to cuInit" on
every machine without a GPU; Python errors still show), holds back
the native start-up lines while the CLI is imported (any other output is
passed on), and turns a Ctrl-C at any point into one line,
`keras-prompt: interrupted`, and exit status 130.

A global `--verbose` / `-v` flag (before the subcommand) keeps TensorFlow's
start-up lines and its log level, and is forwarded to
`keras_prompt.cli.main(verbose=True)`. `python -m keras_prompt.cli` still
works, without the quiet import.

Example:

```
keras-prompt --help
keras-prompt --verbose tune --task glue/sst2
python -m keras_prompt_cli plan --preset t5_1.1_xl
```
"""

import contextlib
import os
import re
import sys
import tempfile

VERBOSE_FLAGS = ("--verbose", "-v")
INTERRUPTED = "keras-prompt: interrupted"

# Native INFO and WARNING records ("I0000 00:00:17.5 1234 port.cc:153] ..."),
# absl's notice that precedes them, and the continuation of TensorFlow's
# CPU-feature notice.
_NOISE = re.compile(
    r"^(?:[IW]\d{4} \d+:\d+:\d+\.\d+\s+\d+ [\w.\-/]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) "
    r"|To enable the following instructions: .*rebuild TensorFlow )"
)


def split_verbose(argv):
    """`(argv without the global verbose flags, whether one was given)`.

    Only flags before the subcommand (the first argument not starting with
    `-`) are global; a subcommand's own `-v` is left alone.
    """
    argv = list(argv)
    verbose = False
    kept = []
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            kept.extend(argv[i:])
            break
        if arg in VERBOSE_FLAGS:
            verbose = True
        else:
            kept.append(arg)
    return kept, verbose


def is_native_noise(line):
    """Whether `line` is one of TensorFlow's native start-up log lines."""
    return bool(_NOISE.match(line))


@contextlib.contextmanager
def native_startup_lines_held_back():
    """Redirects file descriptor 2 to a temporary file while the block
    runs, then writes back to stderr every line but the native start-up
    noise (`is_native_noise`)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        # No real stderr (embedded, captured by a test runner): nothing
        # native can be held back.
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not is_native_noise(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def main(argv=None):
    """Runs `keras_prompt.cli.main`; returns its exit status (130 when
    interrupted)."""
    argv, verbose = split_verbose(sys.argv[1:] if argv is None else argv)
    try:
        if verbose:
            from keras_prompt.cli import main as cli_main
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with native_startup_lines_held_back():
                from keras_prompt.cli import main as cli_main
        return cli_main(argv, verbose=verbose)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
