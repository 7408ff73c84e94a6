"""Offline stand-ins for running the tutorials in the project's CI.

The notebooks import this module only when `KERAS_PROMPT_TUTORIAL_CI=1`
(see their PARAMETERS cell); on Colab nothing here is used. It swaps the
downloads of the real runs for things made on the spot: a tiny T5 written in
the Hugging Face checkpoint layout, the local TFDS copy of GLUE SST-2 in
`../shared/tfds`, and `tfds.testing.mock_data` for datasets that are not
available offline.
"""

import os
import tempfile

TUTORIALS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TUTORIALS_DIR)


def shared_tfds_dir():
    """`../shared/tfds` of the repository root: a TFDS data dir with
    `glue/sst2`."""
    return os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "tfds"))


def output_dir(name=None):
    """A scratch folder for what a notebook writes (prompt files, exports).

    `KERAS_PROMPT_TUTORIAL_OUTPUT` (set by the tests to their temporary
    directory) or a new temporary folder; never the repository.
    """
    root = os.environ.get("KERAS_PROMPT_TUTORIAL_OUTPUT")
    if root:
        path = os.path.join(root, name) if name else root
        os.makedirs(path, exist_ok=True)
        return path
    return tempfile.mkdtemp(prefix=f"{name or 'tutorial'}_")


def tiny_t5_checkpoint(path=None, seed=0, hidden_dim=32, num_layers=2):
    """Writes a tiny random T5 in the Hugging Face layout; returns its folder.

    The folder looks like a downloaded `google/t5-*-lm-adapt` checkpoint
    (`config.json`, `model.safetensors`, `spiece.model`), so the notebooks
    load it with the same `from_preset(folder)` calls as the real one. The
    vocabulary is the toy world's (`keras_prompt.toy`), 21 words.
    """
    import keras
    import keras_prompt

    from keras_prompt import toy
    from keras_prompt.convert import save_hf_t5_checkpoint

    if path is None:
        path = output_dir("tiny_t5_checkpoint")
    keras_prompt.set_random_seed(seed)
    tokenizer = toy.toy_t5_preprocessor().tokenizer
    backbone = toy.toy_t5(
        tokenizer.vocabulary_size(),
        hidden_dim=hidden_dim,
        num_layers=num_layers,
    )
    save_hf_t5_checkpoint(backbone, path, tokenizer_proto=tokenizer)
    return path


_MOCKS = []


def mock_tfds(num_examples=32):
    """Serves random records for every TFDS dataset from now on.

    Enters `tfds.testing.mock_data` for the rest of the kernel's life (a
    notebook cannot wrap all its cells in one `with` block). The records
    have the real features (text, labels) but random content.
    """
    import tensorflow_datasets as tfds

    mock = tfds.testing.mock_data(num_examples=num_examples)
    mock.__enter__()
    _MOCKS.append(mock)
