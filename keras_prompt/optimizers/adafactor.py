"""Adafactor with T5X / Mesh-TensorFlow semantics, as used for Prompt Tuning."""

import numbers

import keras
from keras import ops

from keras_prompt.validation import check_count
from keras_prompt.validation import check_float

_HALF_DTYPES = ("float16", "bfloat16")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r}"
        )
    return value


def _rms(x):
    return ops.sqrt(ops.mean(ops.square(x)))


@keras.saving.register_keras_serializable(package="keras_prompt")
class Adafactor(keras.optimizers.Optimizer):
    """Adafactor optimizer with T5X / Mesh-TensorFlow semantics.

    This is the optimizer of the Prompt Tuning paper (Lester et al., 2021,
    "The Power of Scale for Parameter-Efficient Prompt Tuning"): Adafactor
    with a constant learning rate of 0.3, a second-moment decay exponent of
    0.8, weight decay 1e-5, update clipping at 1.0 and no parameter scaling.
    Those are the defaults of this class.

    It follows `AdafactorOptimizer` in Mesh-TensorFlow
    (`mesh_tensorflow/optimize.py`) and `t5x.adafactor.Adafactor`. For every
    trainable variable `p` with gradient `g` the update at step `t` (counted
    from 1, `t = optimizer.iterations + 1`) is:

    ```
    beta2_t = 1 - t ** (-decay_rate)          # 0 at t = 1
    g2 = g ** 2 + epsilon1
    # Unfactored second moment (default):
    v = beta2_t * v + (1 - beta2_t) * g2
    u = g / sqrt(v)
    # Factored second moment (factored=True, rank >= 2 and both of the last
    # two dims >= min_dim_size_to_factor; shape (..., R, C)):
    vr = beta2_t * vr + (1 - beta2_t) * mean(g2, axis=-1)     # (..., R)
    vc = beta2_t * vc + (1 - beta2_t) * mean(g2, axis=-2)     # (..., C)
    u = g / sqrt(vr / mean(vr, axis=-1)) [..., :, None]
          / sqrt(vc) [..., None, :]
    # Update clipping (skipped when clipping_threshold is None):
    u = u / max(1, rms(u) / clipping_threshold)
    # Step size:
    scale = lr                                  # multiply_by_parameter_scale
    scale = lr * max(epsilon2, rms(p))          # ... =False / =True
    s = scale * u
    # First moment (only when beta1 is not None):
    m = beta1 * m + (1 - beta1) * s
    s = m
    # Weight decay (NOT multiplied by the learning rate):
    p = p - s - weight_decay_rate * p
    ```

    `rms(x)` is the root mean square over all entries of `x`, and `p` on
    the right-hand side is always the value before the step. The weight
    decay is T5X's `new_param = (1 - weight_decay_rate) * param - subtrahend`
    (Mesh-TensorFlow's `AdafactorOptimizer` has no weight decay of its own).

    Departures from `keras.optimizers.Adafactor`:

    - The learning rate is used as given (a float or a
      `keras.optimizers.schedules.LearningRateSchedule`); Keras caps it at
      `1 / sqrt(step)`, this class does not, so `learning_rate=0.3` stays 0.3.
    - Parameter scaling is optional (`multiply_by_parameter_scale`, off by
      default) instead of always on.
    - Second moments are unfactored by default; `factored=True` factors only
      variables whose last two dims are both `>= min_dim_size_to_factor`,
      instead of every variable of rank >= 2.
    - Weight decay is `weight_decay_rate * p`, not `lr * weight_decay * p`.
      Keras' own `weight_decay` argument is not accepted (use
      `weight_decay_rate`).
    - Optional first moment (`beta1`) applied to the scaled, clipped update.

    Args:
        learning_rate: float or `keras.optimizers.schedules.
            LearningRateSchedule`. The absolute step size (relative to the
            parameter RMS when `multiply_by_parameter_scale=True`). Defaults
            to `0.3`.
        decay_rate: float > 0. Exponent `c` of the second-moment decay
            `beta2_t = 1 - t ** (-c)`. Defaults to `0.8`.
        beta1: `None` or float in `[0, 1)`. When set, keeps a momentum slot
            `m` that averages the scaled, clipped updates. Defaults to `None`.
        clipping_threshold: `None` or float > 0. Update clipping threshold
            on the RMS of the normalised update. Defaults to `1.0`.
        multiply_by_parameter_scale: bool. Whether to multiply the learning
            rate by `max(epsilon2, rms(p))`. Defaults to `False`.
        factored: bool. Whether to use a factored (row/column) second moment
            for variables whose last two dims are both at least
            `min_dim_size_to_factor`. Defaults to `False`.
        min_dim_size_to_factor: int >= 1. See `factored`. Defaults to `128`.
        epsilon1: float >= 0. Added to the squared gradient. Defaults to
            `1e-30`.
        epsilon2: float >= 0. Lower bound on the parameter RMS used by
            `multiply_by_parameter_scale`. Defaults to `1e-3`.
        weight_decay_rate: `None` or float >= 0. Decoupled weight decay
            `p -= weight_decay_rate * p`, not scaled by the learning rate.
            Defaults to `1e-5`.
        **kwargs: Standard `keras.optimizers.Optimizer` arguments such as
            `name`, `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `loss_scale_factor` and `gradient_accumulation_steps`. Keras'
            `weight_decay` is rejected unless it is `None`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_prompt.optimizers import Adafactor

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=Adafactor(learning_rate=0.3), loss="mse")
    x = np.random.rand(8, 4).astype("float32")
    y = np.random.rand(8, 1).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    ```
    """

    def __init__(
        self,
        learning_rate=0.3,
        decay_rate=0.8,
        beta1=None,
        clipping_threshold=1.0,
        multiply_by_parameter_scale=False,
        factored=False,
        min_dim_size_to_factor=128,
        epsilon1=1e-30,
        epsilon2=1e-3,
        weight_decay_rate=1e-5,
        name=None,
        **kwargs,
    ):
        weight_decay = kwargs.pop("weight_decay", None)
        if weight_decay is not None:
            raise ValueError(
                "Argument `weight_decay` is not supported by "
                "keras_prompt Adafactor (Keras scales it by the learning "
                "rate); use `weight_decay_rate` instead. Received: "
                f"weight_decay={weight_decay!r}"
            )
        if isinstance(learning_rate, numbers.Real) and not isinstance(
            learning_rate, bool
        ):
            learning_rate = check_float("learning_rate", learning_rate, 0.0)
        decay_rate = check_float("decay_rate", decay_rate, 0.0, inclusive=False)
        if beta1 is not None:
            beta1 = check_float("beta1", beta1, 0.0)
            if beta1 >= 1.0:
                raise ValueError(
                    "Argument `beta1` must be None or a number in [0, 1). "
                    f"Received: beta1={beta1!r}"
                )
        clipping_threshold = check_float(
            "clipping_threshold",
            clipping_threshold,
            0.0,
            inclusive=False,
            allow_none=True,
        )
        multiply_by_parameter_scale = _check_bool(
            "multiply_by_parameter_scale", multiply_by_parameter_scale
        )
        factored = _check_bool("factored", factored)
        check_count("min_dim_size_to_factor", min_dim_size_to_factor)
        epsilon1 = check_float("epsilon1", epsilon1, 0.0)
        epsilon2 = check_float("epsilon2", epsilon2, 0.0)
        weight_decay_rate = check_float(
            "weight_decay_rate", weight_decay_rate, 0.0, allow_none=True
        )
        # `weight_decay=None` keeps Keras' own (lr-scaled) decoupled weight
        # decay switched off; ours is applied inside `update_step`.
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=None,
            name=name,
            **kwargs,
        )
        self.decay_rate = decay_rate
        self.beta1 = beta1
        self.clipping_threshold = clipping_threshold
        self.multiply_by_parameter_scale = multiply_by_parameter_scale
        self.factored = factored
        self.min_dim_size_to_factor = int(min_dim_size_to_factor)
        self.epsilon1 = epsilon1
        self.epsilon2 = epsilon2
        self.weight_decay_rate = weight_decay_rate

    def _is_factored(self, shape):
        """Whether a variable of this shape gets a factored second moment."""
        return (
            self.factored
            and len(shape) >= 2
            and shape[-1] >= self.min_dim_size_to_factor
            and shape[-2] >= self.min_dim_size_to_factor
        )

    @staticmethod
    def _slot_dtype(variable):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        return "float32" if dtype in _HALF_DTYPES else dtype

    def _add_slot(self, variable, name, shape=None):
        dtype = self._slot_dtype(variable)
        if shape is None and dtype == keras.backend.standardize_dtype(
            variable.dtype
        ):
            return self.add_variable_from_reference(variable, name=name)
        if hasattr(variable, "path"):
            prefix = variable.path.replace("/", "_")
        else:
            prefix = str(variable.name).replace("/", "_").replace(":", "_")
        return self.add_variable(
            shape=tuple(variable.shape) if shape is None else shape,
            initializer="zeros",
            dtype=dtype,
            name=f"{prefix}_{name}",
        )

    def build(self, var_list):
        """Creates the slots: `vr`/`vc` or `v`, plus `m` when `beta1` set."""
        if self.built:
            return
        super().build(var_list)
        self._vr = []
        self._vc = []
        self._v = []
        self._m = []
        for var in var_list:
            if self._overwrite_variable_with_gradient(var):
                for slots in (self._vr, self._vc, self._v, self._m):
                    slots.append(None)
                continue
            shape = tuple(var.shape)
            if self._is_factored(shape):
                self._vr.append(self._add_slot(var, "vr", shape[:-1]))
                self._vc.append(
                    self._add_slot(var, "vc", shape[:-2] + shape[-1:])
                )
                self._v.append(None)
            else:
                self._vr.append(None)
                self._vc.append(None)
                self._v.append(self._add_slot(var, "v"))
            if self.beta1 is not None:
                self._m.append(self._add_slot(var, "m"))
            else:
                self._m.append(None)

    def update_step(self, gradient, variable, learning_rate):
        """Applies one Adafactor step to `variable` (see class docstring)."""
        index = self._get_variable_index(variable)
        dtype = self._slot_dtype(variable)
        lr = ops.cast(learning_rate, dtype)
        # Adding a dense zero tensor densifies `IndexedSlices` gradients.
        grad = ops.add(
            ops.zeros(tuple(variable.shape), dtype), ops.cast(gradient, dtype)
        )
        param = ops.cast(variable, dtype)

        step = ops.cast(ops.add(self.iterations, 1), dtype)
        beta2 = 1.0 - ops.power(step, -self.decay_rate)
        mixing = 1.0 - beta2
        grad_sq = ops.add(ops.square(grad), self.epsilon1)

        if self._v[index] is None:
            vr = self._vr[index]
            vc = self._vc[index]
            new_vr = beta2 * vr + mixing * ops.mean(grad_sq, axis=-1)
            new_vc = beta2 * vc + mixing * ops.mean(grad_sq, axis=-2)
            self.assign(vr, new_vr)
            self.assign(vc, new_vc)
            row_mean = ops.mean(new_vr, axis=-1, keepdims=True)
            row_factor = ops.rsqrt(new_vr / row_mean)
            col_factor = ops.rsqrt(new_vc)
            update = (
                grad
                * ops.expand_dims(row_factor, -1)
                * ops.expand_dims(col_factor, -2)
            )
        else:
            v = self._v[index]
            new_v = beta2 * v + mixing * grad_sq
            self.assign(v, new_v)
            update = grad * ops.rsqrt(new_v)

        if self.clipping_threshold is not None:
            update = update / ops.maximum(
                1.0, _rms(update) / self.clipping_threshold
            )

        if self.multiply_by_parameter_scale:
            scale = lr * ops.maximum(_rms(param), self.epsilon2)
        else:
            scale = lr
        subtrahend = scale * update

        if self.beta1 is not None:
            m = self._m[index]
            subtrahend = self.beta1 * m + (1.0 - self.beta1) * subtrahend
            self.assign(m, subtrahend)

        if self.weight_decay_rate:
            subtrahend = subtrahend + self.weight_decay_rate * param

        self.assign_sub(variable, ops.cast(subtrahend, variable.dtype))

    def get_config(self):
        config = super().get_config()
        # Keras' lr-scaled weight decay is always off; see
        # `weight_decay_rate`.
        config.pop("weight_decay", None)
        config.update(
            {
                "decay_rate": self.decay_rate,
                "beta1": self.beta1,
                "clipping_threshold": self.clipping_threshold,
                "multiply_by_parameter_scale": (
                    self.multiply_by_parameter_scale
                ),
                "factored": self.factored,
                "min_dim_size_to_factor": self.min_dim_size_to_factor,
                "epsilon1": self.epsilon1,
                "epsilon2": self.epsilon2,
                "weight_decay_rate": self.weight_decay_rate,
            }
        )
        return config
