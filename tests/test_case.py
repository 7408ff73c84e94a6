"""Shared helpers for keras_prompt's tests.

`TestCase` holds the round-trip helpers every layer and model test uses
(config, `.keras` saving, SavedModel export) and the reference test that
anchors every model family: a prompt set to the embeddings of tokens
`t1..tP` must give exactly what the plain backbone gives on `[t1..tP] + x`.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_prompt.toy import sentencepiece_proto  # noqa: F401

WORDS = (
    "red green blue black white cat dog bird fish cow tree rock sun moon "
    "star rain snow wind fire lake hill road boat ship car bus book pen cup "
    "box hat"
).split()


def wordpiece_vocabulary(words=WORDS):
    """A tiny BERT-style WordPiece vocabulary list."""
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(words)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_result(argv, timeout=600, unset=()):
    """Runs `python *argv` in a fresh process from the repository root (on
    its `PYTHONPATH`, no GPU, the variables named in `unset` removed) and
    returns the JSON of the last `RESULT {json}` line it prints; fails with
    the tail of its stderr when it fails. For what needs its own process:
    another backend, several devices, a strategy."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    for name in unset:
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def to_numpy(tree):
    return tf.nest.map_structure(
        lambda t: None if t is None else keras.ops.convert_to_numpy(t), tree
    )


class TestCase:
    """Base class: assertions and round-trip helpers (pytest style)."""

    atol = 1e-5

    def assertAllClose(self, a, b, atol=None, rtol=1e-5):
        a, b = to_numpy(a), to_numpy(b)
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
            np.testing.assert_allclose(
                np.asarray(x, dtype="float64"),
                np.asarray(y, dtype="float64"),
                atol=self.atol if atol is None else atol,
                rtol=rtol,
            )

    def assertAllEqual(self, a, b):
        a, b = to_numpy(a), to_numpy(b)
        tf.nest.assert_same_structure(a, b)
        for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
            np.testing.assert_array_equal(x, y)

    # -- round trips --------------------------------------------------------
    def run_serialization_test(self, instance):
        """`get_config` -> `from_config` -> same config, and Keras'
        `serialize`/`deserialize` round trip."""
        config = instance.get_config()
        revived = type(instance).from_config(config)
        assert revived.get_config() == config
        serialized = keras.saving.serialize_keras_object(instance)
        revived = keras.saving.deserialize_keras_object(serialized)
        assert type(revived) is type(instance)
        assert revived.get_config() == config
        return revived

    def run_model_saving_test(self, model, input_data, tmp_path, atol=None):
        """Whole-model `.keras` save and load gives identical outputs."""
        expected = model(input_data)
        path = os.path.join(str(tmp_path), "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        assert type(restored) is type(model)
        self.assertAllClose(expected, restored(input_data), atol=atol)
        return restored

    def run_export_test(self, model, input_data, tmp_path, atol=None):
        """`model.export` to a TF SavedModel; the reloaded graph's outputs
        equal the in-memory model's."""
        path = os.path.join(str(tmp_path), "exported")
        model.export(path, format="tf_saved_model", verbose=False)
        restored = tf.saved_model.load(path)
        expected = model(input_data)
        actual = restored.serve(input_data)
        self.assertAllClose(expected, actual, atol=atol)
        return restored

    # -- the anchor of every family -------------------------------------------
    def run_prompt_reference_test(
        self,
        plain_backbone,
        frozen_backbone,
        inputs,
        prompt_token_ids,
        prompted_key,
        compare,
        atol=1e-4,
    ):
        """A prompt equal to the embeddings of `prompt_token_ids` gives the
        plain backbone's outputs on those tokens prepended.

        Args:
            plain_backbone: the keras-hub backbone.
            frozen_backbone: a `FrozenBackbone` around it whose prompt holds
                the embeddings of `prompt_token_ids`.
            inputs: dict of the backbone's inputs (with padding).
            prompt_token_ids: list of P ints.
            prompted_key: a function `inputs -> reference inputs` that
                prepends the tokens (and ones to the masks) where the
                family puts the prompt.
            compare: dict `output name -> slice function` giving, from an
                output, the positions to compare (e.g. skip padding).
        """
        table = keras.ops.convert_to_numpy(
            plain_backbone.token_embedding.embeddings
        )
        prompt = table[np.asarray(prompt_token_ids)]
        frozen_backbone.assign_prompts(prompt)
        actual = to_numpy(frozen_backbone(inputs, training=False))
        expected = to_numpy(
            plain_backbone(prompted_key(inputs), training=False)
        )
        for name, select in compare.items():
            np.testing.assert_allclose(
                select(actual[name]),
                select(expected[name]),
                atol=atol,
                err_msg=f"output {name!r} differs from the reference",
            )

    def run_deep_prompt_reference_test(
        self,
        plain_backbone,
        frozen_backbone,
        inputs,
        prompt_token_ids,
        prompted_key,
        compare,
        atol=1e-5,
    ):
        """`run_prompt_reference_test` for deep prompts, one example at a
        time: the input layer holds the embeddings of `prompt_token_ids`,
        layers `1..` start random and are set by `init_deep_prompts` on
        the example (to the hidden states the tokens produce there), and
        the deep model then gives the plain backbone's outputs on the
        example with those tokens inserted."""
        table = keras.ops.convert_to_numpy(
            plain_backbone.token_embedding.embeddings
        )
        shape = frozen_backbone.prompt_values().shape
        batch = len(next(iter(inputs.values())))
        for i in range(batch):
            row = {k: v[i : i + 1] for k, v in inputs.items()}
            values = np.random.default_rng(i).normal(size=shape)
            values[0] = table[np.asarray(prompt_token_ids)]
            frozen_backbone.assign_prompts(values)
            expected = to_numpy(
                plain_backbone(prompted_key(row), training=False)
            )
            # The random deep layers change the outputs: setting them does
            # something.
            before = to_numpy(frozen_backbone(row, training=False))
            assert (
                max(
                    np.abs(select(before[name]) - select(expected[name])).max()
                    for name, select in compare.items()
                )
                > 10 * atol
            )
            frozen_backbone.init_deep_prompts(row)
            actual = to_numpy(frozen_backbone(row, training=False))
            for name, select in compare.items():
                np.testing.assert_allclose(
                    select(actual[name]),
                    select(expected[name]),
                    atol=atol,
                    err_msg=f"output {name!r} of example {i} differs from "
                    "the reference",
                )

    # -- the shared per-family checks ------------------------------------------
    def run_layer_test(
        self,
        layer_cls,
        init_kwargs,
        input_data,
        expected_output_shape,
        call_kwargs=None,
        mask=None,
        expected_mask=None,
        expected_num_trainable_weights=1,
    ):
        """A layer (keras-hub's `run_layer_test`, cut down): config round
        trip, output shape (eager and symbolic), trainable weights, and the
        padding mask it propagates."""
        layer = layer_cls(**init_kwargs)
        call_kwargs = call_kwargs or {}
        output = layer(input_data, **call_kwargs)
        assert tuple(output.shape) == tuple(expected_output_shape)
        assert len(layer.trainable_weights) == expected_num_trainable_weights
        symbolic = keras.Input(
            shape=tuple(input_data.shape[1:]), batch_size=input_data.shape[0]
        )
        assert tuple(layer.compute_output_shape(symbolic.shape)) == tuple(
            expected_output_shape
        )
        revived = self.run_serialization_test(layer)
        self.assertAllEqual(
            revived(input_data, **call_kwargs).shape, output.shape
        )
        if mask is not None:
            extended = layer.compute_mask(input_data, mask)
            self.assertAllEqual(extended, expected_mask)
            assert to_numpy(extended).dtype == np.asarray(mask).dtype
        return layer

    def run_backbone_test(self, family, tmp_path, prompt_length=3, deep=False):
        """`FrozenBackbone` around the family's tiny backbone: only the
        prompt trains, a prompt holding token embeddings equals the plain
        backbone on those tokens inserted where the family puts the prompt
        (both padding sides for decoders), `.keras` and prompt-file round
        trips.

        With `deep=True` the same with deep prompts, the reference step
        being `run_deep_prompt_reference_test` (the deep layers set on each
        example)."""
        from keras_prompt import FrozenBackbone

        backbone = tiny_backbone(family)
        tokens = PROMPT_TOKENS[:prompt_length]
        wrapped = FrozenBackbone(
            backbone, prompt_length=prompt_length, deep=deep
        )
        assert wrapped.family == family
        assert wrapped.deep is deep
        assert wrapped.prompt_values().shape == wrapped.task_prompt_shape()
        assert wrapped.trainable_weights == [
            wrapped.prompt_embedding.embeddings
        ]
        assert len(wrapped.non_trainable_weights) == len(backbone.weights)
        kind = get_kind(family)
        assert wrapped.adapter.kind == kind
        reference_test = (
            self.run_deep_prompt_reference_test
            if deep
            else self.run_prompt_reference_test
        )
        for side in ("right", "left") if kind == "causal" else ("right",):
            reference_test(
                NamedOutputs(backbone),
                NamedOutputs(wrapped),
                backbone_inputs(family, side),
                tokens,
                reference_inputs(family, tokens),
                {name: lambda x: x for name in output_names(family)},
            )
        inputs = backbone_inputs(family, "left")
        # A prompt far from the token embeddings, so that a round trip
        # that lost it could not pass.
        rng = np.random.default_rng(0)
        wrapped.assign_prompts(
            rng.normal(size=wrapped.prompt_values().shape).astype("float32")
        )
        restored = self.run_model_saving_test(wrapped, inputs, tmp_path)
        self.assertAllEqual(restored.prompt_values(), wrapped.prompt_values())
        path = os.path.join(str(tmp_path), "backbone.prompt.safetensors")
        wrapped.save_prompts(path)
        other = FrozenBackbone(backbone, prompt_length=prompt_length, deep=deep)
        other.load_prompts(path)
        self.assertAllEqual(other.prompt_values(), wrapped.prompt_values())
        self.assertAllEqual(other(inputs), wrapped(inputs))
        return wrapped

    def run_task_test(
        self,
        family,
        tmp_path,
        prompt_length=3,
        strings=False,
        export=False,
        deep=False,
        start_layer=0,
    ):
        """The family's task model (`PromptSeq2SeqLM`, `PromptCausalLM` or
        `PromptClassifier`) on token inputs:

        - one training step moves the prompt (and the classifier head) and
          no frozen weight;
        - a prompt file restores the outputs exactly;
        - a `PromptBank` of two tasks on a mixed batch equals each task
          alone.

        With `strings=True` the same on raw strings through the kind's
        tiny preprocessor (`generate` / `predict`, the models rebuilt from
        the prompt files); with `export=True` also the bank exported as a
        SavedModel, reloaded in this process, serving the same outputs.
        With `deep=True` every model has deep prompts (training moves
        every layer of the prompt). `start_layer` makes the prompts late
        (`PromptConfig.start_layer`).
        """
        from keras_prompt import PromptConfig
        from keras_prompt.serving import PromptBank

        config = PromptConfig(
            length=prompt_length, deep=deep, start_layer=start_layer
        )

        preprocessor = tiny_preprocessor(family) if strings else None
        overrides = {}
        if preprocessor is not None:
            overrides["vocabulary_size"] = (
                preprocessor.tokenizer.vocabulary_size()
            )
        # The frozen model's dropout is on, for the training-mode check
        # (the training step then trains through it); every other check
        # runs the models in inference mode.
        backbone = spread_weights(
            tiny_backbone(family, dropout=0.5, **overrides)
        )
        frozen_before = [to_numpy(w).copy() for w in backbone.weights]
        x, y, sample_weight = task_data(family)

        # `fit` runs in training mode; one training step moves the prompt
        # (and head) only.
        task_a = random_prompt(
            tiny_task(backbone, prompt_config=config), seed=1
        )
        trainable = task_a.trainable_weights
        prompt = task_a.backbone.prompt_embedding.embeddings
        assert prompt in trainable
        assert len(trainable) == (3 if get_kind(family) == "encoder" else 1)
        before = [to_numpy(w).copy() for w in trainable]
        task_a.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
        self._check_fit_runs_in_training_mode(task_a, x, y, sample_weight)
        task_a.optimizer.learning_rate = 0.5
        task_a.fit(
            x,
            y,
            sample_weight=sample_weight,
            batch_size=len(y),
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        for variable, value in zip(trainable, before):
            assert not np.allclose(to_numpy(variable), value), variable.path
        if deep:
            # Every layer of the prompt gets a gradient.
            moved = to_numpy(prompt) - before[trainable.index(prompt)]
            for layer, update in enumerate(moved):
                assert np.abs(update).max() > 1e-6, f"prompt layer {layer}"
        for variable, value in zip(backbone.weights, frozen_before):
            np.testing.assert_array_equal(
                to_numpy(variable), value, err_msg=variable.path
            )

        # The prompt file restores the outputs exactly.
        paths = {
            name: os.path.join(str(tmp_path), f"{name}.prompt.safetensors")
            for name in "ab"
        }
        task_a.save_prompts(paths["a"])
        restored = tiny_task(backbone, prompt_config=config)
        restored.load_prompts(paths["a"])
        self.assertAllEqual(restored(x), task_a(x))

        # A bank of two tasks, one from a model, one from its file.
        task_b = random_prompt(
            tiny_task(backbone, prompt_config=config), seed=2
        )
        task_b.save_prompts(paths["b"])
        bank = PromptBank(task_a, capacity=2)
        assert bank.model.backbone.deep is deep
        bank.add_task("a", task_a)
        bank.add_task("b", paths["b"])
        mixed_x = {k: np.concatenate([v, v]) for k, v in x.items()}
        names = ["a", "b", "b", "a"]  # rows: x twice
        mixed = to_numpy(
            bank.model(
                dict(mixed_x, prompt_ids=bank.task_ids(names)),
                training=False,
            )
        )
        alone = {"a": to_numpy(task_a(mixed_x)), "b": to_numpy(task_b(mixed_x))}
        # The check means something: the two tasks answer differently.
        assert np.abs(alone["a"] - alone["b"]).max() > 1e-2
        for name in "ab":
            rows = np.asarray(names) == name
            self.assertAllClose(mixed[rows], alone[name][rows], atol=1e-4)
        if preprocessor is not None:
            self._run_string_task_test(
                family,
                backbone,
                preprocessor,
                prompt_length,
                paths,
                export,
                config,
            )
        return task_a

    def _check_fit_runs_in_training_mode(self, task, x, y, sample_weight):
        """`fit` runs every layer in training mode: with the frozen
        model's dropout on, two training steps that change nothing (the
        task is compiled with learning rate 0) see different losses (other
        dropout masks), while evaluation is deterministic. A task `call`
        that dropped the `training` flag ran the whole model as in
        inference."""
        before = [to_numpy(w).copy() for w in task.weights]
        train = [
            task.train_on_batch(x, y, sample_weight=sample_weight)
            for _ in range(2)
        ]
        test = [
            task.test_on_batch(x, y, sample_weight=sample_weight)
            for _ in range(2)
        ]
        assert test[0] == test[1], test
        assert train[0] != train[1], train
        assert test[0] not in train, (train, test)
        for variable, value in zip(task.weights, before):
            np.testing.assert_array_equal(
                to_numpy(variable), value, err_msg=variable.path
            )

    def _run_string_task_test(
        self,
        family,
        backbone,
        preprocessor,
        prompt_length,
        paths,
        export,
        config=None,
    ):
        tmp_path = os.path.dirname(paths["a"])
        from keras_prompt import export_saved_model
        from keras_prompt.serving import PromptBank

        tasks = {}
        for name, path in paths.items():
            tasks[name] = tiny_task(
                backbone,
                prompt_length,
                preprocessor,
                prompt_config=config,
            )
            tasks[name].compile(jit_compile=False)
            tasks[name].load_prompts(path)
        texts = list(TEXTS)
        names = ["a", "b", "b", "a", "b", "a"]
        bank = PromptBank(tasks["a"], capacity=2)
        for name, model in tasks.items():
            bank.add_task(name, model)
        if get_kind(family) == "encoder":
            alone = {n: m.predict(texts, verbose=0) for n, m in tasks.items()}
            mixed = bank.predict(texts, names)
            for name in "ab":
                rows = np.asarray(names) == name
                self.assertAllClose(mixed[rows], alone[name][rows], atol=1e-5)
        else:
            kwargs = {}
            if get_kind(family) == "causal":
                kwargs["stop_token_ids"] = None
            alone = {n: m.generate(texts, **kwargs) for n, m in tasks.items()}
            mixed = bank.generate(texts, names, **kwargs)
            for i, name in enumerate(names):
                assert mixed[i] == alone[name][i], (i, name, mixed[i])
        if not export:
            return
        path = os.path.join(tmp_path, "exported")
        export_saved_model(bank, path, batch_size=4)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        served = serve(
            inputs=tf.constant(texts, tf.string),
            tasks=tf.constant(names, tf.string),
        )
        if get_kind(family) == "encoder":
            self.assertAllClose(served["probabilities"], mixed, atol=1e-5)
        else:
            # The exported graph stops at the tokenizer's end token, as
            # `generate` does by default.
            expected = bank.generate(texts, names)
            outputs = [o.decode("utf-8") for o in served["outputs"].numpy()]
            assert outputs == list(expected)


# -- tiny backbones, one per registered adapter family ------------------------
VOCABULARY_SIZE = 40
PROMPT_TOKENS = [5, 9, 13]
_DECODER = dict(
    vocabulary_size=VOCABULARY_SIZE,
    num_layers=2,
    num_query_heads=2,
    num_key_value_heads=1,
    hidden_dim=16,
    intermediate_dim=32,
)
_ENCODER = dict(
    vocabulary_size=VOCABULARY_SIZE,
    num_layers=2,
    num_heads=2,
    hidden_dim=16,
    intermediate_dim=32,
    max_sequence_length=16,
    dropout=0.0,
)
# family -> (keras-hub backbone class name, config). Sliding windows of 3
# positions make the local layers actually local on the short test
# sequences. A new adapter needs an entry here (`check_tiny_backbones`).
TINY_BACKBONES = {
    "t5": (
        "T5Backbone",
        dict(
            vocabulary_size=64,
            num_layers=2,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
            dropout=0.0,
            activation="gelu",
            use_gated_activation=True,
            tie_embedding_weights=False,
        ),
    ),
    "bert": ("BertBackbone", _ENCODER),
    "roberta": ("RobertaBackbone", _ENCODER),
    "distil_bert": ("DistilBertBackbone", _ENCODER),
    "gpt2": (
        "GPT2Backbone",
        dict(
            vocabulary_size=VOCABULARY_SIZE,
            num_layers=2,
            num_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
            dropout=0.0,
            max_sequence_length=16,
        ),
    ),
    "gemma": ("GemmaBackbone", dict(_DECODER, head_dim=8)),
    "gemma3": (
        "Gemma3Backbone",
        dict(
            _DECODER,
            image_size=16,
            head_dim=8,
            use_sliding_window_attention=True,
            sliding_window_size=3,
            vision_encoder=None,
        ),
    ),
    "llama": ("LlamaBackbone", _DECODER),
    "mistral": ("MistralBackbone", dict(_DECODER, sliding_window=3)),
    "qwen": (
        "QwenBackbone",
        dict(
            _DECODER, use_sliding_window_attention=True, sliding_window_size=3
        ),
    ),
    "qwen3": (
        "Qwen3Backbone",
        dict(_DECODER, head_dim=8, sliding_window_size=3),
    ),
}


def registered_families():
    from keras_prompt.adapters.base import registered_adapters

    return [adapter.family for adapter in registered_adapters()]


def check_tiny_backbones():
    """Fails loudly when a registered adapter family has no tiny backbone
    (add one to `TINY_BACKBONES`)."""
    missing = [f for f in registered_families() if f not in TINY_BACKBONES]
    if missing:
        raise AssertionError(
            f"Registered adapter families without a tiny test backbone: "
            f"{missing}. Add them to `TINY_BACKBONES` in tests/test_case.py."
        )


def tiny_backbone(family, backbone_class=None, **overrides):
    """A tiny randomly initialised keras-hub backbone of `family` (hidden
    16, 2 layers), built from `TINY_BACKBONES[family]` updated with
    `overrides`. `backbone_class` (a keras-hub class) replaces the family's
    class, for variants such as `Llama3Backbone`."""
    import keras_hub

    if family not in TINY_BACKBONES:
        check_tiny_backbones()
        raise KeyError(
            f"No tiny backbone for family {family!r}. Known: "
            f"{sorted(TINY_BACKBONES)}"
        )
    class_name, config = TINY_BACKBONES[family]
    if backbone_class is None:
        backbone_class = getattr(keras_hub.models, class_name)
    return backbone_class(**dict(config, **overrides))


def tiny_t5(vocabulary_size=64, hidden_dim=16, num_layers=2, **kwargs):
    """A tiny randomly initialised keras-hub T5 (T5 1.1 style)."""
    kwargs.setdefault("intermediate_dim", 2 * hidden_dim)
    return tiny_backbone(
        "t5",
        vocabulary_size=vocabulary_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        **kwargs,
    )


def tiny_t5_preprocessor(proto, encoder_length=12, decoder_length=8):
    import keras_hub

    tokenizer = keras_hub.models.T5Tokenizer(proto=proto)
    return keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer,
        encoder_sequence_length=encoder_length,
        decoder_sequence_length=decoder_length,
    )


def get_kind(family):
    """`"seq2seq"`, `"causal"` or `"encoder"`: the adapter's task kind."""
    from keras_prompt.adapters.base import registered_adapters

    for adapter in registered_adapters():
        if adapter.family == family:
            return adapter.kind
    raise KeyError(f"No registered adapter for family {family!r}")


def spread_weights(backbone, seed=0, embedding_std=1.0):
    """Embeddings ~ N(0, embedding_std), kernels ~ N(0, 1 / fan_in): a
    random tiny model at keras-hub's initial scale answers almost the same
    whatever the prompt, which equivalence tests cannot use."""
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        shape = tuple(weight.shape)
        if len(shape) < 2:
            continue
        if "embedding" in weight.path:
            std = embedding_std
        else:
            std = 1.0 / np.sqrt(np.prod(shape[:-1]))
        weight.assign(rng.normal(0.0, std, shape).astype("float32"))
    return backbone


# -- token inputs and where each family puts the prompt -----------------------
def t5_inputs():
    return {
        "encoder_token_ids": np.array(
            [[8, 9, 10, 11, 1, 0], [12, 13, 1, 0, 0, 0]], "int32"
        ),
        "encoder_padding_mask": np.array(
            [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], "int32"
        ),
        "decoder_token_ids": np.array([[0, 4, 5, 6], [0, 7, 0, 0]], "int32"),
        "decoder_padding_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32"),
    }


def encoder_inputs(family):
    """Two rows with padding; BERT rows also use segment 1."""
    token_ids = np.array(
        [[2, 10, 11, 3, 12, 3, 0], [2, 14, 3, 0, 0, 0, 0]], "int32"
    )
    inputs = {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype("int32"),
    }
    if family == "bert":
        inputs["segment_ids"] = np.array(
            [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]], "int32"
        )
    return inputs


def padded_inputs(side):
    """Decoder inputs: two rows of unequal length, padded on `side`."""
    rows = [[3, 4, 6, 7], [8, 9, 10, 11, 12, 2]]
    length = 7
    token_ids = np.zeros((2, length), "int32")
    padding_mask = np.zeros((2, length), "int32")
    for i, row in enumerate(rows):
        start = 0 if side == "right" else length - len(row)
        token_ids[i, start : start + len(row)] = row
        padding_mask[i, start : start + len(row)] = 1
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def backbone_inputs(family, side="right"):
    """A padded batch of two for `family`'s backbone (`side` only matters
    for decoders)."""
    kind = get_kind(family)
    if kind == "seq2seq":
        return t5_inputs()
    if kind == "encoder":
        return encoder_inputs(family)
    return padded_inputs(side)


def prepend_encoder(tokens):
    """T5 reference inputs: `tokens` before the encoder's tokens."""

    def prepend(inputs):
        batch = inputs["encoder_token_ids"].shape[0]
        out = dict(inputs)
        out["encoder_token_ids"] = np.concatenate(
            [np.tile([tokens], (batch, 1)), inputs["encoder_token_ids"]], 1
        ).astype("int32")
        out["encoder_padding_mask"] = np.concatenate(
            [
                np.ones((batch, len(tokens)), "int32"),
                inputs["encoder_padding_mask"],
            ],
            1,
        )
        return out

    return prepend


def _insert_after_first(array, values):
    rows = np.tile(np.asarray([values], array.dtype), (array.shape[0], 1))
    return np.concatenate([array[:, :1], rows, array[:, 1:]], axis=1)


def insert_after_cls(tokens):
    """Encoder reference inputs: `tokens` right after [CLS], mask ones,
    segment 0."""

    def insert(inputs):
        out = {
            "token_ids": _insert_after_first(inputs["token_ids"], tokens),
            "padding_mask": _insert_after_first(
                inputs["padding_mask"], [1] * len(tokens)
            ),
        }
        if "segment_ids" in inputs:
            out["segment_ids"] = _insert_after_first(
                inputs["segment_ids"], [0] * len(tokens)
            )
        return out

    return insert


def insert_before_first_token(tokens):
    """Decoder reference inputs: `tokens` inserted before each row's first
    real token (after any left padding), ones inserted in the mask."""

    def insert(inputs):
        token_ids, padding_mask = [], []
        for ids, mask in zip(inputs["token_ids"], inputs["padding_mask"]):
            k = int(np.argmax(mask)) if mask.any() else len(mask)
            ones = np.ones(len(tokens), "int32")
            token_ids.append(np.concatenate([ids[:k], tokens, ids[k:]]))
            padding_mask.append(np.concatenate([mask[:k], ones, mask[k:]]))
        return {
            "token_ids": np.array(token_ids, "int32"),
            "padding_mask": np.array(padding_mask, "int32"),
        }

    return insert


def reference_inputs(family, tokens):
    """`inputs -> inputs with tokens` where `family` puts its prompt."""
    kind = get_kind(family)
    if kind == "seq2seq":
        return prepend_encoder(tokens)
    if kind == "encoder":
        return insert_after_cls(tokens)
    return insert_before_first_token(tokens)


def output_names(family):
    if get_kind(family) == "seq2seq":
        return ["encoder_sequence_output", "decoder_sequence_output"]
    if family == "bert":
        return ["sequence_output", "pooled_output"]
    return ["sequence_output"]


class NamedOutputs:
    """Presents a single-tensor output as `{"sequence_output": x}` (as
    `run_prompt_reference_test` compares dict outputs); dict outputs and
    every attribute are the model's."""

    def __init__(self, model, name="sequence_output"):
        self.model = model
        self.name = name

    def __call__(self, inputs, **kwargs):
        outputs = self.model(inputs, **kwargs)
        return outputs if isinstance(outputs, dict) else {self.name: outputs}

    def __getattr__(self, attr):
        return getattr(self.model, attr)


# -- tiny task models ---------------------------------------------------------
# Words every tiny tokenizer knows (the GPT-2 one has `WORDS[:10]` only).
TEXTS = ["red cat fish", "blue dog", "cow bird", "green", "cow", "fish white"]


def task_data(family):
    """`(x, y, sample_weight)` token inputs for `family`'s task."""
    kind = get_kind(family)
    if kind == "seq2seq":
        x = t5_inputs()
        y = np.array([[4, 5, 6, 1], [7, 1, 0, 0]], "int32")
        return x, y, x["decoder_padding_mask"].astype("float32")
    if kind == "encoder":
        return encoder_inputs(family), np.array([0, 2], "int32"), None
    x = padded_inputs("right")
    y = np.roll(x["token_ids"], -1, axis=1)
    return x, y, np.roll(x["padding_mask"], -1, axis=1).astype("float32")


def tiny_task(
    backbone,
    prompt_length=3,
    preprocessor=None,
    num_classes=3,
    deep=False,
    prompt_config=None,
):
    """The task model of `backbone`'s kind around a new `FrozenBackbone`
    (with deep prompts when `deep`; `prompt_config` instead of both prompt
    arguments)."""
    from keras_prompt import FrozenBackbone
    from keras_prompt import PromptCausalLM
    from keras_prompt import PromptClassifier
    from keras_prompt import PromptSeq2SeqLM

    if prompt_config is None:
        wrapped = FrozenBackbone(
            backbone, prompt_length=prompt_length, deep=deep
        )
    else:
        wrapped = FrozenBackbone(backbone, prompt_config=prompt_config)
    kind = wrapped.adapter.kind
    if kind == "seq2seq":
        return PromptSeq2SeqLM(wrapped, preprocessor)
    if kind == "causal":
        return PromptCausalLM(wrapped, preprocessor)
    return PromptClassifier(
        wrapped, num_classes=num_classes, preprocessor=preprocessor, dropout=0.0
    )


def random_prompt(model, seed, scale=1.0):
    """Gives a task's prompt (and head) random values, as training would."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_weights:
        shape = tuple(variable.shape)
        variable.assign(rng.normal(0.0, scale, shape).astype("float32"))
    return model


def word_bpe(words, specials):
    """`(vocabulary, merges)` of a word-level byte-pair tokenizer (GPT-2,
    RoBERTa): `specials` first, then each word (with and without the
    leading space marker) as one token, built by explicit merges."""
    forms = [f for w in words for f in ("\u0120" + w, w)]
    vocabulary = {token: i for i, token in enumerate(specials)}
    merges = []
    for form in forms:
        merged = form[0]
        vocabulary.setdefault(merged, len(vocabulary))
        for char in form[1:]:
            vocabulary.setdefault(char, len(vocabulary))
            rule = f"{merged} {char}"
            if rule not in merges:
                merges.append(rule)
            merged += char
            vocabulary.setdefault(merged, len(vocabulary))
    return vocabulary, merges


def tiny_preprocessor(family, sequence_length=8):
    """A tiny preprocessor for the task of `family`'s kind, on `WORDS`:
    T5 (SentencePiece from `keras_prompt.toy`), GPT-2 (word-level BPE) or
    BERT (WordPiece). One family per task kind (`STRING_FAMILIES`)."""
    import keras_hub

    from keras_prompt import toy

    if family == "t5":
        return toy.toy_t5_preprocessor()
    if family == "gpt2":
        tokenizer = keras_hub.models.GPT2Tokenizer(
            *word_bpe(WORDS[:10], ["<|endoftext|>"])
        )
        return keras_hub.models.GPT2CausalLMPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
    if family == "bert":
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=wordpiece_vocabulary()
        )
        return keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
    raise KeyError(f"No tiny preprocessor for family {family!r}")


# One family per task kind has a tiny preprocessor: string inputs,
# generation and SavedModel export are checked on these.
STRING_FAMILIES = {"seq2seq": "t5", "causal": "gpt2", "encoder": "bert"}


def served_by_bank(template, sources, x):
    """`{name: outputs}`: a `PromptBank` on `template` given each source
    (a prompt file or a trained task model) of `sources` by name, run on
    `x` with every row on that task."""
    from keras_prompt.serving import PromptBank

    bank = PromptBank(template, capacity=len(sources))
    rows = len(next(iter(x.values())))
    outputs = {}
    for name, source in sources.items():
        bank.add_task(name, source)
        ids = bank.task_ids([name] * rows)
        outputs[name] = bank.model(dict(x, prompt_ids=ids), training=False)
    return outputs
