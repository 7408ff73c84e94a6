"""The prompt file: a few kilobytes holding trained prompts and their origin.

A prompt file is a `safetensors` file. Its tensors are the prompt variable
(`"prompt"`, shape `([num_prompts,] [depth,] length, dim)`: a bank has a
leading prompt axis, deep prompts a layer axis, recorded as `prompt_depth`
in the metadata) and any
extra trained tensors a task adds (a classifier's head, prefixed
`"extra/"`). Its metadata records what the prompt was trained against: the
backbone class, hidden size, vocabulary size and a fingerprint of the frozen
token embedding table, so that a prompt is never silently loaded into a
different model. Files are written atomically: a temporary file in the same
folder is renamed over the target, so a crash never leaves half a file.
"""

import collections
import hashlib
import json
import os
import tempfile

import ml_dtypes
import numpy as np

FORMAT = "keras_prompt.prompt"
FORMAT_VERSION = 2
#: The most characters and JSON nesting levels of a file's metadata (a
#: bank of thousands of named prompts needs a fraction of either); a larger
#: or deeper one is refused with the reader's `ValueError`.
MAX_METADATA_CHARS = 1 << 20
MAX_METADATA_NESTING = 16
_FINGERPRINT_ROWS = 256


def fingerprint_rows(vocabulary_size):
    """The (at most 256, evenly spaced) table rows a fingerprint reads."""
    count = min(vocabulary_size, _FINGERPRINT_ROWS)
    return np.unique(np.linspace(0, vocabulary_size - 1, count).astype(int))


def embedding_fingerprint(table, rows=None):
    """A short hash of a frozen embedding table `(vocab, dim)`.

    Hashes the shape and the rows `fingerprint_rows(vocab)` rounded to
    bfloat16, so the same checkpoint gives the same fingerprint whether its
    weights are held in float32 or bfloat16, and an XXL table is never read
    in full.

    Args:
        table: the table (anything NumPy can index), or only its
            fingerprint rows when `rows` is given.
        rows: optional `(shape, values)`: the full table's shape and the
            values of its fingerprint rows, already gathered.
    """
    if rows is None:
        values = np.asarray(table)
        shape = values.shape
        sample = values[fingerprint_rows(shape[0])]
    else:
        shape, sample = rows
    sample = np.asarray(sample, dtype="float32").astype(ml_dtypes.bfloat16)
    digest = hashlib.sha256()
    digest.update(json.dumps([int(d) for d in shape]).encode())
    digest.update(np.ascontiguousarray(sample.view("uint16")).tobytes())
    return digest.hexdigest()[:16]


def default_mode(directory=False):
    """The mode a new file (or folder) gets from the process umask, as
    `open()` / `os.makedirs` would give it; `tempfile` makes 0600 / 0700."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path, data):
    """Writes `data` to `path` atomically (temp file + rename).

    The file gets the mode an ordinary write would give it (an existing
    file's mode is kept); a symbolic link at `path` is followed, so the
    file it points to is replaced, not the link.
    """
    path = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(
            f"The folder of the output file does not exist. Received: "
            f"path={path!r}"
        )
    mode = (
        os.stat(path).st_mode & 0o7777
        if os.path.exists(path)
        else default_mode()
    )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_prompt_file(path, tensors, metadata):
    """Writes named float tensors and a JSON-able metadata dict atomically.

    Refuses non-finite values: a diverged prompt is never written.
    """
    from safetensors.numpy import save

    arrays = {}
    for name, value in tensors.items():
        array = np.ascontiguousarray(np.asarray(value, dtype="float32"))
        _check_finite(array, name, path)
        arrays[name] = array
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header["metadata"] = json.dumps(metadata, sort_keys=True)
    header["checksum"] = _checksum(header["metadata"], arrays)
    atomic_write_bytes(path, save(arrays, metadata=header))


def _checksum(metadata_json, arrays):
    """SHA-256 of the metadata and every tensor (name, shape, values): a
    file changed after writing (a flipped byte, an edited field) fails
    it."""
    digest = hashlib.sha256(metadata_json.encode("utf-8"))
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name], dtype="<f4")
        digest.update(json.dumps([name, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_finite(array, name, path):
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"The tensor {name!r} of prompt file path={os.fspath(path)!r} "
            f"holds {bad} non-finite values (NaN or Inf); a diverged prompt "
            "is never saved or loaded. Train again with a smaller learning "
            "rate."
        )


# What the trained tensors besides the prompt are, by name prefix.
_TENSOR_KINDS = {"head/": "a classification head"}


def describe_tensors(names):
    """`names` of extra tensors in words, for messages."""
    for prefix, words in _TENSOR_KINDS.items():
        if names and all(n.startswith(prefix) for n in names):
            return f"{words} {names}"
    return f"extra tensors {names}"


# The metadata fields a reader relies on, with the type each must have.
_FIELDS = {
    "prompt_length": int,
    "num_prompts": int,
    "hidden_dim": int,
    "vocabulary_size": int,
}
_OPTIONAL_FIELDS = {
    "backbone_class": str,
    "embedding_fingerprint": str,
    "task_class": str,
    "family": str,
    "pooling": str,
}


def _schema_error(path, field, problem):
    return ValueError(
        f"Malformed prompt file path={path!r}: field {field!r} {problem}"
    )


def _check_metadata(metadata, path):
    if not isinstance(metadata, dict):
        raise _schema_error(path, "metadata", "is not a JSON object")
    for field, expected in _FIELDS.items():
        value = metadata.get(field)
        if isinstance(value, bool) or not isinstance(value, expected):
            raise _schema_error(
                path, field, f"must be an int. Found: {value!r}"
            )
        if value < 1:
            raise _schema_error(path, field, f"must be >= 1. Found: {value}")
    depth = metadata.get("prompt_depth")
    if depth is not None and (
        isinstance(depth, bool) or not isinstance(depth, int) or depth < 1
    ):
        raise _schema_error(
            path, "prompt_depth", f"must be an int >= 1. Found: {depth!r}"
        )
    for field, expected in _OPTIONAL_FIELDS.items():
        value = metadata.get(field)
        if value is not None and not isinstance(value, expected):
            raise _schema_error(
                path, field, f"must be a {expected.__name__}. Found: {value!r}"
            )
    names = metadata.get("task_names")
    if names is not None:
        if not isinstance(names, list) or not all(
            isinstance(n, str) and n for n in names
        ):
            raise _schema_error(
                path, "task_names", f"must list non-empty strings: {names!r}"
            )
        if len(names) != metadata["num_prompts"]:
            raise _schema_error(
                path,
                "task_names",
                f"names {len(names)} tasks for "
                f"{metadata['num_prompts']} prompts: {names!r}",
            )
        if len(set(names)) != len(names):
            raise _schema_error(
                path, "task_names", f"repeats a name: {names!r}"
            )
    lengths = metadata.get("prompt_lengths")
    if lengths is not None:
        if (
            not isinstance(lengths, list)
            or len(lengths) != metadata["num_prompts"]
            or not all(
                isinstance(n, int)
                and not isinstance(n, bool)
                and 1 <= n <= metadata["prompt_length"]
                for n in lengths
            )
        ):
            raise _schema_error(
                path,
                "prompt_lengths",
                "must give one length in [1, prompt_length] per prompt. "
                f"Found: {lengths!r}",
            )


def _expected_prompt_shape(metadata):
    shape = (metadata["prompt_length"], metadata["hidden_dim"])
    if metadata.get("prompt_depth") is not None:
        shape = (metadata["prompt_depth"],) + shape
    if metadata["num_prompts"] > 1:
        shape = (metadata["num_prompts"],) + shape
    return shape


def read_prompt_file(path):
    """Reads and validates a prompt file; returns `(tensors, metadata)`.

    The one reader of prompt files in the library. The header is checked
    before any tensor is read (format, version, the metadata schema, tensor
    names, dtypes and shapes), then every tensor is checked to be finite.
    Any problem is a `ValueError` naming the file and the field or tensor.
    """
    from safetensors import SafetensorError
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No prompt file at path={path!r}")
    try:
        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
            names = list(f.keys())
            if header.get("format") != FORMAT:
                raise ValueError(
                    f"Not a keras_prompt prompt file (no '{FORMAT}' header): "
                    f"path={path!r}"
                )
            metadata, version = _parse_header(header, path)
            slices = {name: f.get_slice(name) for name in names}
            _check_tensors(slices, metadata, path)
            tensors = {name: f.get_tensor(name) for name in names}
    except (SafetensorError, OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Not a keras_prompt prompt file: path={path!r} ({error})"
        ) from error
    # Version 1 files predate the checksum.
    if version >= 2 and header.get("checksum") != _checksum(
        header["metadata"], tensors
    ):
        raise ValueError(
            f"The prompt file path={path!r} is corrupted: its checksum does "
            "not match its contents (changed after it was written)."
        )
    for name, value in tensors.items():
        _check_finite(value, name, path)
    return tensors, metadata


def _parse_header(header, path):
    raw = header.get("format_version", "0")
    try:
        version = int(raw)
    except ValueError:
        raise _schema_error(
            path, "format_version", f"is not an int. Found: {raw!r}"
        ) from None
    if version < 1:
        raise _schema_error(
            path, "format_version", f"must be >= 1. Found: {version}"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"The prompt file has format version {version}, newer than this "
            f"keras_prompt reads ({FORMAT_VERSION}): path={path!r}"
        )
    if "metadata" not in header:
        raise _schema_error(path, "metadata", "is missing")
    text = header["metadata"]
    if len(text) > MAX_METADATA_CHARS:
        raise _schema_error(
            path,
            "metadata",
            f"holds {len(text):,} characters, more than the "
            f"{MAX_METADATA_CHARS:,} a prompt file's metadata may",
        )
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise _schema_error(
            path, "metadata", f"is not valid JSON ({error})"
        ) from None
    except RecursionError:
        raise _schema_error(
            path, "metadata", "nests too deeply to be read"
        ) from None
    depth = _nesting(metadata)
    if depth > MAX_METADATA_NESTING:
        raise _schema_error(
            path,
            "metadata",
            f"nests {depth} levels deep, more than the "
            f"{MAX_METADATA_NESTING} a prompt file's metadata may",
        )
    _check_metadata(metadata, path)
    return metadata, version


def _nesting(value):
    """How deep JSON lists and objects nest in `value` (without
    recursion: a crafted file cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in value)
    return deepest


def _check_tensors(slices, metadata, path):
    if "prompt" not in slices:
        raise ValueError(f"The prompt file {path!r} holds no prompt.")
    for name, tensor in slices.items():
        if name != "prompt" and not (
            name.startswith("extra/") and len(name) > len("extra/")
        ):
            raise ValueError(
                f"The prompt file {path!r} holds an unknown tensor {name!r} "
                "(only 'prompt' and 'extra/...' tensors are allowed)."
            )
        dtype = tensor.get_dtype()
        if dtype != "F32":
            raise ValueError(
                f"The tensor {name!r} of prompt file {path!r} has dtype "
                f"{dtype}; prompt files hold float32 tensors."
            )
    shape = tuple(slices["prompt"].get_shape())
    expected = _expected_prompt_shape(metadata)
    if shape != expected:
        raise ValueError(
            f"The prompt of prompt file {path!r} has shape {shape}, but its "
            f"metadata says {expected} (num_prompts, prompt_depth, "
            "prompt_length, hidden_dim)."
        )


def describe_depth(depth):
    """A prompt depth in words, for messages."""
    if depth is None:
        return "a shallow prompt (input only; deep=False)"
    return f"deep prompts ({depth} layers; deep=True)"


def start_layer(metadata):
    """The layer a prompt file's prompt enters before (0: the input)."""
    return (metadata.get("prompt_config") or {}).get("start_layer", 0)


def check_same_backbone(metadata, expected, path):
    """Raises if a prompt file was trained against another backbone, or
    holds prompts of another depth (deep vs shallow) or entering at
    another layer (`start_layer`)."""
    check_backbone_keys(metadata, expected, path)
    theirs, ours = start_layer(metadata), start_layer(expected)
    if theirs != ours:
        raise ValueError(
            f"The prompt file {path!r} holds a prompt entering at layer "
            f"{theirs} (start_layer={theirs}); this model's prompt enters "
            f"at start_layer={ours}: build it with start_layer={theirs} "
            "(`from_preset(..., prompts=...)` does)."
        )
    theirs, ours = metadata.get("prompt_depth"), expected.get("prompt_depth")
    if theirs != ours:
        raise ValueError(
            f"The prompt file {path!r} holds {describe_depth(theirs)}, but "
            f"this model has {describe_depth(ours)}: build it with "
            f"deep={theirs is not None} (`from_preset(..., prompts=...)` "
            "does)."
        )


def check_backbone_keys(metadata, expected, path):
    """Raises if a prompt file was trained against another backbone (its
    class, width, vocabulary or embedding fingerprint differ)."""
    keys = ("backbone_class", "hidden_dim", "vocabulary_size")
    for key in keys + ("embedding_fingerprint",):
        if metadata.get(key) != expected.get(key):
            found = {k: metadata.get(k) for k in keys}
            wanted = {k: expected.get(k) for k in keys}
            raise ValueError(
                f"The prompt file {path!r} was trained on another backbone "
                f"({key} differs: file has {metadata.get(key)!r}, this "
                f"model has {expected.get(key)!r}). File backbone: {found}; "
                f"this backbone: {wanted}."
            )


# -- prompt files as the source of a model's settings ------------------------
#: The prompt file's name inside a run folder (`keras-prompt tune`) and a
#: training checkpoint's step folder.
RUN_PROMPT_FILE = "prompt.safetensors"


def resolve_prompt_path(prompts):
    """The prompt file `prompts` names: a prompt file, or a run folder
    holding `prompt.safetensors` (as `keras-prompt tune` writes).

    Args:
        prompts: str or path-like, a prompt file or a run folder.

    Returns:
        The file's path, a str.
    """
    if isinstance(prompts, bytes) or not isinstance(
        prompts, (str, os.PathLike)
    ):
        raise TypeError(
            "`prompts` must be the path of a prompt file or of a run folder "
            f"holding {RUN_PROMPT_FILE!r}. Received: prompts={prompts!r}"
        )
    path = os.fspath(prompts)
    if os.path.isdir(path):
        folder, path = path, os.path.join(path, RUN_PROMPT_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The run folder prompts={folder!r} holds no "
                f"{RUN_PROMPT_FILE!r}."
            )
    elif not os.path.isfile(path):
        raise FileNotFoundError(
            f"No prompt file or run folder at prompts={path!r}"
        )
    return path


#: A prompt file read once: its path, tensors and metadata.
PromptSource = collections.namedtuple(
    "PromptSource", ("path", "tensors", "metadata")
)


def read_prompt_source(prompts):
    """Reads the prompt file (or run folder) `prompts` once, through
    `read_prompt_file`; returns a `PromptSource`."""
    path = resolve_prompt_path(prompts)
    tensors, metadata = read_prompt_file(path)
    return PromptSource(path, tensors, metadata)


def prompt_lengths(metadata):
    """The length of each prompt of a file: its `prompt_lengths` (a
    `PromptBank` file, prompts right-aligned), else `prompt_length` for
    every prompt."""
    lengths = metadata.get("prompt_lengths")
    if lengths:
        return list(lengths)
    return [metadata["prompt_length"]] * metadata["num_prompts"]


def merge_settings(given, fixed, path):
    """`given` (the arguments a caller passed) completed by `fixed` (the
    settings the prompt file at `path` determines).

    Raises a `ValueError` naming the argument, the file and both values
    when a given argument (other than `None`) contradicts the file.
    """
    for key, value in fixed.items():
        passed = given.get(key)
        if passed is None:
            continue
        same_kind = isinstance(passed, bool) == isinstance(value, bool)
        if not same_kind or passed != value:
            raise ValueError(
                f"`{key}={passed!r}` contradicts the prompt file "
                f"path={path!r}, which holds prompts trained with "
                f"{key}={value!r}. Leave `{key}` out (the file sets it) or "
                f"pass {key}={value!r}."
            )
    merged = dict(given)
    merged.update(fixed)
    return merged
