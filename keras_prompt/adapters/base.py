"""The small interface every model family implements.

An adapter knows where the prompt enters one family of keras-hub backbones
and how everything downstream (masks, positions, generation caches) must be
told. `FrozenBackbone` builds its functional graph from `inputs()` and
`forward()`; tasks ask the adapter for the family-specific pieces of
generation. Nothing outside an adapter branches on the model family.
"""

import keras
import numpy as np

_REGISTRY = []


def register_adapter(cls):
    """Class decorator adding an adapter to the registry."""
    _REGISTRY.append(cls)
    return cls


def registered_adapters():
    return list(_REGISTRY)


def supported_families():
    return [cls.family for cls in _REGISTRY]


def find_adapter_class(backbone_class):
    """The registered adapter class for a keras-hub backbone class (or a
    subclass of one), or `None`."""
    for cls in _REGISTRY:
        if cls.matches_class(backbone_class):
            return cls
    return None


def get_adapter(backbone):
    """Returns the adapter instance for `backbone`.

    Raises a `ValueError` naming the supported families when none fits.
    """
    cls = find_adapter_class(type(backbone))
    if cls is not None:
        return cls(backbone)
    raise ValueError(
        "keras_prompt has no adapter for "
        f"{type(backbone).__name__}. Supported backbone families: "
        f"{', '.join(supported_families())}. Received: backbone of class "
        f"{type(backbone).__name__}"
    )


class PromptAdapter:
    """Where a soft prompt enters one family of backbones.

    Subclasses set `family` (a short name shown in errors) and
    `backbone_classes` (the keras-hub class names they accept), and
    implement `forward` and `model_spec` (the family's size facts for the
    memory planner; `model_spec = None` where the planner does not model
    the family).

    Attributes:
        kind: `"seq2seq"`, `"causal"` or `"encoder"`; tasks check it.
        prompt_position: where the prompt sits in the sequence, documented
            per family (`0` for the start of the sequence).
        supports_mixed_prompt_lengths: whether one bank may hold prompts
            of different lengths (right-aligned, the free leading
            positions masked by `PromptEmbedding(variable_length=True)`).
            Only true where attention sees relative positions alone.
        prompt_sees_text: whether the hidden states at the prompt
            positions depend on the text (bidirectional attention). Where
            they do not (causal models), deep prompts added to them fold
            into plain vectors (`PromptConfig(deep_mode="add")`).
        prompted_inputs: the names of the backbone inputs the prompted
            sequence is computed from (T5: the encoder's), or `None` for
            all of them.
    """

    family = None
    backbone_classes = ()
    kind = None
    prompt_position = 0
    supports_mixed_prompt_lengths = False
    prompt_sees_text = True
    #: The backbone inputs of the sequence the prompt joins (`None`: all);
    #: its padding mask is the one among them ending in `"padding_mask"`.
    prompted_inputs = None

    def __init__(self, backbone):
        self.backbone = backbone
        self.last_layer_prompts = None

    @classmethod
    def matches(cls, backbone):
        return cls.matches_class(type(backbone))

    @classmethod
    def matches_class(cls, backbone_class):
        names = {klass.__name__ for klass in backbone_class.__mro__}
        return bool(names & set(cls.backbone_classes))

    # -- size facts -----------------------------------------------------------
    @classmethod
    def model_spec(cls, config, name):
        """Reads a backbone config of this family into a `ModelSpec`.

        The family's size facts for `keras_prompt.distribute.plan`: every
        adapter implements it, or sets `model_spec = None` when the planner
        does not model its family (the planner then asks for `ModelSpec`
        fields).

        Args:
            config: dict, the keras-hub backbone's `get_config()` (the
                `"config"` of a preset's `config.json`).
            name: str, the spec's name.

        Returns:
            A `keras_prompt.adapters.model_spec.ModelSpec`. A size the
            config lacks is a `TypeError`.
        """
        raise NotImplementedError(
            f"{cls.__name__} has no size facts: implement `model_spec("
            "config, name)`, or set `model_spec = None` where the planner "
            "does not model the family."
        )

    # -- graph construction -------------------------------------------------
    def inputs(self):
        """Fresh `keras.Input`s with the backbone's own input structure."""
        return {
            name: keras.Input(
                shape=tensor.shape[1:], dtype=tensor.dtype, name=name
            )
            for name, tensor in self.backbone.input.items()
        }

    def forward(self, inputs, prompt, prompt_ids=None):
        """The backbone's forward pass with `prompt` inserted.

        Args:
            inputs: dict of the backbone's own inputs.
            prompt: the `PromptEmbedding` layer.
            prompt_ids: int tensor `(batch,)` for a bank, else `None`.

        Returns:
            The backbone's outputs, with sequence outputs including the
            prompt positions.
        """
        raise NotImplementedError

    # -- deep prompts ---------------------------------------------------------
    def num_prompted_layers(self):
        """The transformer layers the prompt passes through (T5: the
        encoder's): a deep prompt has one layer of vectors per layer."""
        return len(self.backbone.transformer_layers)

    def layer_prompts(self, prompt, prompt_ids=None, offsets=0, insert=None):
        """The `LayerPrompts` each layer loop calls before transformer
        layer `index`: `x, mask = layer_prompts(index, x, mask)`.

        Args:
            prompt: the `PromptEmbedding`, or `None` (later cached steps:
                the prompt is in the cache).
            prompt_ids: the bank's ids `(batch,)`, or `None`.
            offsets: where the prompt starts in each row (an int, or one
                per row) once it is in the sequence.
            insert: `insert(x, mask) -> (x, mask)`, how the family puts
                the prompt into hidden states `(batch, L, dim)` and their
                padding mask, for a prompt entering at a later layer
                (`start_layer > 0`).

        The last one built is `self.last_layer_prompts`: after `forward`
        built a graph, its `entering` holds the hidden states a late
        prompt was inserted into (`keras_prompt.layers.frozen_prefix`).
        """
        self.last_layer_prompts = LayerPrompts(
            prompt, prompt_ids, offsets, insert
        )
        return self.last_layer_prompts

    @staticmethod
    def at_input(prompt):
        """Whether `prompt` enters with the embedded tokens (not late)."""
        return prompt is not None and prompt.start_layer == 0

    def probe_inputs(self, batch_size):
        """Inputs of one token per row under which only the prompt
        positions matter to themselves (the token is masked, or comes after
        the prompt under causal attention): what
        `FrozenBackbone.init_deep_prompts` runs to read the hidden states
        the input prompt alone produces at each layer."""
        return {
            name: np.zeros((batch_size, 1), dtype=tensor.dtype)
            for name, tensor in self.backbone.input.items()
        }

    def check_prompt_length(self, length, bank_length, model_name):
        """Raises unless a prompt of `length` may join a bank of prompts of
        `bank_length` on this family."""
        if length == bank_length or self.supports_mixed_prompt_lengths:
            return
        raise ValueError(
            f"The prompt has length {length} but this {model_name} bank "
            f"holds prompts of length {bank_length}. Only T5 banks mix "
            "prompt lengths: absolute positions (GPT-2, BERT, RoBERTa, "
            "DistilBERT) shift when a prompt is padded, and a decoder-only "
            "generation cache attends to every cached position, so padding "
            "would change the outputs. Build a bank per prompt length."
        )

    # -- positions ----------------------------------------------------------
    def max_sequence_length(self):
        """The longest sequence (prompt included) the family can embed, or
        `None` when positions are relative or rotary."""
        return None

    def check_sequence_length(self, sequence_length, prompt_length):
        """Raises before any compute if prompt + sequence is too long."""
        limit = self.max_sequence_length()
        if limit is None or sequence_length is None:
            return
        if sequence_length + prompt_length > limit:
            raise ValueError(
                f"prompt_length ({prompt_length}) + sequence_length "
                f"({sequence_length}) = {prompt_length + sequence_length} "
                f"exceeds the {limit} positions of this "
                f"{type(self.backbone).__name__}. Shorten the prompt or the "
                "preprocessor's sequence_length."
            )


class LayerPrompts:
    """Where the prompt meets each transformer layer: `PromptConfig`'s
    `start_layer` and `deep`, for every family's layer loop.

    Called as `x, mask = layer_prompts(index, x, mask)` on the hidden states
    (and padding mask) entering transformer layer `index`:

    - below `start_layer`: unchanged (the text alone; a prompt entering at
      layer 0 is inserted with the embedded tokens by the adapter);
    - at `start_layer > 0`: the prompt (its first layer) is inserted by the
      family's `insert(x, mask)`, which also extends the mask;
    - after it, deep prompts only: the hidden states at the prompt
      positions (from `offsets`) are replaced by that layer's prompt.

    Adapters call it in every pass that builds the prompt positions
    (forward and cache prefill); later cached steps pass `prompt=None`:
    the deep prompts' keys and values are in the cache.

    `entering` is the hidden states a late prompt was last inserted into
    (what the layers below `start_layer` computed from the text alone), or
    `None`.
    """

    def __init__(self, prompt, prompt_ids=None, offsets=0, insert=None):
        self.prompt = prompt
        self.prompt_ids = prompt_ids
        self.offsets = offsets
        self.insert = insert
        self.start = 0 if prompt is None else prompt.start_layer
        self.deep = bool(getattr(prompt, "deep", False))
        self.entering = None
        if self.start > 0 and insert is None:
            raise ValueError(
                "This family's adapter cannot insert a prompt at a later "
                f"layer. Received: start_layer={self.start}"
            )

    def __call__(self, index, x, mask=None):
        if self.prompt is None or index < self.start:
            return x, mask
        if index == self.start:
            if self.start > 0:
                self.entering = x
                x, mask = self.insert(x, mask)
            return x, mask
        if not self.deep:
            return x, mask
        x = self.prompt(
            x,
            prompt_ids=self.prompt_ids,
            layer=index - self.start,
            offsets=self.offsets,
        )
        return x, mask

    def inserts_at(self, index):
        """Whether layer `index` is where a late prompt enters."""
        return self.prompt is not None and 0 < self.start == index
