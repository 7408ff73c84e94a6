"""The prompt file: a few kilobytes holding trained prompts and their origin.

A prompt file is a `safetensors` file. Its tensors are the prompt variable
(`"prompt"`, shape `(length, dim)` or `(num_prompts, length, dim)`) and any
extra trained tensors a task adds (a classifier's head, prefixed
`"extra/"`). Its metadata records what the prompt was trained against: the
backbone class, hidden size, vocabulary size and a fingerprint of the frozen
token embedding table, so that a prompt is never silently loaded into a
different model. Files are written atomically: a temporary file in the same
folder is renamed over the target, so a crash never leaves half a file.
"""

import hashlib
import json
import os
import tempfile

import ml_dtypes
import numpy as np

FORMAT = "keras_prompt.prompt"
FORMAT_VERSION = 1
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


def atomic_write_bytes(path, data):
    """Writes `data` to `path` atomically (temp file + rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(
            f"The folder of the output file does not exist. Received: "
            f"path={path!r}"
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_prompt_file(path, tensors, metadata):
    """Writes named float tensors and a JSON-able metadata dict atomically."""
    from safetensors.numpy import save

    arrays = {
        name: np.ascontiguousarray(np.asarray(value, dtype="float32"))
        for name, value in tensors.items()
    }
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header["metadata"] = json.dumps(metadata, sort_keys=True)
    atomic_write_bytes(path, save(arrays, metadata=header))


def read_prompt_file(path):
    """Reads a prompt file; returns `(tensors, metadata)`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No prompt file at path={path!r}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tensors = load(data)
        header = _read_header(data)
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        raise ValueError(
            f"Not a keras_prompt prompt file: path={path!r} ({error})"
        ) from error
    if header.get("format") != FORMAT:
        raise ValueError(
            f"Not a keras_prompt prompt file (no '{FORMAT}' header): "
            f"path={path!r}"
        )
    version = int(header.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ValueError(
            f"The prompt file has format version {version}, newer than this "
            f"keras_prompt reads ({FORMAT_VERSION}): path={path!r}"
        )
    return tensors, json.loads(header["metadata"])


def _read_header(data):
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    return header.get("__metadata__", {})


def check_same_backbone(metadata, expected, path):
    """Raises if a prompt file was trained against another backbone."""
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
