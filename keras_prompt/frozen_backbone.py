import keras
import keras_hub
import numpy as np

from keras_prompt import initializers as prompt_initializers
from keras_prompt import prompt_files
from keras_prompt.adapters import get_adapter
from keras_prompt.convert.presets import check_preset_kwargs
from keras_prompt.convert.presets import load_backbone
from keras_prompt.initializers import deep_prompts
from keras_prompt.layers import additive_deep_prompts
from keras_prompt.layers import prompt_config as prompt_config_module
from keras_prompt.layers.float32_noise_dropout import use_float32_noise
from keras_prompt.layers.frozen_prefix import FrozenPrefix
from keras_prompt.layers.frozen_weights import frozen_weights_unwatched
from keras_prompt.layers.index_checks import check_dtype
from keras_prompt.layers.prompt_config import KEYWORD_FIELDS
from keras_prompt.layers.prompt_config import PromptConfig
from keras_prompt.layers.prompt_config import file_metadata
from keras_prompt.layers.prompt_config import prompt_keywords
from keras_prompt.layers.prompt_embedding import PromptEmbedding
from keras_prompt.validation import check_kwargs

#: What `deep_initializer` may name besides a Keras initializer.
PROPAGATE = deep_prompts.PROPAGATE

#: The arguments of `FrozenBackbone.from_preset` besides the backbone's.
FROM_PRESET_ARGUMENTS = (
    "preset",
    "load_weights",
    "prompts",
    "prompt_config",
) + tuple(KEYWORD_FIELDS)


def _prompt_dtype_policy(policy):
    """The prompt's policy: the backbone's, with float32 variables.

    A backbone loaded with `dtype="bfloat16"` (or float16) stores its
    frozen weights in that dtype; the prompt still trains in float32 (as its
    optimizer state does) and computes in the backbone's dtype.
    """
    if policy.variable_dtype in ("bfloat16", "float16"):
        return keras.DTypePolicy(f"mixed_{policy.compute_dtype}")
    return policy


@keras.saving.register_keras_serializable(package="keras_prompt")
class FrozenBackbone(keras_hub.models.Backbone):
    """A frozen keras-hub backbone with a learned soft prompt.

    Wraps a pretrained backbone, freezes every one of its weights and
    inserts a `PromptEmbedding` right after the token embedding, where the
    family's adapter says the prompt goes (for T5: the encoder input only).
    The padding mask is extended so attention sees the prompt. The only
    trainable variable is the prompt. The frozen model's dropout stays
    active in training (`fit`), as in fine-tuning; its layers draw their
    noise in float32 whatever the backbone's dtype, so a bfloat16 backbone
    drops the same positions as a float32 one for the same seed (Keras
    draws it in the activations' dtype: other masks). Set the backbone's
    own `dropout` to 0 to train without it.

    With `deep=True` the prompt is deep (P-Tuning v2): besides the input
    prompt, each transformer layer after the first (T5: each encoder
    layer) has its own `prompt_length` vectors, which replace the hidden
    states at the prompt positions before that layer runs; masks and
    positions are as for the shallow prompt. The prompt variable then has
    shape `(num_layers, prompt_length, dim)` (a bank: `(num_prompts,
    num_layers, prompt_length, dim)`), layer 0 being the input prompt.

    Inputs are the wrapped backbone's own inputs, plus `"prompt_ids"`
    (int, shape `(batch,)`) when `num_prompts > 1`. Sequence outputs
    include the `prompt_length` prompt positions, where the family's
    adapter puts them: T5, the start of the encoder input; decoder-only
    LMs, right before each row's first real token (after any left
    padding); BERT-style encoders, right after `[CLS]`, which stays at
    position 0 for pooling.

    Attributes of the wrapped backbone (`hidden_dim`, `num_layers`,
    `vocabulary_size`, ...) are reachable on the wrapper. A late prompt's
    `frozen_prefix` splits off the layers below it (else `None`).

    Args:
        backbone: a keras-hub backbone of a supported family, with its
            pretrained weights already loaded.
        prompt_length: int, number of prompt vectors (>= 1); a
            `PromptConfig` field (`length`), like the keywords below.
            Defaults to 20.
        initializer: how the prompt starts: `"random_uniform"` (uniform on
            [-0.5, 0.5], the default), `"sampled_vocab"` (embeddings of
            tokens sampled from the 5,000 most common) or a
            `keras_prompt.initializers` instance such as `ClassLabel` or
            `FromPromptFile`; initialisers that read the vocabulary are
            bound to this backbone's embedding table.
        num_prompts: int, prompts in the bank (one per task or ensemble
            member). Defaults to `1`.
        variable_length: bool, for a bank on a family whose adapter
            `supports_mixed_prompt_lengths` (T5): prompts may be shorter
            than `prompt_length` (right-aligned, the free positions
            masked; see `PromptEmbedding`). `PromptBank` sets it. Defaults
            to `False`.
        deep: bool, deep prompts (one per layer, see above). Defaults to
            `False`.
        deep_initializer: how the deep prompts after the first prompted
            layer start: `"propagate"` (the default) sets them to the
            hidden states the first prompt alone produces at the prompt
            positions entering each layer (`init_deep_prompts`), so the
            deep model starts as the shallow one (exactly for decoder-only
            models, whose prompt positions never see the text; with
            absolute positions, GPT-2, on right-padded inputs only); or any
            Keras initializer (e.g. `"zeros"`, `RandomNormal(stddev=0.02)`).
        start_layer: int, late prompts: the transformer layer before which
            the prompt enters (see `PromptConfig`). Defaults to `0`.
        reparameterization: optional reparameterisation while training
            (see `PromptConfig`), e.g. `"residual"`.
        prompt_config: a `keras_prompt.PromptConfig` holding all of the
            above; a keyword given besides it must agree with it.
        **kwargs: `name`, `trainable`, `dtype` of `keras.Model`.

    Example:

    ```python
    import keras_hub
    import keras_prompt
    import numpy as np

    t5 = keras_hub.models.T5Backbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32,
    )
    backbone = keras_prompt.FrozenBackbone(t5, prompt_length=4)
    outputs = backbone({
        "encoder_token_ids": np.ones((2, 6), "int32"),
        "encoder_padding_mask": np.ones((2, 6), "int32"),
        "decoder_token_ids": np.ones((2, 3), "int32"),
        "decoder_padding_mask": np.ones((2, 3), "int32"),
    })
    outputs["encoder_sequence_output"].shape  # (2, 10, 16)
    len(backbone.trainable_weights)  # 1: the prompt
    ```
    """

    def __init__(
        self,
        backbone,
        prompt_length=None,
        initializer=None,
        num_prompts=None,
        variable_length=None,
        deep=None,
        deep_initializer=None,
        start_layer=None,
        reparameterization=None,
        prompt_config=None,
        **kwargs,
    ):
        if not isinstance(backbone, keras_hub.models.Backbone):
            raise TypeError(
                "`backbone` must be a keras-hub Backbone. "
                f"Received: backbone={backbone!r}"
            )
        if isinstance(backbone, FrozenBackbone):
            raise TypeError(
                "`backbone` is already a FrozenBackbone; wrap the plain "
                "keras-hub backbone instead."
            )
        check_kwargs(
            "FrozenBackbone",
            kwargs,
            allowed=("name", "trainable", "dtype"),
            known=("backbone", "prompt_config") + tuple(KEYWORD_FIELDS),
        )
        config = PromptConfig.resolve(
            prompt_config, **prompt_keywords(locals())
        )
        adapter = get_adapter(backbone)
        if config.variable_length and not adapter.supports_mixed_prompt_lengths:
            raise ValueError(
                f"{type(backbone).__name__} cannot hold prompts of different "
                "lengths in one bank (its positions are not relative). "
                f"Received: variable_length={config.variable_length!r}"
            )
        limit = adapter.max_sequence_length()
        if limit is not None and config.length >= limit:
            # Before any probe runs: a prompt that leaves no position for
            # the text is the prompt's fault, whatever the inputs.
            raise ValueError(
                f"prompt_length ({config.length}) leaves no room for text "
                f"in the {limit} positions of this "
                f"{type(backbone).__name__}. Received: "
                f"prompt_length={config.length}"
            )
        additive_deep_prompts.check_applies(
            config, adapter, type(backbone).__name__
        )
        num_layers = adapter.num_prompted_layers()
        config.check_layers(num_layers, type(backbone).__name__)
        depth = config.num_prompted_layers(num_layers) if config.deep else None
        initializer = prompt_initializers.get(config.initializer)
        if isinstance(initializer, prompt_initializers.EmbeddingInitializer):
            initializer.bind(backbone.token_embedding)
        check_source = getattr(initializer, "check_prompt_config", None)
        if check_source is not None:
            # A prompt file to start from: checked before anything builds.
            check_source(
                config, file_metadata(backbone, adapter, config, depth)
            )
        backbone.trainable = False
        # Dropout masks independent of the frozen weights' dtype (the same
        # seed drops the same positions in bfloat16 as in float32).
        use_float32_noise(backbone)
        prompt = PromptEmbedding(
            config.length,
            initializer=initializer,
            num_prompts=config.num_prompts,
            variable_length=config.variable_length,
            depth=depth,
            start_layer=config.start_layer,
            deep_mode=config.deep_mode,
            reparameterization=config.reparameterization,
            dtype=_prompt_dtype_policy(backbone.dtype_policy),
            name="prompt_embedding",
        )
        inputs = adapter.inputs()
        prompt_ids = None
        if config.num_prompts > 1:
            prompt_ids = keras.Input(shape=(), dtype="int32", name="prompt_ids")
            inputs["prompt_ids"] = prompt_ids
        outputs = adapter.forward(inputs, prompt, prompt_ids)
        kwargs.setdefault("dtype", backbone.dtype_policy)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.frozen_prefix = FrozenPrefix.of(
            adapter, inputs, outputs, config.start_layer
        )

        self.backbone = backbone
        self.adapter = adapter
        self.prompt_embedding = prompt
        self.prompt_config = config
        self.initializer = initializer
        self.token_embedding = backbone.token_embedding
        if getattr(initializer, "sets_every_layer", False):
            if config.deep_mode == additive_deep_prompts.MODE:
                # The file's plain vectors, as offsets that fold into them.
                additive_deep_prompts.unfold(self, prompt.folded_values())
        elif config.start_layer > 0:
            deep_prompts.start_late(self, type(self))
        elif config.deep:
            deep_prompts.initialize(self, config.deep_initializer)

    # The prompt settings, read from `prompt_config`.
    prompt_length = property(lambda self: self.prompt_config.length)
    num_prompts = property(lambda self: self.prompt_config.num_prompts)
    variable_length = property(lambda self: self.prompt_config.variable_length)
    deep = property(lambda self: self.prompt_config.deep)
    start_layer = property(lambda self: self.prompt_config.start_layer)
    deep_initializer = property(
        lambda self: self.prompt_config.deep_initializer
    )

    def __getattr__(self, name):
        # Reach the wrapped backbone's attributes (hidden_dim, num_layers,
        # transformer layers, ...). Only called when normal lookup fails.
        if name.startswith("_") or name == "backbone":
            raise AttributeError(name)
        backbone = self.__dict__.get("backbone")
        if backbone is None:
            raise AttributeError(name)
        return getattr(backbone, name)

    @property
    def family(self):
        return self.adapter.family

    @property
    def prompt_depth(self):
        """The layers of deep prompts, or `None` for a shallow prompt."""
        return self.prompt_embedding.depth

    def task_prompt_shape(self, length=None):
        """The shape of one task's prompt: `([depth,] length, dim)`."""
        length = self.prompt_length if length is None else length
        shape = (length, int(self.prompt_embedding.dim))
        if self.deep:
            shape = (self.prompt_depth,) + shape
        return shape

    def init_deep_prompts(self, inputs=None):
        """Sets the deep prompts of layers `1..` to the hidden states the
        input prompt (layer 0) alone produces at the prompt positions, so
        that the deep model starts as the shallow one (see
        `keras_prompt.initializers.deep_prompts.propagate`).

        Args:
            inputs: optional dict of this model's inputs for one example
                (a bank: one example per prompt id, `"prompt_ids"`
                included); the deep model then reproduces the shallow
                model's outputs on them. Defaults to a probe of one masked
                token per prompt.
        """
        deep_prompts.propagate(self, inputs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        if isinstance(inputs, dict) and inputs.get("prompt_ids") is not None:
            # Before the functional model casts them to int32 (`1.9` would
            # become `1`); the range is checked where the prompt is read.
            check_dtype("prompt_ids", inputs["prompt_ids"])
        prefix = self.frozen_prefix
        states = None if prefix is None else prefix.take()
        with frozen_weights_unwatched(self.variables):
            if states is not None:  # Given: run the layers above it only.
                return prefix.call_above(inputs, states)
            return super().call(inputs, training=training, mask=mask, **kwargs)

    def get_config(self):
        config = super().get_config()
        prompt_config = self.prompt_config
        if getattr(prompt_config.initializer, "sets_every_layer", False):
            # A prompt started from a file lives in the weights once built:
            # a restored model must not need that file.
            prompt_config = prompt_config.replace(initializer="zeros")
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "prompt_config": prompt_config.get_config(),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return super().from_config(config)

    @classmethod
    def from_preset(
        cls,
        preset,
        prompt_length=None,
        initializer=None,
        num_prompts=None,
        load_weights=True,
        variable_length=None,
        prompts=None,
        deep=None,
        deep_initializer=None,
        start_layer=None,
        reparameterization=None,
        prompt_config=None,
        **kwargs,
    ):
        """Loads a pretrained backbone and wraps it with a prompt.

        Accepts anything `keras_hub.models.Backbone.from_preset` accepts
        (built-in names, `kaggle://`, `hf://`, local preset folders), and
        Hugging Face T5 checkpoint folders (`config.json` +
        `model.safetensors`, e.g. T5 1.1 LM-adapted). The pretrained
        weights load first; the prompt is inserted afterwards.

        With `prompts=`, a trained prompt file (or a run folder of
        `keras-prompt tune`) is read first, before the backbone is loaded:
        it sets the prompt's shape (`prompt_length`, `num_prompts`,
        `variable_length`, `deep`, `start_layer`), and its prompt is
        loaded into the new backbone (the prompt of a task file; a
        classifier's head is left out, see `PromptClassifier`). An
        argument that contradicts the file is a `ValueError`.

        Args:
            preset: the preset name, handle or folder.
            prompt_length: int, number of prompt vectors. Defaults to 20,
                or the prompt file's.
            initializer: see the class docstring.
            num_prompts: int, prompts in the bank. Defaults to 1, or the
                prompt file's.
            load_weights: bool, load the pretrained weights.
            variable_length: bool, see the class docstring. Defaults to
                `False`, or what the prompt file needs.
            prompts: optional path of a prompt file written by
                `save_prompts`, or of a folder holding `prompt.safetensors`.
            deep: bool, deep prompts (see the class docstring). Defaults
                to `False`, or the prompt file's.
            deep_initializer: see the class docstring.
            start_layer: int, late prompts (see `PromptConfig`). Defaults
                to `0`, or the prompt file's.
            reparameterization: see `PromptConfig` (not with `prompts`:
                a file holds folded vectors).
            prompt_config: a `PromptConfig` instead of the keywords.
            **kwargs: passed to the backbone's `from_preset`: `dtype` and
                the preset backbone class's constructor arguments.
                `dtype="auto"`, the default: bfloat16 frozen weights
                where the hardware multiplies bfloat16 natively (TPU, GPUs
                of compute capability >= 8.0, CPUs with AVX512-BF16 or
                AMX; `keras_prompt.convert.precision.fast_bfloat16`;
                `KERAS_PROMPT_BFLOAT16=0` in the environment turns it
                off), float32 elsewhere; `dtype="float32"` on request.
                The frozen weights need no float32 master copy, so
                bfloat16 halves their memory and, on MiniLM here, trains
                1.4-1.6x faster; the prompt, a head and the optimizer state
                stay float32 and prompt files are the same in both
                (`docs/performance.md`); the file records the frozen
                weights' dtype (`"frozen_dtype"`). Any other keyword (a misspelt
                `promt_length`) is a `TypeError` naming the closest valid
                one, raised before anything is loaded.

        Example:

        ```python
        backbone = keras_prompt.FrozenBackbone.from_preset(
            "t5_base_multi", prompt_length=20, initializer="sampled_vocab"
        )
        trained = keras_prompt.FrozenBackbone.from_preset(
            "t5_base_multi", prompts="runs/glue/rte/prompt.safetensors"
        )
        ```
        """
        check_preset_kwargs(
            "FrozenBackbone.from_preset",
            preset,
            kwargs,
            known=FROM_PRESET_ARGUMENTS,
        )
        config = PromptConfig.resolve(
            prompt_config,
            owner="FrozenBackbone.from_preset",
            **prompt_keywords(locals()),
        )
        source = None
        if prompts is not None:
            source = prompt_files.read_prompt_source(prompts)
            given = {
                "prompt_length": prompt_length,
                "num_prompts": num_prompts,
                "variable_length": variable_length,
                "deep": deep,
                "start_layer": start_layer,
            }
            config = prompt_config_module.config_for_file(
                config,
                given,
                prompt_config is not None,
                source.metadata,
                source.path,
            )
        # Frozen weights: bfloat16 where this machine multiplies it
        # natively, unless a dtype is given.
        kwargs.setdefault("dtype", "auto")
        backbone = load_backbone(preset, load_weights=load_weights, **kwargs)
        model = cls(backbone, prompt_config=config)
        if source is not None:
            prompt_files.check_same_backbone(
                source.metadata, model.prompt_metadata(), source.path
            )
            model.load_file_prompt(
                source.tensors["prompt"], source.metadata, source.path
            )
        return model

    #: The constructor arguments a prompt file's metadata determines.
    prompt_file_settings = staticmethod(prompt_config_module.file_settings)

    # -- prompt files -------------------------------------------------------
    def prompt_metadata(self, task_names=None):
        """What a prompt file records about this backbone and prompt."""
        return file_metadata(
            self.backbone,
            self.adapter,
            self.prompt_config,
            self.prompt_depth,
            task_names,
        )

    def save_prompts(self, path, task_names=None, extra_tensors=None, **info):
        """Writes the prompt (and optional extras) to a small file.

        Args:
            path: the file to write (conventionally `*.prompt.safetensors`).
                Written atomically.
            task_names: optional list of names, one per prompt in the bank.
            extra_tensors: optional dict of further trained arrays (tasks
                store their heads here).
            **info: further JSON-able metadata.
        """
        if task_names is not None and len(task_names) != self.num_prompts:
            raise ValueError(
                f"`task_names` must name each of the {self.num_prompts} "
                f"prompts. Received: task_names={task_names!r}"
            )
        metadata = self.prompt_metadata(task_names)
        metadata.update(info)
        tensors = {"prompt": self.prompt_values()}
        for name, value in (extra_tensors or {}).items():
            tensors[f"extra/{name}"] = value
        prompt_files.write_prompt_file(path, tensors, metadata)

    def prompt_values(self):
        """The prompt as a NumPy array of plain vectors (a
        reparameterised or additive prompt folded)."""
        if self.prompt_config.deep_mode == additive_deep_prompts.MODE:
            return additive_deep_prompts.fold(self)
        return self.prompt_embedding.folded_values()

    def read_prompts(self, path):
        """Reads and checks a prompt file for this backbone.

        Returns `(prompt, extras, metadata)` without assigning anything.
        """
        tensors, metadata = prompt_files.read_prompt_file(path)
        prompt_files.check_same_backbone(metadata, self.prompt_metadata(), path)
        prompt = tensors.pop("prompt")
        extras = {
            name[len("extra/") :]: value
            for name, value in tensors.items()
            if name.startswith("extra/")
        }
        return prompt, extras, metadata

    def load_prompts(self, path):
        """Loads a prompt file saved by `save_prompts`.

        Raises a `ValueError` when the file was trained on another backbone
        (class, width, vocabulary or embedding table differ) or holds a
        prompt of another shape. Returns the file's metadata.
        """
        self.check_plain_prompt(path)
        prompt, _, metadata = self.read_prompts(path)
        self.load_file_prompt(prompt, metadata, path)
        return metadata

    def check_plain_prompt(self, source):
        """Raises unless the prompt takes plain vectors as they are (a
        reparameterised one would see them through its network)."""
        spec = self.prompt_config.reparameterization
        if spec is not None:
            raise ValueError(
                f"The prompt file {source!r} holds plain (folded) prompt "
                "vectors, and this model's prompt is reparameterised "
                f"(reparameterization={spec!r}): load it into a model "
                "built without one."
            )

    def file_prompt(self, prompt, metadata, source):
        """A prompt file's prompt as this backbone holds it, checked: a
        single prompt stored right-aligned in a longer slot (a one-task
        `PromptBank.save`) is cut to its own length; a bank of prompts of
        different lengths needs `variable_length=True`."""
        lengths = prompt_files.prompt_lengths(metadata)
        length = metadata["prompt_length"]
        if metadata["num_prompts"] == 1:
            return prompt[..., length - lengths[0] :, :]
        if min(lengths) < length and not self.variable_length:
            raise ValueError(
                f"The prompt file {source!r} holds prompts of lengths "
                f"{lengths}, the shorter ones right-aligned in {length} "
                "positions: load it into a FrozenBackbone built with "
                "`variable_length=True` (`from_preset(..., prompts=...)` "
                "does). This one has variable_length=False."
            )
        return prompt

    def load_file_prompt(self, prompt, metadata, source):
        """Checks, then assigns, the prompt of a prompt file (see
        `file_prompt`) and, for a variable-length bank, each prompt's
        mask from the file's `prompt_lengths`."""
        self.assign_prompts(
            self.file_prompt(prompt, metadata, source), source=source
        )
        self.assign_prompt_mask(metadata)

    def assign_prompt_mask(self, metadata):
        """Sets a variable-length bank's `prompt_mask` from a prompt file's
        prompt lengths (the prompts right-aligned); a no-op otherwise."""
        variable = self.prompt_embedding.prompt_mask
        if variable is None:
            return
        mask = np.zeros(tuple(variable.shape), dtype="float32")
        for row, length in enumerate(prompt_files.prompt_lengths(metadata)):
            mask[row, mask.shape[1] - length :] = 1.0
        variable.assign(mask.astype(variable.dtype))

    def assign_prompts(self, values, source="values"):
        """Sets the prompt to the plain vectors `values` (an additive
        prompt to offsets that fold into them), checking the shape."""
        values = np.asarray(values, dtype="float32")
        expected = tuple(self.prompt_embedding.embeddings.shape)
        if values.shape != expected:
            raise ValueError(
                f"The prompt from {source!r} has shape {values.shape}, but "
                f"this model's prompt has shape {expected} (prompt_length="
                f"{self.prompt_length}, num_prompts={self.num_prompts}, "
                f"deep={self.deep})."
            )
        if self.prompt_config.deep_mode == additive_deep_prompts.MODE:
            additive_deep_prompts.unfold(self, values)
            return
        self.prompt_embedding.embeddings.assign(values)
