"""`resolve_strategy` and friends, in-process (no TPU or GPU here).

The TPU connection itself (`_connect_tpu`) is replaced where a test needs a
TPU to be found or to fail; everything around it (which target is tried,
fallbacks, messages) is the real code.
"""

import logging

import keras
import pytest
import tensorflow as tf

from keras_prompt.distribute import compile_options
from keras_prompt.distribute import describe_strategy
from keras_prompt.distribute import is_tpu_strategy
from keras_prompt.distribute import prepare_model
from keras_prompt.distribute import resolve_strategy
from keras_prompt.distribute import strategy as strategy_module


@pytest.fixture
def no_tpu(monkeypatch):
    for name in strategy_module._TPU_ENVIRONMENT + ("TF_CONFIG",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(strategy_module, "_local_tpu_present", lambda: False)


@pytest.fixture
def fake_tpu(monkeypatch, no_tpu):
    """`_connect_tpu` records its target and returns the default strategy."""
    calls = []

    def connect(target):
        calls.append(target)
        return tf.distribute.get_strategy()

    monkeypatch.setattr(strategy_module, "_connect_tpu", connect)
    return calls


def test_unknown_word_names_the_value():
    with pytest.raises(ValueError, match="strategy='tpuu'"):
        resolve_strategy("tpuu")
    with pytest.raises(ValueError, match="strategy=3"):
        resolve_strategy(3)


def test_tpu_requested_without_tpu_is_a_clear_error(no_tpu):
    with pytest.raises(ValueError, match="strategy='tpu' was requested"):
        resolve_strategy("tpu", verbose=False)


def test_tpu_requested_but_connection_fails(monkeypatch, no_tpu):
    def fail(target):
        raise RuntimeError("no route to grpc://10.0.0.2:8470")

    monkeypatch.setattr(strategy_module, "_connect_tpu", fail)
    with pytest.raises(ValueError, match="no route to grpc"):
        resolve_strategy("tpu", tpu="grpc://10.0.0.2:8470", verbose=False)


def test_tpu_targets(monkeypatch, fake_tpu):
    resolve_strategy("tpu", tpu="my-tpu", verbose=False)
    monkeypatch.setenv("TPU_NAME", "pod-slice")
    resolve_strategy("auto", verbose=False)  # The resolver reads TPU_NAME.
    monkeypatch.delenv("TPU_NAME")
    monkeypatch.setattr(strategy_module, "_local_tpu_present", lambda: True)
    resolve_strategy("tpu", verbose=False)  # A TPU VM's own chips.
    assert fake_tpu == ["my-tpu", None, "local"]


def test_auto_falls_back_when_tpu_fails(monkeypatch, no_tpu, caplog):
    monkeypatch.setattr(strategy_module, "_local_tpu_present", lambda: True)

    def fail(target):
        raise RuntimeError("TPU busy")

    monkeypatch.setattr(strategy_module, "_connect_tpu", fail)
    with caplog.at_level(logging.WARNING, "keras_prompt.distribute"):
        chosen = resolve_strategy("auto", verbose=False)
    assert chosen is tf.distribute.get_strategy()
    assert "TPU busy" in caplog.text


def test_auto_without_accelerators_is_the_default_strategy(no_tpu, capsys):
    chosen = resolve_strategy("auto")
    assert chosen is tf.distribute.get_strategy()
    assert chosen.num_replicas_in_sync == 1
    out = capsys.readouterr().out
    assert "strategy='auto' -> default strategy: 1 replica on CPU" in out


def test_cpu_and_gpu_words(no_tpu):
    assert resolve_strategy("CPU", verbose=False).num_replicas_in_sync == 1
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(ValueError, match="strategy='gpu'"):
            resolve_strategy("gpu", verbose=False)


def test_multi_worker_needs_tf_config(monkeypatch, no_tpu):
    with pytest.raises(ValueError, match="TF_CONFIG=None"):
        resolve_strategy("multi_worker", verbose=False)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG="):
        resolve_strategy("auto", verbose=False)


def test_a_strategy_passes_through():
    default = tf.distribute.get_strategy()
    assert resolve_strategy(default) is default


def test_is_tpu_strategy_and_compile_options():
    class TPUStrategyV2:  # Only the name matters.
        num_replicas_in_sync = 8

    assert is_tpu_strategy(TPUStrategyV2())
    assert not is_tpu_strategy(tf.distribute.get_strategy())
    assert compile_options() == {"jit_compile": True}
    assert compile_options(TPUStrategyV2()) == {"jit_compile": False}
    assert describe_strategy().startswith("default strategy: 1 replica")


def test_prepare_model_rejects_non_models():
    with pytest.raises(ValueError, match="model=str"):
        prepare_model("not a model")


def test_prepare_model_keeps_single_device_training():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert prepare_model(model) is model
    history = model.fit(
        tf.ones((4, 3)), tf.ones((4, 1)), batch_size=2, verbose=0
    )
    assert len(history.history["loss"]) == 1
