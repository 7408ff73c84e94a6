"""The frozen layers below a late prompt, split from the layers above it.

With a late prompt (`PromptConfig(start_layer=k)`, `k > 0`) the layers
below `k` see the text alone, and nothing below `k` trains: when they run
without dropout, what they compute for an example is the same in every
epoch. `FrozenPrefix` splits a `FrozenBackbone`'s graph at the hidden
states entering layer `k` (the *frozen prefix* of an example): `states`
computes them, and a backbone given them (`given`) runs only the layers
from `k` on. A training run then computes them once per example and reuses
them in every later epoch (`keras_prompt.training.frozen_prefix_cache`):
its batches carry them under `KEY`, and a task hands them to its backbone
(`given_in`).

The split is read off the backbone's own graph (the tensors the family's
adapter inserted the late prompt into, `LayerPrompts.entering`), so it
holds for every registered family, and the layers above `k` are the very
layers (and weights) of the backbone.
"""

import contextlib
import threading

import keras

#: The input key under which a task's batches carry frozen prefixes.
KEY = "frozen_prefix"


def active_dropout(layers):
    """The dropout layers inside `layers` (searched recursively) that drop
    something in training (rate above 0)."""
    found = []
    for layer in layers:
        for inner in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(inner, keras.layers.Dropout) and inner.rate > 0:
                found.append(inner)
    return found


def _layers_of(function):
    """The layers (not the inputs) a `keras.Function` runs."""
    return [
        op
        for op in function.operations
        if isinstance(op, keras.layers.Layer)
        and not isinstance(op, keras.layers.InputLayer)
    ]


class FrozenPrefix:
    """The split of a late-prompted `FrozenBackbone` at the layer its
    prompt enters (see the module docstring). Built by the backbone, read
    as `FrozenBackbone.frozen_prefix`.

    Args:
        inputs: the backbone's input dict (`keras.Input`s).
        outputs: its outputs.
        entering: the hidden states the late prompt is inserted into, a
            tensor of `outputs`' graph.
        start_layer: int, the layer the prompt enters.
        names_below: the names of the inputs the states are computed
            from (the adapter's `prompted_inputs`); `None`: all but
            `"prompt_ids"`.

    Example:

    ```python
    import keras_hub
    import keras_prompt
    import numpy as np

    bert = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=4, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32, dropout=0.0,
    )
    model = keras_prompt.FrozenBackbone(bert, prompt_length=3, start_layer=2)
    inputs = {
        "token_ids": np.ones((2, 6), "int32"),
        "segment_ids": np.zeros((2, 6), "int32"),
        "padding_mask": np.ones((2, 6), "int32"),
    }
    prefix = model.frozen_prefix
    states = prefix.states(inputs)  # (2, 6, 16): entering layer 2
    with prefix.given(states):
        outputs = model(inputs)  # layers 2 and 3 only
    ```
    """

    @classmethod
    def of(cls, adapter, inputs, outputs, start_layer):
        """The split of the graph `adapter.forward` just built from
        `inputs` to `outputs`, or `None` for a prompt entering with the
        tokens (`start_layer=0`)."""
        if not start_layer:
            return None
        entering = adapter.last_layer_prompts.entering
        return cls(
            inputs, outputs, entering, start_layer, adapter.prompted_inputs
        )

    def __init__(
        self, inputs, outputs, entering, start_layer, names_below=None
    ):
        self.start_layer = int(start_layer)
        self.input_names = tuple(name for name in inputs if name != KEY)
        if names_below is None:
            names_below = [n for n in self.input_names if n != "prompt_ids"]
        self.names_below = tuple(names_below)
        #: The padding mask of the sequence the states are of.
        self.mask_name = next(
            n for n in self.names_below if n.endswith("padding_mask")
        )
        self._inputs_below = {name: inputs[name] for name in self.names_below}
        self._entering = entering
        self._bottom = keras.Function(
            self._inputs_below, entering, name="frozen_prefix"
        )
        top_inputs = dict(inputs)
        top_inputs[KEY] = entering
        self._top = keras.Function(top_inputs, outputs, name="above_prefix")
        self._given = threading.local()

    @property
    def layers_below(self):
        """The layers computing the frozen prefix (embeddings and the
        transformer layers below `start_layer`)."""
        return _layers_of(self._bottom)

    @property
    def layers_above(self):
        """The layers that run when the frozen prefix is given."""
        return _layers_of(self._top)

    def active_dropout(self):
        """The dropout layers below the prompt that drop in training: a
        frozen prefix computed once stands for every epoch's only when
        there are none."""
        return active_dropout(self.layers_below)

    def inputs_below(self, inputs):
        """The entries of `inputs` the frozen prefix is computed from."""
        return {name: inputs[name] for name in self.names_below}

    def states(self, inputs):
        """The frozen prefix of a batch: the hidden states entering
        `start_layer`, `(batch, length, hidden_dim)` in the backbone's
        compute dtype, as in inference (no dropout).

        Args:
            inputs: dict of the backbone's inputs (`"prompt_ids"` and
                other entries are ignored).
        """
        return self._bottom(self.inputs_below(inputs))

    def model_below(self):
        """A new `keras.Model` computing the frozen prefix (`states`) from
        the backbone's inputs, sharing the backbone's layers: for
        `predict_on_batch` and the like, which compile it."""
        return keras.Model(
            self._inputs_below, self._entering, name="frozen_prefix"
        )

    @contextlib.contextmanager
    def given(self, states):
        """Within it, the backbone's next call (in this thread) takes
        `states` as the hidden states entering `start_layer` instead of
        computing them from its inputs."""
        previous = getattr(self._given, "states", None)
        self._given.states = states
        try:
            yield
        finally:
            self._given.states = previous

    def take(self):
        """The states given to the current call, or `None` (read once)."""
        states = getattr(self._given, "states", None)
        self._given.states = None
        return states

    def call_above(self, inputs, states):
        """The backbone's outputs from its `inputs` and the frozen prefix
        `states`: the layers from `start_layer` on."""
        values = {name: inputs[name] for name in self.input_names}
        values[KEY] = states
        return self._top(values)


def given_in(inputs, backbone):
    """`(inputs, context)`: a task's `inputs` without the frozen prefixes
    a batch may carry under `KEY`, and the context within which
    `backbone`'s next call takes them (a null context without them).

    Frozen prefixes for a backbone whose prompt enters with the tokens are
    a `ValueError`.
    """
    if not isinstance(inputs, dict) or KEY not in inputs:
        return inputs, contextlib.nullcontext()
    inputs = dict(inputs)
    states = inputs.pop(KEY)
    prefix = backbone.frozen_prefix
    if prefix is None:
        raise ValueError(
            f"The inputs hold {KEY!r} states, but this model's prompt "
            "enters with the tokens (start_layer=0): there is no frozen "
            f"prefix to give. Received: inputs with keys {sorted(inputs)}"
        )
    return inputs, prefix.given(states)
