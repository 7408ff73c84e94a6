import keras
import keras_hub
import numpy as np
from keras import ops

from keras_prompt.convert.presets import check_preset_kwargs
from keras_prompt.convert.presets import load_preprocessor
from keras_prompt.frozen_backbone import FROM_PRESET_ARGUMENTS
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.tasks.label_scoring import LabelScoringMixin
from keras_prompt.tasks.prompt_task import PROMPT_KEYWORDS
from keras_prompt.tasks.prompt_task import PromptTaskMixin
from keras_prompt.tasks.prompt_task import check_frozen_backbone
from keras_prompt.tasks.text_generation import is_text
from keras_prompt.tasks.text_generation import mask_after_stop
from keras_prompt.validation import check_count

# Keys a dict of inputs may hold its text under, next to "prompt_ids".
TEXT_KEYS = ("prompts", "text")


def _split_prompt_ids(x):
    """`{"prompts" or "text": strings, "prompt_ids": ids}` ->
    `(strings, ids)`; anything else -> `(x, None)`.

    Dicts with further keys (e.g. `"responses"`, `"images"`) keep their
    structure (minus `"prompt_ids"`) for preprocessors that take dicts.
    """
    if not isinstance(x, dict):
        return x, None
    x = dict(x)
    prompt_ids = x.pop("prompt_ids", None)
    if len(x) == 1 and next(iter(x)) in TEXT_KEYS:
        x = next(iter(x.values()))
    return x, prompt_ids


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptCausalLM(
    LabelScoringMixin, PromptTaskMixin, keras_hub.models.CausalLM
):
    """A prompt-tuned causal language model on a frozen decoder.

    A keras-hub `CausalLM` over a `FrozenBackbone` of a decoder-only family
    (GPT-2, Gemma / Gemma 2, Gemma 3 text, Llama / Llama 3, Mistral, Qwen,
    Qwen 3): only the soft prompt trains. The prompt sits before each row's
    first real token (see `keras_prompt.adapters.decoder`); the logits of
    the prompt positions are dropped, so the model's output `(batch, L,
    vocabulary)` lines up with the preprocessor's labels and the loss never
    sees a prompt position (nor, through the preprocessor's sample weights,
    a padded one).

    `fit` / `evaluate` take raw strings (or a `tf.data` dataset of them),
    like keras-hub's causal LMs; `generate` takes strings and returns
    strings; `score_labels` / `predict_labels` rank label strings by their
    log-likelihood after an input (rank classification, see
    `keras_prompt.tasks.label_scoring`). In generation the prompt is
    written once into the key/value cache by the prefill pass (the cache
    is `prompt_length` positions longer and every new token is written
    after the prompt); it is never recomputed per token. The
    family-specific parts (cache layout, positions, embedding scale) are
    the adapter's.

    With a prompt bank (`num_prompts > 1`), inputs are a dict
    `{"prompts": strings, "prompt_ids": ints}` (`"text"` works too) for
    `fit`, `evaluate` and `generate`, and `generate_step` takes token
    inputs with a `"prompt_ids"` entry.

    `compile()` defaults to the paper's optimiser (Adafactor, constant
    learning rate 0.3, `decay_rate=0.8`, weight decay 1e-5) and greedy
    decoding.

    Absolute-position families (GPT-2) need `prompt_length +
    sequence_length` within the model's positions; a longer combination is
    a `ValueError` when the task is built, when `generate` is called with a
    longer `max_length`, and in the prompted graph for any statically
    known input length.

    Args:
        backbone: a `keras_prompt.FrozenBackbone` around a supported
            decoder-only keras-hub backbone.
        preprocessor: the family's `keras_hub.models.CausalLMPreprocessor`
            (e.g. `GPT2CausalLMPreprocessor`), or `None` (then inputs must
            be token ids and padding masks).
        target_length: optional int, the target tokens text-to-text
            training (`fit` on `(input, target)` string pairs) and
            `generate_targets` make room for: inputs are cut to
            `preprocessor.sequence_length - target_length` tokens (the
            start token included) and targets to `target_length`. `None`:
            inputs are cut to leave room for each example's target.
        **kwargs: passed to `keras_hub.models.CausalLM` (`name`,
            `compile`).

    Example:

    ```python
    model = keras_prompt.PromptCausalLM.from_preset(
        "gpt2_base_en", prompt_length=20, initializer="sampled_vocab",
        sequence_length=128,
    )
    model.fit(["I love this film. Sentiment: positive"], epochs=1)
    model.generate(["What a dull film. Sentiment:"], max_length=64)
    model.save_prompts("sentiment.prompt.safetensors")
    ```
    """

    backbone_cls = FrozenBackbone
    preprocessor_cls = keras_hub.models.CausalLMPreprocessor

    def __init__(
        self, backbone, preprocessor=None, target_length=None, **kwargs
    ):
        check_frozen_backbone(
            "PromptCausalLM", backbone, "causal", kwargs, ("preprocessor",)
        )
        check_count("target_length", target_length, allow_none=True)
        self.target_length = target_length
        if preprocessor is not None:
            backbone.adapter.check_sequence_length(
                getattr(preprocessor, "sequence_length", None),
                backbone.prompt_length,
            )
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        adapter = backbone.adapter
        inputs = backbone.input
        hidden_states = backbone(inputs)
        hidden_states = adapter.remove_prompt(
            hidden_states, inputs["padding_mask"]
        )
        outputs = adapter.logits(hidden_states)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        sequence_length=None,
        prompts=None,
        target_length=None,
        **kwargs,
    ):
        """Builds the task from a keras-hub preset of a decoder-only model.

        The family's `CausalLMPreprocessor` is found from the preset.

        With `prompts=`, a trained prompt file (or a run folder holding
        `prompt.safetensors`) is read first, before the backbone is
        loaded: it sets `prompt_length` and `num_prompts`, and its prompt
        is loaded into the new task. An argument that contradicts the
        file, or a file saved by another kind of task, is a `ValueError`.

        Args:
            preset: a keras-hub preset name, handle or folder.
            load_weights: bool, load the pretrained weights.
            sequence_length: int, tokens per example (the prompt comes on
                top of these). Defaults to the preset's, shortened for
                absolute-position models so that the prompt fits.
            prompts: optional path of a prompt file written by
                `save_prompts`, or of a folder holding `prompt.safetensors`.
            target_length: optional int, see the class; `keras-prompt
                tune` trains with its `--sequence-length` plus 16 as
                `sequence_length` and 16 here.
            **kwargs: as for `PromptSeq2SeqLM.from_preset`: the prompt
                settings go to `FrozenBackbone.from_preset`, `dtype` and the
                backbone's constructor arguments to the backbone; any other
                keyword is a `TypeError`, raised before anything is loaded.

        Example:

        ```python
        model = keras_prompt.PromptCausalLM.from_preset(
            "gpt2_base_en", prompts="sentiment.prompt.safetensors"
        )
        model.generate(["What a dull film. Sentiment:"], max_length=64)
        ```
        """
        check_preset_kwargs(
            "PromptCausalLM.from_preset",
            preset,
            kwargs,
            allowed=PROMPT_KEYWORDS,
            known=FROM_PRESET_ARGUMENTS + ("sequence_length",),
        )
        source = None
        if prompts is not None:
            source, kwargs = cls.read_preset_prompts(prompts, kwargs)
        backbone = FrozenBackbone.from_preset(
            preset, load_weights=load_weights, **kwargs
        )
        cls.check_source_backbone(source, backbone)
        preprocessor_kwargs = {}
        if sequence_length is not None:
            preprocessor_kwargs["sequence_length"] = sequence_length
        preprocessor = load_preprocessor(
            preset, cls.preprocessor_cls, **preprocessor_kwargs
        )
        limit = backbone.adapter.max_sequence_length()
        if sequence_length is None and limit is not None:
            preprocessor.sequence_length = min(
                preprocessor.sequence_length, limit - backbone.prompt_length
            )
        model = cls(
            backbone=backbone,
            preprocessor=preprocessor,
            target_length=target_length,
        )
        return model if source is None else model.load_prompt_source(source)

    # -- the prompt-state protocol ------------------------------------------
    text_key = "prompts"

    def get_config(self):
        config = super().get_config()
        config["target_length"] = self.target_length
        return config

    def task_config(self):
        return {"target_length": self.target_length}

    def check_generation_length(self, max_length):
        if max_length is None and self.preprocessor is not None:
            max_length = self.preprocessor.sequence_length
        self.check_sequence_length(max_length)

    def check_sequence_length(self, sequence_length):
        """Raises a `ValueError` if `prompt_length + sequence_length` does
        not fit the backbone's positions (absolute-position families)."""
        self.backbone.adapter.check_sequence_length(
            sequence_length, self.backbone.prompt_length
        )

    def preprocess_samples(self, x, y=None, sample_weight=None):
        if y is not None and is_text(y):
            return self._preprocess_pairs(x, y, sample_weight)
        text, prompt_ids = _split_prompt_ids(x)
        if prompt_ids is None:
            return super().preprocess_samples(text, y, sample_weight)
        prompt_ids = self.checked_prompt_ids(prompt_ids)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            super().preprocess_samples(text, y, sample_weight)
        )
        x = dict(x, prompt_ids=prompt_ids)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    # -- text-to-text: an input and its target in one sequence ------------
    #: What joins an input and its target: the model reads the input's
    #: tokens and learns to continue them with those of `separator +
    #: target`, then the end token.
    target_separator = " "

    def _preprocess_pairs(self, x, y, sample_weight):
        """`(input, target)` string pairs -> token inputs, next-token labels
        and sample weights that are 1 on the target tokens (and the end
        token) only."""
        texts, prompt_ids = _split_prompt_ids(x)
        if self.preprocessor is None:
            raise ValueError(
                "`fit` on `(input, target)` strings needs a `preprocessor`."
            )
        if sample_weight is not None:
            raise ValueError(
                "`sample_weight` is not supported with `(input, target)` "
                "string pairs: the loss weighs every target token."
            )
        x, y, sample_weight = self.pack_text_pairs(texts, y)
        if prompt_ids is not None:
            x = dict(x, prompt_ids=self.checked_prompt_ids(prompt_ids))
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    def _token_ids(self, texts):
        """The token ids of a batch of strings, as a `tf.RaggedTensor`."""
        import tensorflow as tf
        from keras_hub.src.utils.tensor_utils import no_convert_scope

        preprocessor = self.preprocessor
        if not preprocessor.built:
            preprocessor.build(None)
        with tf.device("cpu"), no_convert_scope():
            ids = preprocessor.tokenizer(tf.convert_to_tensor(texts))
        if isinstance(ids, tf.RaggedTensor):
            return ids
        if isinstance(ids, (list, tuple)):
            # keras-hub tokenizes eagerly in Python: lists of ids.
            return tf.ragged.constant(ids, dtype="int32", ragged_rank=1)
        return tf.RaggedTensor.from_tensor(ids)

    def _input_budget(self, target_lengths, extra):
        """The input tokens each row keeps: the sequence less the start
        token (when added), `extra` tokens and the target's room."""
        import tensorflow as tf

        preprocessor = self.preprocessor
        room = (
            target_lengths
            if self.target_length is None
            else tf.fill(tf.shape(target_lengths), self.target_length)
        )
        budget = (
            preprocessor.sequence_length
            + extra
            - int(preprocessor.add_start_token)
            - tf.cast(room, "int64")
        )
        return tf.maximum(budget, 0)

    def pack_text_pairs(self, inputs, targets):
        """`(x, y, sample_weight)` for the loss on targets given inputs.

        Each row holds `[start] input tokens, tokens of target_separator +
        target, end token, padding`, cut to the preprocessor's
        `sequence_length` (inputs are cut first, see `target_length`) and
        trimmed to the batch's longest row, rounded up to a multiple of 8
        (fewer distinct shapes to compile). `y` is the next token at each
        position, `sample_weight` is 1 where that token belongs to the
        target (or is the end token), 0 elsewhere.

        Args:
            inputs: a batch (rank 1) of input strings.
            targets: a batch of target strings, one per input.
        """
        import tensorflow as tf
        from keras_hub.src.utils.tensor_utils import no_convert_scope

        from keras_prompt.data.batching import PAD_MULTIPLE

        preprocessor = self.preprocessor
        input_ids = self._token_ids(inputs)
        target_ids = self._token_ids(
            tf.strings.join(
                [self.target_separator, tf.convert_to_tensor(targets)]
            )
        )
        # The packed row is sequence_length + 1 long (the last token is
        # only a label) and ends with the end token.
        budget = self._input_budget(target_ids.row_lengths(), 0)
        input_ids = _ragged_prefix(input_ids, budget)
        length = preprocessor.sequence_length + 1
        with tf.device("cpu"), no_convert_scope():
            token_ids, padding_mask = preprocessor.packer(
                tf.concat([input_ids, target_ids], axis=1),
                sequence_length=length,
                add_start_value=preprocessor.add_start_token,
                add_end_value=True,
            )
        token_ids = tf.convert_to_tensor(token_ids)
        padding_mask = tf.cast(padding_mask, "bool")
        longest = tf.reduce_max(
            tf.reduce_sum(tf.cast(padding_mask, "int32"), axis=1)
        )
        # Rows keep `longest` tokens, rounded up to PAD_MULTIPLE for the
        # inputs (`longest - 1` of them), at most the full length.
        width = tf.minimum(
            (longest - 1 + PAD_MULTIPLE - 1) // PAD_MULTIPLE * PAD_MULTIPLE,
            length - 1,
        )
        token_ids = token_ids[:, : width + 1]
        padding_mask = padding_mask[:, : width + 1]
        prefix = tf.cast(input_ids.row_lengths(), "int32") + int(
            preprocessor.add_start_token
        )
        # Label j is token j + 1: a target token from position prefix - 1.
        is_target = tf.range(width)[None, :] >= (prefix[:, None] - 1)
        x = {
            "token_ids": token_ids[:, :-1],
            "padding_mask": padding_mask[:, :-1],
        }
        y = token_ids[:, 1:]
        sample_weight = tf.cast(
            tf.logical_and(padding_mask[:, 1:], is_target), "float32"
        )
        return x, y, sample_weight

    # -- label scoring (`LabelScoringMixin`) -------------------------------
    def pack_label_pairs(self, inputs, targets):
        """Training's packing of `(input, target)` pairs
        (`pack_text_pairs`): `target_separator + target` and the end token
        after the input, inputs cut as in training."""
        return self.pack_text_pairs(inputs, targets)

    def label_logits(self, x, positions):
        """The logits at `positions` `(rows, T)` of the token sequence: the
        prompted backbone's hidden states there (prompt positions removed,
        as in the task's forward pass) through the LM head, which runs on
        those `T` positions only."""
        adapter = self.backbone.adapter
        hidden_states = self.backbone(x, training=False)
        hidden_states = adapter.remove_prompt(hidden_states, x["padding_mask"])
        hidden_states = ops.take_along_axis(
            hidden_states, ops.expand_dims(positions, -1), axis=1
        )
        return adapter.logits(hidden_states)

    def generation_inputs(self, texts):
        """Token inputs for `generate_step` from strings, each cut to leave
        room for `target_length` generated tokens (see `target_length`)
        and padded to the preprocessor's `sequence_length` (TensorFlow
        tensors on TensorFlow, NumPy arrays on other backends)."""
        import tensorflow as tf
        from keras_hub.src.utils.tensor_utils import no_convert_scope

        preprocessor = self.preprocessor
        input_ids = self._token_ids(texts)
        room = tf.zeros_like(input_ids.row_lengths())
        input_ids = _ragged_prefix(input_ids, self._input_budget(room, 0))
        with tf.device("cpu"), no_convert_scope():
            token_ids, padding_mask = preprocessor.packer(
                input_ids,
                sequence_length=preprocessor.sequence_length,
                add_start_value=preprocessor.add_start_token,
                add_end_value=False,
            )
        x = {
            "token_ids": tf.convert_to_tensor(token_ids),
            "padding_mask": tf.cast(padding_mask, "bool"),
        }
        if keras.config.backend() == "tensorflow":
            return x
        # The tokenizer's TensorFlow tensors, as the backend takes them.
        return {key: ops.convert_to_numpy(value) for key, value in x.items()}

    def generate_targets(self, inputs):
        """The generated continuation of each input string, the input not
        included: what text-to-text scoring compares with the targets
        (greedy with `compile()`'s default sampler; the separator stays,
        scoring strips it).

        Args:
            inputs: a list of input strings.

        Example:

        ```python
        model.fit(x=["great film", "dull"], y=["positive", "negative"])
        model.generate_targets(["what a film"])  # e.g. [" positive"]
        ```
        """
        if self.preprocessor is None:
            raise ValueError(
                "`generate_targets` needs the model's preprocessor."
            )
        x = self.generation_inputs(list(inputs))
        outputs = self.make_generate_function()(
            x, stop_token_ids=self.stop_token_ids()
        )
        outputs = dict(outputs)
        outputs["padding_mask"] = ops.logical_and(
            ops.cast(outputs["padding_mask"], "bool"),
            ops.logical_not(ops.cast(x["padding_mask"], "bool")),
        )
        return self.preprocessor.generate_postprocess(outputs)

    def generate(
        self,
        inputs,
        max_length=None,
        stop_token_ids="auto",
        strip_prompt=False,
    ):
        """Generates text; see `keras_hub.models.CausalLM.generate`.

        `inputs` are strings, or `{"prompts": strings, "prompt_ids": ints}`
        for a prompt bank. `max_length` (the preprocessor's
        `sequence_length` when `None`) counts the text tokens only: the
        prompt comes on top.
        """
        self.check_generation_length(max_length)
        self.checked_texts(inputs)
        if isinstance(inputs, dict) and "prompt_ids" in inputs:
            return self._generate_with_prompt_ids(
                inputs, max_length, stop_token_ids, strip_prompt
            )
        return super().generate(
            inputs,
            max_length=max_length,
            stop_token_ids=stop_token_ids,
            strip_prompt=strip_prompt,
        )

    def _generate_with_prompt_ids(
        self, inputs, max_length, stop_token_ids, strip_prompt
    ):
        """One batch of strings with one prompt id each."""
        if self.preprocessor is None:
            raise ValueError(
                "`generate` with `prompt_ids` needs a `preprocessor`; call "
                "`generate_step` on token inputs instead."
            )
        text, prompt_ids = _split_prompt_ids(inputs)
        is_scalar = isinstance(text, (str, bytes))
        if is_scalar:
            text = [text]
        prompt_ids = self.checked_prompt_ids(prompt_ids)
        prompt_ids = np.reshape(np.asarray(prompt_ids, dtype="int32"), (-1,))
        if len(prompt_ids) != len(text):
            raise ValueError(
                f"`prompt_ids` must hold one id per input ({len(text)} "
                f"inputs). Received: prompt_ids={prompt_ids.tolist()}"
            )
        x, outputs = self.generate_tokens(
            text, prompt_ids, max_length, stop_token_ids
        )
        if strip_prompt:
            outputs = dict(outputs)
            outputs["padding_mask"] = ops.logical_and(
                ops.cast(outputs["padding_mask"], "bool"),
                ops.logical_not(ops.cast(x["padding_mask"], "bool")),
            )
        outputs = self.preprocessor.generate_postprocess(outputs)
        return self._normalize_generate_outputs([outputs], is_scalar)

    def generate_step(self, inputs, stop_token_ids=None):
        """One compilable generation pass over a batch of token inputs.

        The prefill pass writes `[prompt, tokens]` into a cache of
        `prompt_length + L` positions; each next token is computed from the
        cache alone at position `prompt_length + index`. `inputs` holds
        right-padded `"token_ids"` and `"padding_mask"` (as the
        preprocessor makes them), and `"prompt_ids"` for a bank.
        """
        token_ids = inputs["token_ids"]
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        backbone = self.backbone
        adapter = backbone.adapter
        prompt_length = backbone.prompt_length
        batch_size = ops.shape(token_ids)[0]
        cache = adapter.init_cache(
            batch_size,
            prompt_length + ops.shape(token_ids)[1],
            self.compute_dtype,
        )
        _, hidden_states, cache = adapter.call_with_cache(
            token_ids,
            cache,
            0,
            prompt=backbone.prompt_embedding,
            prompt_ids=inputs.get("prompt_ids"),
            padding_mask=padding_mask,
        )
        hidden_states = adapter.remove_prompt(hidden_states, padding_mask)
        row_lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        index = ops.min(row_lengths)

        def next(ids, cache, index):
            # The previous token is at `index - 1` of the text, so at
            # `prompt_length + index - 1` of the cache.
            num_samples = ops.shape(ids)[0]
            token = ops.slice(ids, [0, index - 1], [num_samples, 1])
            logits, hidden, cache = adapter.call_with_cache(
                token, cache, prompt_length + index - 1
            )
            return (
                ops.squeeze(logits, axis=1),
                ops.squeeze(hidden, axis=1),
                cache,
            )

        token_ids = self.sampler(
            next=next,
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        return {
            "token_ids": token_ids,
            "padding_mask": mask_after_stop(
                token_ids, padding_mask, stop_token_ids
            ),
        }


def _ragged_prefix(ragged, lengths):
    """The first `lengths[i]` (at most all) values of each row of a 2D
    `tf.RaggedTensor`."""
    import tensorflow as tf

    positions = tf.ragged.range(ragged.row_lengths())
    keep = positions < tf.cast(lengths, positions.dtype)[:, None]
    return tf.ragged.boolean_mask(ragged, keep)
