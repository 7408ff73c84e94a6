import contextlib

import keras
import numpy as np
from keras import ops
from keras.src.backend import get_keras_mask
from keras.src.backend import set_keras_mask

from keras_prompt import initializers as prompt_initializers
from keras_prompt.layers import reparameterizations
from keras_prompt.layers.index_checks import checked_indices
from keras_prompt.validation import check_count
from keras_prompt.validation import check_int


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptEmbedding(keras.layers.Layer):
    """A learned soft prompt prepended to an embedded sequence.

    The layer holds `length` trainable vectors of the model's embedding
    width (Lester et al., 2021) and prepends them to already-embedded
    tokens: `(batch, L, dim) -> (batch, length + L, dim)`, the prompt
    first. With `num_prompts > 1` it holds a bank of prompts of the same
    length and each example picks its own through `prompt_ids`, so one
    batch can mix tasks.

    With `depth`, the prompts are deep (P-Tuning v2, Liu et al., 2022):
    every prompt has `depth` layers of `length` vectors, shape
    `(depth, length, dim)` (a bank: `(num_prompts, depth, length, dim)`).
    Layer 0 is prepended to the embedded tokens as above; layer `i >= 1`
    replaces the hidden states at the prompt positions before the
    backbone's transformer layer `i` runs, when the model's adapter calls
    the layer with `layer=i` (see `keras_prompt.adapters`); with
    `deep_mode="add"` it is added to them instead (see
    `keras_prompt.layers.additive_deep_prompts`).

    The width `dim` is taken from the input in `build`. The variable is
    kept in the layer's variable dtype (float32 under `mixed_bfloat16`)
    and the output is in the input's dtype.

    Args:
        length: int. Number of prompt vectors (the paper uses 1-150; 100 by
            default, 20 works well for small models).
        initializer: string or `keras.initializers.Initializer`. How the
            prompt starts. Defaults to `"random_uniform"`, uniform on
            `[-0.5, 0.5]` as in the paper. See `keras_prompt.initializers`
            for vocabulary-sampled and class-label initialisers.
        num_prompts: int. Number of prompts in the bank. `1` gives a single
            prompt of shape `(length, dim)`; more gives a bank of shape
            `(num_prompts, length, dim)`.
        variable_length: bool. For a bank only: each prompt may be shorter
            than `length`. The layer then also holds a non-trainable
            `prompt_mask` `(num_prompts, length)` (ones where a prompt has
            a vector, zeros at the leading positions it leaves free; a new
            bank starts fully masked) and `extend_mask(mask, prompt_ids)`
            prepends each example's row of it. Only adapters whose
            attention sees relative positions may use it (T5). Defaults to
            `False`.
        depth: optional int, the number of layers of deep prompts (a
            `FrozenBackbone` built with `deep=True` sets it to its
            transformer's number of layers from `start_layer` on). `None`
            (the default) keeps one shallow prompt.
        start_layer: int, the transformer layer before which the model's
            adapter inserts the prompt (`0`, the default: with the
            embedded tokens; see `keras_prompt.PromptConfig`). Layer `i`
            of a deep prompt then goes before transformer layer
            `start_layer + i`.
        deep_mode: str, `"replace"` (the default) or `"add"`: how layer
            `i >= 1` of a deep prompt meets the hidden states at the
            prompt positions.
        reparameterization: optional dict or name, a reparameterisation
            of the prompt while it trains (see `keras_prompt.PromptConfig`;
            `keras_prompt.layers.reparameterizations`): the model sees
            `reparameterization(embeddings)`, which `folded_values()`
            returns as plain vectors.
        **kwargs: other keyword arguments of `keras.layers.Layer`
            (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: float tensor of shape `(batch, L, dim)`, the embedded
            tokens.
        prompt_ids: optional int tensor of shape `(batch,)`, which prompt of
            the bank each example uses. Required when `num_prompts > 1`,
            ignored (may be `None`) for a single prompt. A float dtype is
            a `TypeError`; an id outside `[0, num_prompts)` is a
            `ValueError` for concrete values and fails a traced
            TensorFlow function (before the gather) otherwise, except
            under XLA (`jit_compile=True`), which compiles the check
            away: there a negative id counts from the end (`-1` is the
            last prompt) and the gather clamps what is still out of range
            to the first or last prompt, silently. The task models check
            ids before their compiled steps (in `fit` / `evaluate` /
            `predict`'s input pipeline, and eagerly before generation),
            so only a direct call of this layer inside your own
            `jit_compile=True` function needs ids checked beforehand.
        mask: optional padding mask `(batch, L)`, propagated by Keras.
        layer: optional int in `[1, depth)`, deep prompts only: instead of
            prepending, replace the `length` positions starting at
            `offsets` of the hidden states `inputs` `(batch, T, dim)` by
            layer `layer` of each example's prompt; the output has the
            input's shape.
        offsets: int, or int tensor `(batch,)`: where the prompt starts in
            each row (with `layer`). Defaults to `0`.

    Example:

    ```python
    import numpy as np
    import keras_prompt

    layer = keras_prompt.PromptEmbedding(length=4)
    x = np.random.rand(2, 6, 8).astype("float32")
    y = layer(x)  # (2, 10, 8)
    mask = layer.extend_mask(np.ones((2, 6), "int32"))  # (2, 10)

    bank = keras_prompt.PromptEmbedding(length=4, num_prompts=3)
    y = bank(x, prompt_ids=np.array([0, 2]))  # example 0 uses prompt 0

    deep = keras_prompt.PromptEmbedding(length=4, depth=3)
    y = deep(x)  # (2, 10, 8): layer 0 prepended
    h = deep(y, layer=1)  # (2, 10, 8): positions 0..3 hold layer 1
    ```
    """

    def __init__(
        self,
        length,
        initializer="random_uniform",
        num_prompts=1,
        variable_length=False,
        depth=None,
        start_layer=0,
        deep_mode="replace",
        reparameterization=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        length = check_int("length", length)
        num_prompts = check_int("num_prompts", num_prompts)
        if variable_length and num_prompts < 2:
            raise ValueError(
                "`variable_length=True` needs a bank (`num_prompts` >= 2). "
                f"Received: num_prompts={num_prompts}"
            )
        # None: a shallow prompt; an int: deep prompts, one per layer.
        depth = check_count("depth", depth, allow_none=True)
        self.length = length
        self.depth = depth
        self.start_layer = check_int("start_layer", start_layer, 0)
        if deep_mode not in ("replace", "add"):
            raise ValueError(
                "`deep_mode` must be 'replace' or 'add'. Received: "
                f"deep_mode={deep_mode!r}"
            )
        if deep_mode == "add" and depth is None:
            raise ValueError(
                "`deep_mode='add'` is for deep prompts: give `depth`. "
                f"Received: depth={depth!r}"
            )
        self.deep_mode = deep_mode
        self.reparameterization = reparameterizations.normalize(
            reparameterization
        )
        self.reparameterizer = reparameterizations.build(
            self.reparameterization, name="reparameterization"
        )
        self.num_prompts = num_prompts
        self.variable_length = bool(variable_length)
        self.prompt_mask = None
        self.initializer = prompt_initializers.get(initializer)
        self.supports_masking = True
        self.embeddings = None
        self._recorded = None
        self._record_only = True

    @property
    def is_bank(self):
        return self.num_prompts > 1

    @property
    def deep(self):
        """Whether the prompts are deep (one per layer)."""
        return self.depth is not None

    @property
    def prompt_shape(self):
        """Shape of the prompt variable without the width:
        `([num_prompts,] [depth,] length)`."""
        shape = (self.length,)
        if self.deep:
            shape = (self.depth,) + shape
        if self.is_bank:
            shape = (self.num_prompts,) + shape
        return shape

    @property
    def mask_shape(self):
        """Shape of a variable-length bank's `prompt_mask`."""
        return (self.num_prompts, self.length)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the inputs to `PromptEmbedding` must "
                f"be known. Received: input_shape={input_shape}"
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=self.prompt_shape + (int(dim),),
            initializer=self.initializer,
            trainable=True,
        )
        if self.reparameterizer is not None:
            self.reparameterizer.build(self.prompt_shape + (int(dim),))
        if self.variable_length:
            self.prompt_mask = self.add_weight(
                name="prompt_mask",
                shape=self.mask_shape,
                initializer="zeros",
                trainable=False,
            )
        self.built = True

    def state_variables(self):
        """The variables that hold the prompt(s): `{"prompt": ...}`, and
        `"prompt_mask"` for a variable-length bank."""
        variables = {"prompt": self.embeddings}
        if self.prompt_mask is not None:
            variables["prompt_mask"] = self.prompt_mask
        return variables

    def prompt_table(self):
        """The prompt vectors the model sees: the variable, or its
        reparameterisation while one is set."""
        if self.reparameterizer is None:
            return self.embeddings
        return self.reparameterizer(self.embeddings)

    def trained_parameters(self):
        """The variables training changes that a prompt file's plain
        vectors do not give back exactly (a reparameterised or additive
        prompt's own parameters; empty for a plain prompt): what a
        training checkpoint keeps besides the prompt file."""
        if self.reparameterizer is not None:
            return [self.embeddings] + list(self.reparameterizer.weights)
        if self.deep_mode == "add":
            return [self.embeddings]
        return []

    def folded_values(self):
        """`prompt_table()` as a float32 NumPy array: the plain prompt
        vectors a prompt file holds."""
        return np.asarray(
            ops.convert_to_numpy(self.prompt_table()), dtype="float32"
        )

    @property
    def dim(self):
        """The prompt width (the model's embedding size) once built."""
        if self.embeddings is None:
            return None
        return self.embeddings.shape[-1]

    def _check_width(self, inputs):
        width = inputs.shape[-1]
        if width is not None and self.dim is not None and width != self.dim:
            raise ValueError(
                f"`PromptEmbedding` '{self.name}' has width {self.dim} but "
                f"received inputs of width {width}. Received: "
                f"inputs.shape={tuple(inputs.shape)}"
            )

    def prompts_for(
        self, prompt_ids=None, batch_size=None, dtype=None, layer=0
    ):
        """The prompt vectors of each example, `(batch, length, dim)`.

        Args:
            prompt_ids: int tensor `(batch,)`; required for a bank.
            batch_size: int or scalar tensor; used for a single prompt.
            dtype: the dtype of the result (defaults to compute dtype).
            layer: int, which layer of deep prompts (`0`: the input).
        """
        dtype = dtype or self.compute_dtype
        embeddings = self.prompt_table()
        if self.deep:
            embeddings = (
                embeddings[:, layer] if self.is_bank else (embeddings[layer])
            )
        embeddings = ops.cast(embeddings, dtype)
        if self.is_bank:
            if prompt_ids is None:
                raise ValueError(
                    f"`PromptEmbedding` '{self.name}' holds a bank of "
                    f"{self.num_prompts} prompts, so `prompt_ids` (one int "
                    "per example) is required. Received: prompt_ids=None"
                )
            prompt_ids = self.checked_prompt_ids(prompt_ids)
            return ops.take(embeddings, prompt_ids, axis=0)
        prompt = ops.expand_dims(embeddings, 0)
        return ops.broadcast_to(
            prompt, (batch_size, self.length, ops.shape(embeddings)[-1])
        )

    def checked_prompt_ids(self, prompt_ids):
        """`prompt_ids` as a flat int32 tensor, checked to be ints in
        `[0, num_prompts)` before any gather reads them (see
        `keras_prompt.layers.index_checks`)."""
        prompt_ids = checked_indices(
            prompt_ids,
            self.num_prompts,
            "prompt_ids",
            where=f" for the bank '{self.name}'",
        )
        return ops.reshape(ops.cast(prompt_ids, "int32"), (-1,))

    def call(self, inputs, prompt_ids=None, mask=None, layer=None, offsets=0):
        self._check_width(inputs)
        batch_size = ops.shape(inputs)[0]
        if layer is not None:
            return self._replace(inputs, prompt_ids, layer, offsets)
        prompt = self.prompts_for(prompt_ids, batch_size, dtype=inputs.dtype)
        return ops.concatenate([prompt, inputs], axis=1)

    @contextlib.contextmanager
    def recording(self, apply=False):
        """Within this context, calls with `layer` record the hidden
        states reaching the prompt positions: yields `{layer: (batch,
        length, dim)}`, filled as the model runs (eagerly). They leave
        the hidden states unchanged (the model runs as with a shallow
        prompt) unless `apply`, which runs the deep prompts as usual."""
        self._recorded = {}
        self._record_only = not apply
        try:
            yield self._recorded
        finally:
            self._recorded = None
            self._record_only = True

    def _prompt_positions(self, inputs, offsets):
        """The hidden states at the prompt positions, `(batch, length,
        dim)`."""
        if isinstance(offsets, int):
            return inputs[:, offsets : offsets + self.length]
        source = ops.reshape(ops.cast(offsets, "int32"), (-1, 1)) + ops.arange(
            self.length, dtype="int32"
        )
        return ops.take_along_axis(inputs, ops.expand_dims(source, -1), axis=1)

    def _replace(self, inputs, prompt_ids, layer, offsets):
        """`inputs` with the prompt positions holding layer `layer`."""
        if not self.deep or not 1 <= layer < self.depth:
            raise ValueError(
                f"`layer` must be in [1, {self.depth}) for the deep prompts "
                f"of `PromptEmbedding` '{self.name}' (depth={self.depth}). "
                f"Received: layer={layer!r}"
            )
        if self._recorded is not None:
            self._recorded[layer] = self._prompt_positions(inputs, offsets)
            if self._record_only:
                return inputs
        batch_size = ops.shape(inputs)[0]
        prompt = self.prompts_for(
            prompt_ids, batch_size, dtype=inputs.dtype, layer=layer
        )
        if self.deep_mode == "add":
            prompt = prompt + self._prompt_positions(inputs, offsets)
        if isinstance(offsets, int):
            end = offsets + self.length
            outputs = ops.concatenate(
                [inputs[:, :offsets], prompt, inputs[:, end:]], axis=1
            )
        else:
            # Per-row offsets (a decoder's prompt follows left padding).
            positions = ops.arange(ops.shape(inputs)[1], dtype="int32")
            source = positions[None, :] - ops.reshape(
                ops.cast(offsets, "int32"), (-1, 1)
            )
            inside = ops.logical_and(source >= 0, source < self.length)
            source = ops.clip(source, 0, self.length - 1)
            gathered = ops.take_along_axis(
                prompt, ops.expand_dims(source, -1), axis=1
            )
            outputs = ops.where(ops.expand_dims(inside, -1), gathered, inputs)
        # The hidden states keep their (Keras) mask, not an extended one.
        mask = get_keras_mask(inputs)
        if mask is not None:
            set_keras_mask(outputs, mask)
        return outputs

    def extend_mask(self, mask, prompt_ids=None):
        """Extends a padding mask `(batch, L)` to `(batch, length + L)`.

        The prompt positions are attended to (ones, or `True` for a boolean
        mask); for a variable-length bank given `prompt_ids`, each example
        gets its prompt's row of `prompt_mask` instead. The mask keeps its
        dtype.
        """
        if mask is None:
            return None
        if self.prompt_mask is not None and prompt_ids is not None:
            prompt_ids = self.checked_prompt_ids(prompt_ids)
            rows = ops.take(self.prompt_mask, prompt_ids, axis=0)
            return ops.concatenate([ops.cast(rows, mask.dtype), mask], axis=1)
        # `ones_like` + `repeat` (not `ones(shape)`) so that this also works
        # on symbolic tensors while a functional model is built.
        ones = ops.ones_like(mask[:, :1])
        ones = ops.repeat(ones, self.length, axis=1)
        return ops.concatenate([ones, mask], axis=1)

    def compute_mask(self, inputs, mask=None, prompt_ids=None):
        return self.extend_mask(mask, prompt_ids)

    def compute_output_shape(self, inputs_shape):
        """The prepended output's shape (calls with `layer` keep the
        input's)."""
        length = inputs_shape[1]
        if length is not None:
            length = length + self.length
        return (inputs_shape[0], length) + tuple(inputs_shape[2:])

    def compute_output_spec(
        self, inputs, prompt_ids=None, mask=None, layer=None, offsets=0
    ):
        shape = tuple(inputs.shape)
        if layer is None:
            shape = self.compute_output_shape(shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "length": self.length,
                "initializer": keras.initializers.serialize(self.initializer),
                "num_prompts": self.num_prompts,
                "variable_length": self.variable_length,
                "depth": self.depth,
                "start_layer": self.start_layer,
                "deep_mode": self.deep_mode,
                "reparameterization": self.reparameterization,
            }
        )
        return config
