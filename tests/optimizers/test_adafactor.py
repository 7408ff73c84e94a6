"""Tests for `keras_prompt.optimizers.Adafactor`."""

import json
import re
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_prompt
from keras_prompt.optimizers import Adafactor
from tests.test_case import script_result


def _rms(x):
    return np.sqrt(np.mean(np.square(x)))


def reference_adafactor(
    param,
    grads,
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
    first_step=1,
):
    """NumPy (float64) T5X-style Adafactor; returns the final parameter."""
    p = np.array(param, dtype=np.float64)
    shape = p.shape
    use_factored = (
        factored
        and len(shape) >= 2
        and shape[-1] >= min_dim_size_to_factor
        and shape[-2] >= min_dim_size_to_factor
    )
    vr = np.zeros(shape[:-1]) if use_factored else None
    vc = np.zeros(shape[:-2] + shape[-1:]) if use_factored else None
    v = None if use_factored else np.zeros(shape)
    m = np.zeros(shape)
    for k, g in enumerate(grads):
        g = np.asarray(g, dtype=np.float64)
        t = float(first_step + k)
        beta2 = 1.0 - t ** (-decay_rate)
        g2 = g * g + epsilon1
        if use_factored:
            vr = beta2 * vr + (1.0 - beta2) * g2.mean(axis=-1)
            vc = beta2 * vc + (1.0 - beta2) * g2.mean(axis=-2)
            r = vr / vr.mean(axis=-1, keepdims=True)
            u = g / np.sqrt(r[..., :, None]) / np.sqrt(vc[..., None, :])
        else:
            v = beta2 * v + (1.0 - beta2) * g2
            u = g / np.sqrt(v)
        if clipping_threshold is not None:
            u = u / max(1.0, _rms(u) / clipping_threshold)
        lr = learning_rate(k) if callable(learning_rate) else learning_rate
        scale = lr
        if multiply_by_parameter_scale:
            scale = lr * max(_rms(p), epsilon2)
        s = scale * u
        if beta1 is not None:
            m = beta1 * m + (1.0 - beta1) * s
            s = m
        decay = (weight_decay_rate or 0.0) * p
        p = p - s - decay
    return p


def _random_problem(shape, steps, seed):
    rng = np.random.default_rng(seed)
    param = rng.normal(size=shape).astype("float32")
    # Growing gradient scale so that update clipping actually triggers.
    grads = [
        (rng.normal(size=shape) * (3.0**k)).astype("float32")
        for k in range(steps)
    ]
    return param, grads


def _run_keras(optimizer, param, grads):
    var = keras.Variable(param, name="param")
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [var])
    return keras.ops.convert_to_numpy(var)


CASES = [
    ((), {}),
    ((7,), {}),
    ((7,), {"beta1": 0.9}),
    ((20, 16), {}),
    ((20, 16), {"beta1": 0.9, "weight_decay_rate": 1e-2}),
    ((20, 16), {"factored": True}),  # Too small to factor.
    ((3, 5, 16), {}),
    ((3, 5, 16), {"beta1": 0.9, "weight_decay_rate": 1e-2}),
    ((3, 5, 16), {"multiply_by_parameter_scale": True}),
    ((256, 128), {"factored": True}),
    ((256, 128), {"factored": True, "beta1": 0.9, "weight_decay_rate": 1e-2}),
    ((256, 128), {"factored": True, "multiply_by_parameter_scale": True}),
    ((2, 128, 160), {"factored": True, "beta1": 0.0}),
    ((20, 16), {"clipping_threshold": None, "weight_decay_rate": None}),
    ((20, 16), {"clipping_threshold": 0.5, "decay_rate": 0.5}),
    ((20, 16), {"learning_rate": 0.01, "epsilon1": 1e-2}),
]


@pytest.mark.parametrize("shape,kwargs", CASES)
@pytest.mark.all_backends
def test_matches_numpy_reference(shape, kwargs):
    param, grads = _random_problem(shape, steps=5, seed=len(shape))
    actual = _run_keras(Adafactor(**kwargs), param, grads)
    expected = reference_adafactor(param, grads, **kwargs)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_parameter_scale_floor_for_zero_init():
    """A zero-initialised variable moves by lr * epsilon2 per element."""
    _, grads = _random_problem((4, 8), steps=3, seed=5)
    param = np.zeros((4, 8), "float32")
    kwargs = {"multiply_by_parameter_scale": True, "epsilon2": 1e-2}
    optimizer = Adafactor(**kwargs)
    var = keras.Variable(param)
    optimizer.apply([keras.ops.convert_to_tensor(grads[0])], [var])
    first = keras.ops.convert_to_numpy(var)
    np.testing.assert_allclose(np.abs(first), 0.3 * 1e-2, rtol=1e-5)
    for g in grads[1:]:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [var])
    expected = reference_adafactor(param, grads, **kwargs)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(var), expected, rtol=1e-5, atol=1e-8
    )


def test_gradient_accumulation_counts_optimizer_steps():
    param, grads = _random_problem((5, 6), steps=4, seed=0)
    optimizer = Adafactor(gradient_accumulation_steps=2, beta1=0.9)
    actual = _run_keras(optimizer, param, grads)
    assert int(optimizer.iterations.numpy()) == 2
    averaged = [(grads[0] + grads[1]) / 2, (grads[2] + grads[3]) / 2]
    expected = reference_adafactor(param, averaged, beta1=0.9)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_slots_created():
    optimizer = Adafactor(factored=True, beta1=0.9)
    variables = [
        keras.Variable(np.zeros((256, 128), "float32"), name="big"),
        keras.Variable(np.zeros((20, 16), "float32"), name="small"),
        keras.Variable(np.zeros((4, 128, 256), "float32"), name="bank"),
        keras.Variable(np.zeros((7,), "float32"), name="vec"),
    ]
    optimizer.build(variables)
    shapes = sorted(
        (v.name, tuple(v.shape))
        for v in optimizer.variables
        if v.name not in ("iteration", "learning_rate")
    )
    assert shapes == sorted(
        [
            ("big_vr", (256,)),
            ("big_vc", (128,)),
            ("big_m", (256, 128)),
            ("small_v", (20, 16)),
            ("small_m", (20, 16)),
            ("bank_vr", (4, 128)),
            ("bank_vc", (4, 256)),
            ("bank_m", (4, 128, 256)),
            ("vec_v", (7,)),
            ("vec_m", (7,)),
        ]
    )
    # No momentum slot without beta1.
    optimizer = Adafactor()
    optimizer.build(variables[-1:])
    assert [v.name for v in optimizer.variables][-1] == "vec_v"
    assert len(optimizer.variables) == 3


def test_constant_learning_rate_has_no_sqrt_cap():
    shape = (20, 16)
    param, grads = _random_problem(shape, steps=1, seed=3)
    optimizer = Adafactor(weight_decay_rate=None)
    var = keras.Variable(param)
    optimizer.build([var])
    optimizer.iterations.assign(999)  # The next update is step 1000.
    optimizer.apply([keras.ops.convert_to_tensor(grads[0])], [var])
    actual = keras.ops.convert_to_numpy(var)
    expected = reference_adafactor(
        param, grads, weight_decay_rate=None, first_step=1000
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    # Fresh second moment at step 1000 -> clipped update of RMS exactly 1,
    # so the step has RMS lr = 0.3, not min(0.3, 1 / sqrt(1000)) ~ 0.032.
    np.testing.assert_allclose(_rms(param - actual), 0.3, rtol=1e-5)

    keras_opt = keras.optimizers.Adafactor(learning_rate=0.3)
    keras_var = keras.Variable(param)
    keras_opt.build([keras_var])
    keras_opt.iterations.assign(999)
    keras_opt.apply([keras.ops.convert_to_tensor(grads[0])], [keras_var])
    keras_step = _rms(param - keras.ops.convert_to_numpy(keras_var))
    assert keras_step < 0.05


def test_learning_rate_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.3, decay_steps=1, decay_rate=0.5
    )
    param, grads = _random_problem((3, 5, 16), steps=4, seed=0)
    actual = _run_keras(Adafactor(learning_rate=schedule), param, grads)
    # Keras evaluates the schedule at `iterations`, i.e. 0 for step 1.
    expected = reference_adafactor(
        param, grads, learning_rate=lambda k: 0.3 * 0.5**k
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_sparse_gradients_match_dense():
    ids = np.array([[0, 2], [2, 3]])
    kwargs = {"beta1": 0.9, "weight_decay_rate": 1e-2}

    def train(densify):
        keras_prompt.set_random_seed(0)
        layer = keras.layers.Embedding(5, 4)
        layer.build()
        init = keras.ops.convert_to_numpy(layer.embeddings)
        optimizer = Adafactor(**kwargs)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(ids) ** 2)
            grad = tape.gradient(loss, layer.embeddings.value)
            assert isinstance(grad, tf.IndexedSlices)
            if densify:
                grad = tf.convert_to_tensor(grad)
            optimizer.apply([grad], [layer.embeddings])
        return init, keras.ops.convert_to_numpy(layer.embeddings)

    init, sparse_result = train(densify=False)
    init2, dense_result = train(densify=True)
    np.testing.assert_array_equal(init, init2)
    assert np.abs(sparse_result - init).max() > 0.01
    # Rows without gradient (1 and 4) still only see weight decay.
    np.testing.assert_allclose(
        sparse_result[[1, 4]], init[[1, 4]] * (1 - 1e-2) ** 3, rtol=1e-6
    )
    np.testing.assert_allclose(sparse_result, dense_result, rtol=1e-6)


@pytest.mark.all_backends
def test_bfloat16_variable_uses_float32_slots():
    optimizer = Adafactor()
    var = keras.Variable(np.ones((5, 3), "float32"), dtype="bfloat16")
    optimizer.apply([keras.ops.ones((5, 3), "bfloat16")], [var])
    slot = optimizer.variables[-1]
    assert slot.dtype == "float32"
    assert var.dtype == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(var, "float32")),
        1.0 - 0.3 - 1e-5,
        rtol=1e-2,
    )


NON_DEFAULT = dict(
    learning_rate=0.1,
    decay_rate=0.7,
    beta1=0.9,
    clipping_threshold=2.0,
    multiply_by_parameter_scale=True,
    factored=True,
    min_dim_size_to_factor=64,
    epsilon1=1e-20,
    epsilon2=1e-2,
    weight_decay_rate=1e-4,
    clipnorm=1.0,
    name="my_adafactor",
)


def test_get_config_round_trip():
    optimizer = Adafactor(**NON_DEFAULT)
    config = optimizer.get_config()
    for key, value in NON_DEFAULT.items():
        assert config[key] == pytest.approx(value), key
    assert "weight_decay" not in config
    restored = Adafactor.from_config(config)
    assert restored.get_config() == config
    json.dumps(config)
    # A config written with Keras' `weight_decay: None` still loads.
    Adafactor.from_config({**config, "weight_decay": None})


def test_defaults_are_the_paper_recipe():
    config = Adafactor().get_config()
    assert config["learning_rate"] == pytest.approx(0.3)
    assert config["decay_rate"] == 0.8
    assert config["beta1"] is None
    assert config["clipping_threshold"] == 1.0
    assert config["multiply_by_parameter_scale"] is False
    assert config["factored"] is False
    assert config["weight_decay_rate"] == 1e-5


def test_serialize_deserialize_round_trip():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.3, 10, 0.9)
    optimizer = Adafactor(**{**NON_DEFAULT, "learning_rate": schedule})
    serialized = keras.optimizers.serialize(optimizer)
    assert "keras_prompt" in json.dumps(serialized)
    restored = keras.optimizers.deserialize(json.loads(json.dumps(serialized)))
    assert isinstance(restored, Adafactor)
    assert isinstance(
        restored._learning_rate, keras.optimizers.schedules.ExponentialDecay
    )
    assert restored.get_config() == optimizer.get_config()


@pytest.mark.all_backends
def test_model_save_and_load(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=Adafactor(beta1=0.9), loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, Adafactor)
    assert loaded.optimizer.beta1 == 0.9
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def _fit_dense(jit_compile, steps=8):
    keras_prompt.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16 * steps, 128)).astype("float32")
    w = rng.normal(size=(128, 1)).astype("float32") / 10.0
    y = x @ w
    model = keras.Sequential(
        [keras.Input((128,)), keras.layers.Dense(128), keras.layers.Dense(1)]
    )
    model.compile(
        optimizer=Adafactor(learning_rate=0.01, beta1=0.9, factored=True),
        loss="mse",
        jit_compile=jit_compile,
    )
    before = model.evaluate(x, y, batch_size=len(x), verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=len(x), verbose=0)
    return before, history.history["loss"], after, model


@pytest.mark.all_backends
def test_trains_under_jit_compile():
    before, losses, after, model = _fit_dense(jit_compile=True)
    assert model.optimizer.iterations.numpy() == 24
    assert losses[-1] < losses[0]
    assert after < before
    _, _, _, eager_model = _fit_dense(jit_compile=False)
    for a, b in zip(model.weights, eager_model.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            rtol=1e-4,
            atol=1e-5,
        )


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu,
        [tf.config.LogicalDeviceConfiguration()] * 2,
    )
    import keras
    import numpy as np

    from keras_prompt.optimizers import Adafactor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 128)).astype("float32")
    y = rng.normal(size=(48, 1)).astype("float32")
    init = None

    def train():
        global init
        model = keras.Sequential(
            [keras.Input((128,)), keras.layers.Dense(128),
             keras.layers.Dense(1)]
        )
        if init is None:
            init = model.get_weights()
        model.set_weights(init)
        # epsilon1 = 1e-3 makes the step depend on the gradient's scale,
        # not only on its direction.
        model.compile(
            optimizer=Adafactor(
                learning_rate=0.05, beta1=0.9, factored=True,
                epsilon1=1e-3, weight_decay_rate=1e-2,
            ),
            loss="mse",
        )
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return model.get_weights(), int(model.optimizer.iterations.numpy())

    single, single_steps = train()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored, mirrored_steps = train()
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "steps": [single_steps, mirrored_steps],
        "max_diff": max(
            float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored)
        ),
        "max_change": max(
            float(np.max(np.abs(a - b))) for a, b in zip(single, init)
        ),
    }))
    """
)


def test_mirrored_strategy_matches_single_device():
    result = script_result(["-c", MIRRORED_SCRIPT], timeout=240)
    assert result["replicas"] == 2
    assert result["steps"] == [3, 3]
    assert result["max_change"] > 1e-2
    assert result["max_diff"] < 1e-5


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"decay_rate": 0.0}, "decay_rate"),
        ({"decay_rate": -0.8}, "decay_rate"),
        ({"clipping_threshold": -1.0}, "clipping_threshold"),
        ({"clipping_threshold": 0.0}, "clipping_threshold"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta1": -0.1}, "beta1"),
        ({"epsilon1": -1e-30}, "epsilon1"),
        ({"epsilon2": -1.0}, "epsilon2"),
        ({"weight_decay_rate": -1e-5}, "weight_decay_rate"),
        ({"min_dim_size_to_factor": 0}, "min_dim_size_to_factor"),
        ({"factored": "yes"}, "factored"),
        ({"multiply_by_parameter_scale": 1}, "multiply_by_parameter_scale"),
        ({"learning_rate": -0.3}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"weight_decay": 1e-5}, "weight_decay"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=re.escape(f"{name}={value!r}")):
        Adafactor(**kwargs)
