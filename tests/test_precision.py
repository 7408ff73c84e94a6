"""bfloat16 frozen weights: detection, float32 trained state, prompt files
interchangeable across dtypes, and a bfloat16 bank exported and served.
"""

import keras
import numpy as np
import pytest

import keras_prompt
from keras_prompt import FrozenBackbone
from keras_prompt import PromptClassifier
from keras_prompt import export_saved_model
from keras_prompt.convert.precision import cpu_flags
from keras_prompt.convert.precision import fast_bfloat16
from keras_prompt.convert.precision import resolve_dtype
from keras_prompt.serving import PromptBank
from tests.serving import serving_fixtures as fixtures
from tests.test_case import random_prompt
from tests.test_case import tiny_backbone

TEXTS = fixtures.TEXTS
# bfloat16 keeps 8 significant bits; through two tiny layers the class
# probabilities of the two dtypes differ by about 1e-2.
PROBABILITY_ATOL = 0.03


@pytest.mark.parametrize(
    "accelerators, flags, fast",
    [
        (("tpu", []), set(), True),
        (("gpu", [(9, 0)]), set(), True),
        (("gpu", [(8, 0), (7, 5)]), {"avx512_bf16"}, False),
        ((None, []), {"avx2", "avx512_bf16"}, True),
        ((None, []), {"amx_tile", "amx_bf16"}, True),
        ((None, []), {"avx2", "avx512f"}, False),
    ],
)
def test_detection(accelerators, flags, fast):
    assert fast_bfloat16(accelerators, flags)[0] is fast


def test_auto_follows_the_detection_and_explicit_dtypes_win(monkeypatch):
    assert resolve_dtype("auto", lambda: (False, "old CPU")) == (
        "float32",
        "old CPU",
    )
    assert resolve_dtype("auto", lambda: (True, "TPU"))[0] == "bfloat16"
    assert resolve_dtype("float32", lambda: (True, "TPU"))[0] == "float32"
    with pytest.raises(ValueError, match="dtype='half'"):
        resolve_dtype("half")
    # This machine's answer comes from its CPU flags (no accelerator)...
    monkeypatch.delenv("KERAS_PROMPT_BFLOAT16", raising=False)
    fast, reason = fast_bfloat16()
    assert fast == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert reason.startswith("CPU")
    # ... unless the environment decides.
    for value, expected in (("0", False), ("1", True)):
        monkeypatch.setenv("KERAS_PROMPT_BFLOAT16", value)
        assert fast_bfloat16() == (expected, f"KERAS_PROMPT_BFLOAT16={value}")
        assert resolve_dtype("auto")[0] == (
            "bfloat16" if expected else "float32"
        )
    # Given flags or accelerators (planning) are not overridden.
    assert fast_bfloat16(flags={"avx512_bf16"})[0] is True
    monkeypatch.setenv("KERAS_PROMPT_BFLOAT16", "yes")
    with pytest.raises(ValueError, match="KERAS_PROMPT_BFLOAT16='yes'"):
        fast_bfloat16()


def classifier(dtype, seed=None):
    backbone, preprocessor = fixtures.bert()
    if dtype == "bfloat16":
        half = tiny_backbone(
            "bert",
            vocabulary_size=backbone.vocabulary_size,
            dtype="bfloat16",
        )
        half.set_weights(backbone.get_weights())
        backbone = half
    model = PromptClassifier(
        FrozenBackbone(backbone, prompt_length=3),
        num_classes=3,
        preprocessor=preprocessor,
        pooling="mean",
    )
    return model if seed is None else random_prompt(model, seed)


def test_trained_state_is_float32_on_a_bfloat16_backbone():
    model = classifier("bfloat16")
    assert model.backbone.backbone.token_embedding.embeddings.dtype == (
        "bfloat16"
    )
    trained = model.trained_variables()
    assert sorted(v.dtype for v in trained.values()) == ["float32"] * 3
    assert sorted(v.path for v in model.trainable_variables) == sorted(
        v.path for v in trained.values()
    )
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    before = {k: v.numpy().copy() for k, v in trained.items()}
    model.fit(TEXTS, np.arange(len(TEXTS)) % 3, batch_size=5, verbose=0)
    for name, variable in trained.items():
        assert variable.dtype == "float32"
        assert not np.array_equal(variable.numpy(), before[name]), name
    assert {v.dtype for v in model.optimizer.variables[2:]} == {"float32"}


@pytest.mark.parametrize(
    "source, target", [("bfloat16", "float32"), ("float32", "bfloat16")]
)
def test_prompt_files_load_across_dtypes(source, target, tmp_path):
    trained = classifier(source, seed=5)
    path = str(tmp_path / "p.safetensors")
    trained.save_prompts(path)
    model = classifier(target)
    model.load_prompts(path)
    for name, variable in trained.trained_variables().items():
        np.testing.assert_array_equal(
            model.trained_variables()[name].numpy(), variable.numpy()
        )
    np.testing.assert_allclose(
        model.predict(TEXTS, verbose=0),
        trained.predict(TEXTS, verbose=0),
        atol=PROBABILITY_ATOL,
    )
    # The same file a float32 model of the same prompt writes.
    again = str(tmp_path / "again.safetensors")
    model.save_prompts(again)
    from keras_prompt.prompt_files import read_prompt_file

    written, read = read_prompt_file(again)[1], read_prompt_file(path)[1]
    # Only the record of the frozen weights' dtype differs.
    assert (written.pop("frozen_dtype"), read.pop("frozen_dtype")) == (
        target,
        source,
    )
    assert written == read


def test_bfloat16_bank_mixes_float32_tasks_and_exports(tmp_path):
    tasks = {"a": classifier("float32", 1), "b": classifier("bfloat16", 2)}
    alone = {n: m.predict(TEXTS, verbose=0) for n, m in tasks.items()}
    bank = PromptBank(classifier("bfloat16"), capacity=2)
    for name, model in tasks.items():
        bank.add_task(name, model)
    names = ["a", "b"] * (len(TEXTS) // 2)
    mixed = bank.predict(TEXTS, names)
    for i, name in enumerate(names):
        np.testing.assert_allclose(
            mixed[i], alone[name][i], atol=PROBABILITY_ATOL
        )
    path = str(tmp_path / "bank" / "1")
    export_saved_model(bank, path)
    served = fixtures.serve_in_fresh_process(
        [{"name": "bank", "path": path, "inputs": TEXTS, "tasks": names}]
    )
    np.testing.assert_allclose(
        np.asarray(served["bank"]["probabilities"]), mixed, atol=1e-6
    )


@pytest.mark.parametrize("fast", [True, False])
def test_from_preset_dtype_auto_follows_the_detection(
    fast, tmp_path, monkeypatch
):
    """`from_preset(..., dtype="auto")` (every task goes through
    `FrozenBackbone.from_preset`) loads bfloat16 frozen weights where the
    detection finds native bfloat16 and float32 where it does not (forced
    here); the trained state is float32 either way."""
    from keras_prompt import PromptSeq2SeqLM
    from keras_prompt import toy
    from keras_prompt.convert import precision
    from tests.cli.test_tune import tiny_bert_preset

    monkeypatch.setattr(precision, "fast_bfloat16", lambda: (fast, "forced"))
    dtype = "bfloat16" if fast else "float32"
    bert = tiny_bert_preset(str(tmp_path / "bert"))
    backbone = FrozenBackbone.from_preset(bert, prompt_length=2, dtype="auto")
    assert backbone.backbone.dtype_policy.variable_dtype == dtype
    # "auto" is the default; the prompt file records what it resolved to.
    classifier = PromptClassifier.from_preset(
        bert, num_classes=2, prompt_length=2, sequence_length=16
    )
    path = str(tmp_path / "auto.prompt.safetensors")
    classifier.save_prompts(path)
    metadata = keras_prompt.prompt_files.read_prompt_file(path)[1]
    assert metadata["frozen_dtype"] == dtype
    # float32 on request.
    asked = FrozenBackbone.from_preset(bert, prompt_length=2, dtype="float32")
    assert asked.backbone.dtype_policy.variable_dtype == "float32"
    t5 = str(tmp_path / "t5")
    preprocessor = toy.toy_t5_preprocessor()
    toy.toy_t5(
        preprocessor.tokenizer.vocabulary_size(), hidden_dim=8, num_layers=1
    ).save_to_preset(t5)
    preprocessor.tokenizer.save_to_preset(t5)
    seq2seq = PromptSeq2SeqLM.from_preset(t5, prompt_length=2, dtype="auto")
    for model in (classifier, seq2seq):
        frozen = model.backbone.backbone.token_embedding.embeddings
        assert frozen.dtype == dtype
        trained = model.trained_variables().values()
        assert {v.dtype for v in trained} == {"float32"}
    for bad in ("half", "Auto", 3):
        with pytest.raises(ValueError, match=f"dtype={bad!r} for preset"):
            PromptClassifier.from_preset(bert, num_classes=2, dtype=bad)
        with pytest.raises(ValueError, match=f"dtype={bad!r} for preset"):
            FrozenBackbone.from_preset(bert, dtype=bad)
