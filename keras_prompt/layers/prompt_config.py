"""`PromptConfig`: everything that defines a soft prompt, in one place."""

import dataclasses
import random
from typing import Any
from typing import Optional

import keras
import numpy as np

from keras_prompt import initializers as prompt_initializers
from keras_prompt import prompt_files
from keras_prompt.initializers import deep_prompts
from keras_prompt.validation import check_bool
from keras_prompt.validation import check_int
from keras_prompt.version import __version__

#: The fields a prompt file records (how a prompt *started*, its
#: initializers, does not change what it is, and is left out).
FILE_FIELDS = (
    "length",
    "num_prompts",
    "variable_length",
    "deep",
    "deep_mode",
    "start_layer",
    "reparameterization",
)

#: How deep prompts meet the hidden states (`PromptConfig.deep_mode`).
DEEP_MODES = ("replace", "add")

#: The loose keywords of `FrozenBackbone` (and the tasks' `from_preset`)
#: and the `PromptConfig` field each one sets.
KEYWORD_FIELDS = {
    "prompt_length": "length",
    "num_prompts": "num_prompts",
    "variable_length": "variable_length",
    "deep": "deep",
    "start_layer": "start_layer",
    "initializer": "initializer",
    "deep_initializer": "deep_initializer",
    "reparameterization": "reparameterization",
}


def prompt_keywords(arguments):
    """The loose prompt keywords (`KEYWORD_FIELDS`) among `arguments` (a
    function's `locals()`), for `PromptConfig.resolve`."""
    return {key: arguments[key] for key in KEYWORD_FIELDS if key in arguments}


def _plain_bool(name, value):
    if isinstance(value, np.bool_):
        value = value.item()
    return check_bool(name, value)


def _serialize(initializer):
    if initializer is None or isinstance(initializer, str):
        return initializer
    return keras.initializers.serialize(initializer)


@keras.saving.register_keras_serializable(package="keras_prompt")
@dataclasses.dataclass(frozen=True, eq=False)
class PromptConfig:
    """What defines a soft prompt: its size, where it enters, how it starts
    and how it is parameterised while it trains.

    `FrozenBackbone`, every task's `from_preset`, `Recipe` and
    `keras-prompt tune` take one; their loose keywords (`prompt_length`,
    `deep`, ...) are accepted too and become a `PromptConfig` in one
    place (`PromptConfig.resolve`). `get_config` and prompt files record
    it. Whatever the method, a trained prompt is stored as plain vectors
    (one `(length, dim)` block per prompted layer), so banks, ensembles,
    export and serving do not depend on how it was trained.

    Args:
        length: int, prompt vectors per prompted layer (the paper: 1-150).
            Defaults to `20`.
        num_prompts: int, prompts in the bank (one per task or ensemble
            member). Defaults to `1`.
        variable_length: bool, a bank whose prompts may be shorter than
            `length` (right-aligned, the free positions masked); only for
            families with relative positions (T5). Defaults to `False`.
        deep: bool, deep prompts (P-Tuning v2, Liu et al., 2022): every
            transformer layer from `start_layer` on has its own `length`
            vectors, replacing the hidden states at the prompt positions
            before it runs. Defaults to `False`.
        deep_mode: str, how a deep prompt meets the hidden states at the
            prompt positions: `"replace"` (the default, P-Tuning v2: each
            layer's prompt replaces them) or `"add"` (decoder-only models:
            each layer's prompt is added to the hidden states that reach
            the prompt positions from below, so the input prompt's effect
            carries through every layer, and the deep prompts start at
            zero). An added prompt folds exactly into replacing vectors
            (a causal model's prompt positions never see the text), which
            is what prompt files, banks and serving hold; see
            `keras_prompt.layers.additive_deep_prompts`.
        start_layer: int, the transformer layer before which the prompt
            enters (Late Prompt Tuning, Liu et al., 2022). `0` (the
            default) is the input prompt, inserted with the embedded
            tokens; `k > 0` runs layers `0..k-1` on the text alone (the
            frozen model's own hidden states, which get no gradient) and
            inserts the prompt before layer `k`. T5: the encoder's layers.
        initializer: how the prompt starts (in the embedding space, as the
            input prompt): `"random_uniform"` (uniform on [-0.5, 0.5]),
            `"sampled_vocab"`, or a `keras_prompt.initializers` instance
            (`ClassLabel`, `FromTokens`, `FromPromptFile`, ...). With
            `start_layer > 0` the prompt entering layer `k` starts as the
            hidden states this input prompt produces there.
        deep_initializer: deep prompts: how the prompts of the layers after
            the first prompted one start: `"propagate"` (the default: the
            hidden states the first prompt alone produces there, so the
            deep model starts as the shallow one) or a Keras initializer.
        reparameterization: optional dict, how the prompt is computed from
            its trained parameters during training: `{"method":
            "residual", "bottleneck_dim": 400}` (Residual Prompt Tuning,
            Razdaibiedina et al., 2023: a shared bottleneck MLP with
            LayerNorm and a skip connection over each prompt vector;
            `"residual"` alone takes the defaults). Folded into plain
            vectors when the prompt is saved or read. Defaults to `None`.

    Example:

    ```python
    import keras_prompt

    config = keras_prompt.PromptConfig(length=10, deep=True, start_layer=2)
    config.replace(num_prompts=3).num_prompts  # 3
    keras_prompt.PromptConfig.from_config(config.get_config()) == config
    ```
    """

    length: int = 20
    num_prompts: int = 1
    variable_length: bool = False
    deep: bool = False
    deep_mode: str = "replace"
    start_layer: int = 0
    initializer: Any = "random_uniform"
    deep_initializer: Any = deep_prompts.PROPAGATE
    reparameterization: Optional[dict] = None

    def __post_init__(self):
        check_int("length", self.length, 1)
        check_int("num_prompts", self.num_prompts, 1)
        check_int("start_layer", self.start_layer, 0)
        variable_length = _plain_bool("variable_length", self.variable_length)
        deep = _plain_bool("deep", self.deep)
        if variable_length and self.num_prompts < 2:
            raise ValueError(
                "`variable_length=True` needs a bank (`num_prompts` >= 2). "
                f"Received: num_prompts={self.num_prompts}"
            )
        if self.deep_mode not in DEEP_MODES:
            raise ValueError(
                f"`deep_mode` must be one of {DEEP_MODES}. Received: "
                f"deep_mode={self.deep_mode!r}"
            )
        if self.deep_mode != "replace" and not deep:
            raise ValueError(
                f"`deep_mode={self.deep_mode!r}` is a way of training deep "
                "prompts: set `deep=True` too. Received: "
                f"deep_mode={self.deep_mode!r}, deep={deep!r}"
            )
        # Checking a name builds an initializer, and an unseeded Keras one
        # draws its seed from Python's generator: leave that untouched, so
        # a seeded program draws the same values with or without a config.
        state = random.getstate()
        try:
            initializer = self.initializer
            if isinstance(initializer, dict):
                initializer = keras.initializers.deserialize(initializer)
            prompt_initializers.get(initializer)
            deep_initializer = self.deep_initializer
            if isinstance(deep_initializer, dict):
                deep_initializer = keras.initializers.deserialize(
                    deep_initializer
                )
            deep_initializer = deep_prompts.get_initializer(deep_initializer)
        finally:
            random.setstate(state)
        # Lazy: the reparameterisations live with the layers that use them.
        from keras_prompt.layers import reparameterizations

        reparameterization = reparameterizations.normalize(
            self.reparameterization
        )
        for name, value in (
            ("variable_length", variable_length),
            ("deep", deep),
            ("initializer", initializer),
            ("deep_initializer", deep_initializer),
            ("reparameterization", reparameterization),
        ):
            object.__setattr__(self, name, value)

    # -- construction -------------------------------------------------------
    @classmethod
    def resolve(cls, prompt_config=None, owner="FrozenBackbone", **keywords):
        """The one place loose prompt keywords become a `PromptConfig`.

        Args:
            prompt_config: optional `PromptConfig` (or its `get_config()`
                dict) to start from.
            owner: str, named in errors.
            **keywords: the loose keywords of `KEYWORD_FIELDS`
                (`prompt_length`, `deep`, ...); `None` means "not given".

        Returns:
            A `PromptConfig`. A keyword that contradicts `prompt_config`
            is a `ValueError`, an unknown one a `TypeError`.
        """
        unknown = sorted(set(keywords) - set(KEYWORD_FIELDS))
        if unknown:
            raise TypeError(
                f"`{owner}` got unknown prompt keywords {unknown}; it takes "
                f"{sorted(KEYWORD_FIELDS)} or `prompt_config`."
            )
        if isinstance(prompt_config, dict):
            prompt_config = cls.from_config(prompt_config)
        if prompt_config is not None and not isinstance(prompt_config, cls):
            raise TypeError(
                f"`prompt_config` of `{owner}` must be a "
                "`keras_prompt.PromptConfig`. Received: "
                f"prompt_config={prompt_config!r}"
            )
        given = {
            KEYWORD_FIELDS[key]: value
            for key, value in keywords.items()
            if value is not None
        }
        if prompt_config is None:
            return cls(**given)
        for field, value in given.items():
            current = getattr(prompt_config, field)
            if value == current:
                continue
            keyword = next(k for k, f in KEYWORD_FIELDS.items() if f == field)
            raise ValueError(
                f"`{owner}` got both `prompt_config` ({field}="
                f"{current!r}) and {keyword}={value!r}: give one of them. "
                f"Received: {keyword}={value!r}"
            )
        return prompt_config

    def replace(self, **changes):
        """A copy with `changes` (field names) applied, checked again."""
        return dataclasses.replace(self, **changes)

    # -- what it means ------------------------------------------------------
    def num_prompted_layers(self, num_layers):
        """The layers holding their own prompt in a model of `num_layers`
        transformer layers: all from `start_layer` on (deep), else one."""
        self.check_layers(num_layers)
        return num_layers - self.start_layer if self.deep else 1

    def check_layers(self, num_layers, model_name="model"):
        """Raises unless `start_layer` is a layer of the model."""
        if self.start_layer and self.start_layer >= num_layers:
            raise ValueError(
                f"`start_layer` must be below the {num_layers} transformer "
                f"layers of this {model_name}. Received: "
                f"start_layer={self.start_layer}"
            )

    def __eq__(self, other):
        # Initializers compare by their configs, not by identity.
        if not isinstance(other, PromptConfig):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self):
        return hash(repr(sorted(self.get_config().items())))

    # -- serialisation ------------------------------------------------------
    def get_config(self):
        """A JSON-able dict of every field (initializers serialised)."""
        config = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
        }
        config["initializer"] = _serialize(self.initializer)
        config["deep_initializer"] = _serialize(self.deep_initializer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        unknown = sorted(
            set(config) - {f.name for f in dataclasses.fields(cls)}
        )
        if unknown:
            raise ValueError(
                f"A PromptConfig has no fields {unknown}. Received: "
                f"config={config!r}"
            )
        return cls(**config)

    def file_metadata(self):
        """What a prompt file records about the prompt (`FILE_FIELDS`)."""
        return {name: getattr(self, name) for name in FILE_FIELDS}


def file_settings(metadata):
    """The constructor arguments a prompt file's metadata determines:
    `prompt_length`, `num_prompts`, `variable_length` (a bank holding
    prompts shorter than its `prompt_length`; a single prompt stored
    right-aligned in a longer slot has its own length), `deep` and
    `start_layer`."""
    lengths = prompt_files.prompt_lengths(metadata)
    num_prompts = metadata["num_prompts"]
    settings = {
        "prompt_length": metadata["prompt_length"],
        "num_prompts": num_prompts,
        "variable_length": min(lengths) < metadata["prompt_length"],
        "deep": metadata.get("prompt_depth") is not None,
        "start_layer": prompt_files.start_layer(metadata),
    }
    if num_prompts == 1:
        settings.update(prompt_length=lengths[0], variable_length=False)
    return settings


#: The keywords a prompt file fixes, and their `PromptConfig` fields.
_FILE_KEYWORDS = {
    key: field
    for key, field in KEYWORD_FIELDS.items()
    if field
    in ("length", "num_prompts", "variable_length", "deep", "start_layer")
}


def config_for_file(config, given, explicit, metadata, source):
    """`config` with the prompt shape a prompt file determines
    (`file_settings`).

    A setting `given` (the keywords passed, `None` where not) or set by an
    `explicit` `PromptConfig` (its fields other than the defaults) that
    contradicts the file is a `ValueError`, and so is a reparameterisation
    (a file holds folded vectors).
    """
    if config.reparameterization is not None:
        raise ValueError(
            f"The prompt file {source!r} holds plain (folded) prompt "
            "vectors: load it without a reparameterization. Received: "
            f"reparameterization={config.reparameterization!r}"
        )
    default = PromptConfig()
    given = dict(given)
    for keyword, field in _FILE_KEYWORDS.items():
        value = getattr(config, field)
        if explicit and value != getattr(default, field):
            given[keyword] = value
    settings = prompt_files.merge_settings(
        given, file_settings(metadata), source
    )
    return config.replace(
        **{_FILE_KEYWORDS[key]: value for key, value in settings.items()}
    )


def file_metadata(backbone, adapter, config, depth=None, task_names=None):
    """What a prompt file records about `backbone` (with its `adapter`) and
    a prompt of `PromptConfig` `config` (`depth` prompted layers, deep)."""
    table = backbone.token_embedding.embeddings
    vocabulary_size, hidden_dim = (int(d) for d in table.shape)
    rows = prompt_files.fingerprint_rows(vocabulary_size)
    sample = keras.ops.convert_to_numpy(keras.ops.take(table, rows, 0))
    fingerprint = prompt_files.embedding_fingerprint(
        None, rows=(table.shape, sample)
    )
    # Recorded for deep prompts only: shallow files stay as they were.
    metadata = {"prompt_depth": depth} if config.deep else {}
    # Files of the paper's prompt (no method) stay as they were too.
    plain = PromptConfig(
        length=config.length,
        num_prompts=config.num_prompts,
        variable_length=config.variable_length,
        deep=config.deep,
    )
    if config.file_metadata() != plain.file_metadata():
        metadata["prompt_config"] = config.file_metadata()
    return metadata | {
        "backbone_class": type(backbone).__name__,
        "family": adapter.family,
        # Files are the same whatever it is; recorded for the record.
        "frozen_dtype": backbone.dtype_policy.name,
        "keras_backend": keras.config.backend(),
        "hidden_dim": hidden_dim,
        "vocabulary_size": vocabulary_size,
        "embedding_fingerprint": fingerprint,
        "prompt_length": config.length,
        "num_prompts": config.num_prompts,
        "task_names": list(task_names) if task_names else None,
        "keras_prompt_version": __version__,
    }
