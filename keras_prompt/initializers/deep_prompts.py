"""How the deep prompts of a `FrozenBackbone` start.

A deep prompt (P-Tuning v2) holds one prompt per prompted layer, layer 0
being the input prompt. The prompts of layers `1..` start either from a
Keras initializer or, with `"propagate"`, from the hidden states the input
prompt alone produces at the prompt positions, so that the deep model
starts as the shallow one.
"""

import warnings

import keras
import numpy as np

#: What `deep_initializer` may name besides a Keras initializer.
PROPAGATE = "propagate"


def get_initializer(identifier):
    """`PROPAGATE`, or the Keras initializer `identifier` names.

    Raises a `ValueError` naming `deep_initializer` for anything else.
    """
    if isinstance(identifier, str) and identifier == PROPAGATE:
        return identifier
    try:
        return keras.initializers.get(identifier)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`deep_initializer` must be {PROPAGATE!r} or a Keras "
            "initializer (a name such as 'zeros', or an instance). "
            f"Received: deep_initializer={identifier!r}"
        ) from error


def initialize(model, initializer):
    """Sets the prompts of layers `1..` of `model`, a deep
    `FrozenBackbone`, with `initializer` (see `get_initializer`).

    Additive deep prompts (`deep_mode="add"`) are offsets to the hidden
    states that reach the prompt positions: `"propagate"` starts them at
    zero, which is the same start (the deep model is the shallow one).
    """
    if isinstance(initializer, str):
        if model.prompt_config.deep_mode == "add":
            initializer = keras.initializers.Zeros()
        else:
            propagate(model)
            return
    variable = model.prompt_embedding.embeddings
    values = np.array(keras.ops.convert_to_numpy(variable), "float32")
    deep = values[:, 1:] if model.num_prompts > 1 else values[1:]
    deep[...] = keras.ops.convert_to_numpy(
        initializer(deep.shape, dtype="float32")
    )
    variable.assign(values)


def propagate(model, inputs=None):
    """Sets the deep prompts of layers `1..` of `model` (a deep
    `FrozenBackbone`) to the hidden states the input prompt (layer 0)
    alone produces at the prompt positions.

    The model runs once as a shallow one (layers `1..` leave the hidden
    states unchanged), recording the hidden states at the prompt positions
    entering each layer, which then become the prompts of those layers.
    Without `inputs`, a probe of one masked token per prompt (decoder-only
    models: one token after the prompt), so the prompt positions see only
    the prompt; then a deep decoder-only model gives exactly the shallow
    model's outputs on any input, and an encoder's differs only through
    what the prompt positions would have read from the text. (A decoder
    with absolute positions, GPT-2, only on right-padded inputs: behind
    left padding its prompt sits at later positions than in the probe, and
    the shallow prompt's hidden states depend on them.)

    Args:
        model: a `FrozenBackbone` built with `deep=True`.
        inputs: optional dict of the model's inputs for one example (a
            bank: one example per prompt id, `"prompt_ids"` included); the
            deep model then reproduces the shallow model's outputs on them.

    Raises:
        ValueError: for a shallow model, or `inputs` of a single-prompt
            model holding more than one example.
    """
    if not model.deep:
        raise ValueError(
            "`init_deep_prompts` sets deep prompts; this FrozenBackbone "
            "has a shallow prompt (build it with `deep=True`)."
        )
    ids = np.arange(model.num_prompts, dtype="int32")
    if inputs is not None:
        inputs = dict(inputs)
        if model.num_prompts > 1:
            ids = np.asarray(
                keras.ops.convert_to_numpy(inputs["prompt_ids"])
            ).reshape(-1)
        elif len(next(iter(inputs.values()))) != 1:
            raise ValueError(
                "`inputs` must hold one example for a single prompt; "
                "received a batch of "
                f"{len(next(iter(inputs.values())))}."
            )
    states = prompt_position_states(model, inputs)
    variable = model.prompt_embedding.embeddings
    values = np.array(keras.ops.convert_to_numpy(variable), "float32")
    for layer, state in states.items():
        if model.num_prompts > 1:
            values[ids, layer] = state
        else:
            values[layer] = state[0]
    variable.assign(values)


def prompt_position_states(model, inputs=None, apply=False):
    """`{layer: (batch, length, dim)}` float32: the hidden states reaching
    the prompt positions before each deep layer `1..` of `model` (a deep
    `FrozenBackbone`), in one eager pass on `inputs` (default: the
    adapter's probe, one example per prompt id). The deep layers leave the
    hidden states unchanged (a shallow run) unless `apply`."""
    if inputs is None:
        inputs = model.adapter.probe_inputs(model.num_prompts)
        if model.num_prompts > 1:
            inputs["prompt_ids"] = np.arange(model.num_prompts, dtype="int32")
    with model.prompt_embedding.recording(apply=apply) as states:
        with warnings.catch_warnings():
            # Keras' note on a softmax over one position (the probe's
            # one-token T5 decoder) is noise here.
            warnings.simplefilter("ignore", UserWarning)
            model(inputs, training=False)
    return {
        layer: np.asarray(keras.ops.convert_to_numpy(state), "float32")
        for layer, state in states.items()
    }


def start_late(model, model_class):
    """Starts the prompt of `model`, a `FrozenBackbone` whose prompt
    enters at `start_layer = k > 0`, as the hidden states its initializer's
    input prompt would produce there.

    A model of `model_class` on the same frozen backbone, with a deep input
    prompt started from the same initializer and propagated
    (`propagate`), gives the hidden states at the prompt positions entering
    every layer; layer `k`'s become the late prompt and, for deep prompts
    started by `"propagate"`, those of the layers after it the deep ones
    (so the model starts as the input prompt would); another
    `deep_initializer` sets those instead.
    """
    config = model.prompt_config
    probe = model_class(
        model.backbone,
        prompt_config=config.replace(
            deep=True,
            deep_mode="replace",
            start_layer=0,
            deep_initializer=PROPAGATE,
            reparameterization=None,
            initializer=model.initializer,
        ),
        dtype=model.dtype_policy,
    )
    values = np.array(probe.prompt_values(), "float32")
    start = config.start_layer
    bank = config.num_prompts > 1
    if config.deep:
        values = values[:, start:] if bank else values[start:]
    else:
        values = values[:, start] if bank else values[start]
    model.prompt_embedding.embeddings.assign(values)
    if config.deep and (
        config.deep_mode == "add"
        or not isinstance(config.deep_initializer, str)
    ):
        initialize(model, config.deep_initializer)
