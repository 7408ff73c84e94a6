"""Reading Hugging Face checkpoint folders, whatever the model.

A Hugging Face checkpoint is a folder with a `config.json` and weights as
`model.safetensors`, shards listed by `model.safetensors.index.json`, or
the PyTorch equivalents (`pytorch_model.bin`,
`pytorch_model.bin.index.json`, which need `torch`). It is named by a
local path or an `hf://owner/name[@revision]` handle, downloaded with
`huggingface_hub`. This module finds such folders (`resolve_path`,
`has_weights`, `preset_config`), reads their config (`read_config`) and
tensors (`TensorReader`), and writes safetensors files
(`save_safetensors`). What a model's tensors mean is its converter's
business (`keras_prompt.convert.hf_t5`).
"""

import contextlib
import json
import os

import keras
import numpy as np

from keras_prompt.prompt_files import atomic_write_bytes

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes ships with keras/jax/tf.
    ml_dtypes = None

HF_PREFIX = "hf://"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
WEIGHTS_FILES = (
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX_FILE,
    TORCH_FILE,
    TORCH_INDEX_FILE,
)

# safetensors header dtype -> numpy dtype.
SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
if ml_dtypes is not None:
    SAFETENSORS_DTYPES["BF16"] = ml_dtypes.bfloat16


# --------------------------------------------------------------------------
# Checkpoint location.
# --------------------------------------------------------------------------


def is_hf_handle(path):
    """Whether `path` is an `hf://` handle (a string starting so)."""
    return isinstance(path, str) and path.startswith(HF_PREFIX)


def has_weights(path):
    """Whether the folder `path` holds weights in one of `WEIGHTS_FILES`."""
    return any(
        os.path.isfile(os.path.join(path, name)) for name in WEIGHTS_FILES
    )


def download_hf_handle(handle, extra_files=()):
    """Downloads an `hf://owner/name[@revision]` handle's config and
    weights (safetensors, else PyTorch pickles), plus `extra_files` (e.g.
    a tokenizer's), with `huggingface_hub.snapshot_download`.

    Returns:
        The local folder of the download.

    Raises:
        ValueError: a malformed handle, or a failed download (naming the
            handle and the underlying error).
    """
    repo_id = handle[len(HF_PREFIX) :].strip("/")
    revision = None
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    if repo_id.count("/") != 1:
        raise ValueError(
            "A Hugging Face handle must look like `hf://owner/name` (or "
            f"`hf://owner/name@revision`). Received: {handle!r}"
        )
    try:
        from huggingface_hub import snapshot_download

        common = [CONFIG_FILE, *extra_files, GENERATION_CONFIG_FILE]
        local_dir = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=common + ["*.safetensors", SAFETENSORS_INDEX_FILE],
        )
        if not has_weights(local_dir):
            # Older repos only publish PyTorch pickles.
            local_dir = snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=common
                + ["pytorch_model*.bin", TORCH_INDEX_FILE],
            )
    except Exception as e:
        raise ValueError(
            f"Could not download the Hugging Face checkpoint {handle!r} "
            f"(repo_id={repo_id!r}, revision={revision!r}). Check the name and "
            "your network access, or download it yourself and pass the local "
            f"directory instead. Underlying error: {type(e).__name__}: {e}"
        ) from e
    return local_dir


def resolve_path(path, extra_files=()):
    """A local checkpoint folder for a local path or an `hf://` handle
    (downloaded with `download_hf_handle(path, extra_files)`).

    Raises:
        ValueError: `path` is neither a folder nor an `hf://` handle.
    """
    if is_hf_handle(path):
        return download_hf_handle(path, extra_files)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(
            f"`path` must be a local checkpoint directory or an "
            f"`hf://owner/name` handle. No directory at: {path!r}"
        )
    return path


def read_config(path):
    """The parsed `config.json` of the checkpoint folder `path`.

    Raises:
        ValueError: the folder has no `config.json` (or it is not JSON).
        OSError: it cannot be read.
    """
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"No `{CONFIG_FILE}` in checkpoint dir {path!r}.")
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def fetch_hf_config(handle):
    """The `config.json` of an `hf://owner/name[@revision]` repo, fetched
    alone (no weights), or `None` when it cannot be fetched or parsed."""
    repo, _, revision = handle[len(HF_PREFIX) :].partition("@")
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo, CONFIG_FILE, revision=revision or None)
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def preset_config(preset):
    """The `config.json` of `preset` as a dict, read cheaply, or `None`.

    An `hf://` handle's config is fetched alone (`fetch_hf_config`); a
    local folder's is read (`read_config`); anything else (a keras-hub
    preset name, a `kaggle://` handle), or a config that cannot be read or
    is not a JSON object, gives `None`. Never raises.
    """
    if is_hf_handle(preset):
        config = fetch_hf_config(preset)
    else:
        try:
            path = os.fspath(preset)
        except TypeError:
            return None
        if not os.path.isdir(path):
            return None
        try:
            config = read_config(path)
        except (OSError, ValueError):
            return None
    return config if isinstance(config, dict) else None


# --------------------------------------------------------------------------
# Tensors.
# --------------------------------------------------------------------------


def numpy_dtype(dtype):
    """The numpy dtype of a Keras dtype (bfloat16 from `ml_dtypes`)."""
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "bfloat16":
        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def read_safetensors_raw(filename, name):
    """Reads one tensor straight from a safetensors file's bytes (no
    framework needed).

    The fallback for safetensors builds whose numpy backend cannot
    represent a dtype (bf16 on old versions).

    Raises:
        KeyError: the file holds no tensor `name`.
        ValueError: its dtype is not in `SAFETENSORS_DTYPES`.
    """
    with open(filename, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
        if name not in header:
            raise KeyError(name)
        info = header[name]
        dtype = SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(
                f"Unsupported safetensors dtype {info['dtype']!r} for tensor "
                f"{name!r} in {filename!r}."
            )
        begin, end = info["data_offsets"]
        f.seek(8 + header_size + begin)
        data = f.read(end - begin)
    return np.frombuffer(data, dtype=dtype).reshape(info["shape"]).copy()


def save_safetensors(filename, tensors):
    """Writes `tensors` (name -> numpy array) as a safetensors file,
    atomically (`keras_prompt.prompt_files.atomic_write_bytes`), with the
    `{"format": "pt"}` metadata `transformers` insists on."""
    from safetensors.numpy import save

    atomic_write_bytes(filename, save(tensors, metadata={"format": "pt"}))


class TensorReader:
    """Name -> numpy array over single or sharded safetensors / torch files.

    Files are opened on first use and closed by `close()` (or leaving a
    `with` block). bfloat16 torch tensors are read as float32.

    Args:
        path: str, a local checkpoint folder (see `resolve_path`).

    Raises:
        ValueError: the folder holds none of `WEIGHTS_FILES`, an index
            lists a missing shard, or (on first read) only PyTorch weights
            are there and `torch` is not installed.

    Example:

    ```python
    with TensorReader(folder) as reader:
        for name in sorted(reader.names):
            print(name, reader.shape(name), reader.get(name).dtype)
    ```
    """

    def __init__(self, path):
        self.path = path
        self._stack = contextlib.ExitStack()
        self._handles = {}
        self._torch_state = {}
        self.files = {}  # tensor name -> file name.
        single = os.path.join(path, SAFETENSORS_FILE)
        index = os.path.join(path, SAFETENSORS_INDEX_FILE)
        torch_single = os.path.join(path, TORCH_FILE)
        torch_index = os.path.join(path, TORCH_INDEX_FILE)
        if os.path.isfile(single):
            self.format = "safetensors"
            for name in self._safetensors_handle(SAFETENSORS_FILE).keys():
                self.files[name] = SAFETENSORS_FILE
        elif os.path.isfile(index):
            self.format = "safetensors"
            self.files = self._read_index(index)
        elif os.path.isfile(torch_single):
            self.format = "torch"
            for name in self._torch_file(TORCH_FILE):
                self.files[name] = TORCH_FILE
        elif os.path.isfile(torch_index):
            self.format = "torch"
            self.files = self._read_index(torch_index)
        else:
            raise ValueError(
                f"No weights in checkpoint dir {path!r}: expected "
                f"`{SAFETENSORS_FILE}` or `{SAFETENSORS_INDEX_FILE}` (or "
                f"`{TORCH_FILE}` / `{TORCH_INDEX_FILE}`)."
            )

    def _read_index(self, index_path):
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"No `weight_map` in {index_path!r}.")
        for filename in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(self.path, filename)):
                raise ValueError(
                    f"Shard {filename!r} listed in {index_path!r} is missing."
                )
        return dict(weight_map)

    def _safetensors_handle(self, filename):
        if filename not in self._handles:
            from safetensors import safe_open

            handle = safe_open(
                os.path.join(self.path, filename), framework="np"
            )
            self._handles[filename] = self._stack.enter_context(handle)
        return self._handles[filename]

    def _torch_file(self, filename):
        if filename not in self._torch_state:
            try:
                import torch
            except ImportError as e:
                raise ValueError(
                    f"Checkpoint {self.path!r} only has PyTorch weights "
                    f"({filename!r}); install `torch` to read them, or convert "
                    "them to safetensors."
                ) from e
            self._torch_state[filename] = torch.load(
                os.path.join(self.path, filename),
                map_location="cpu",
                weights_only=True,
            )
        return self._torch_state[filename]

    @property
    def names(self):
        """The set of tensor names in the checkpoint."""
        return set(self.files)

    def get(self, name):
        """The tensor `name` as a numpy array."""
        filename = self.files[name]
        if self.format == "torch":
            tensor = self._torch_file(filename)[name]
            import torch

            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            return tensor.numpy()
        handle = self._safetensors_handle(filename)
        try:
            return handle.get_tensor(name)
        except (TypeError, ValueError):
            return read_safetensors_raw(os.path.join(self.path, filename), name)

    def shape(self, name):
        """The shape of tensor `name`, without reading its values."""
        filename = self.files[name]
        if self.format == "torch":
            return tuple(self._torch_file(filename)[name].shape)
        handle = self._safetensors_handle(filename)
        return tuple(handle.get_slice(name).get_shape())

    def close(self):
        """Closes the open files."""
        self._stack.close()
        self._handles.clear()
        self._torch_state.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
