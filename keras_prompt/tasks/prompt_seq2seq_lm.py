import keras
import keras_hub
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


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptSeq2SeqLM(
    LabelScoringMixin, PromptTaskMixin, keras_hub.models.T5Seq2SeqLM
):
    """A prompt-tuned text-to-text model on a frozen T5.

    The keras-hub `T5Seq2SeqLM` task over a `FrozenBackbone`: only the soft
    prompt on the encoder input trains. `fit` / `evaluate` take raw
    `(input string, target string)` pairs (lists, arrays or a `tf.data`
    dataset of pairs), or the keras-hub dict
    `{"encoder_text": ..., "decoder_text": ...}`; `generate` takes input
    strings and returns generated strings, with the prompt active in the
    encoder and in the decoder's cross-attention cache. The loss ignores
    padding. `score_labels` / `predict_labels` rank label strings by
    their log-likelihood as decoder targets (rank classification, see
    `keras_prompt.tasks.label_scoring`).

    `compile()` defaults to the paper's optimiser: `keras_prompt`'s
    Adafactor with a constant learning rate of 0.3, `decay_rate=0.8` and
    weight decay 1e-5, and to greedy decoding.

    Args:
        backbone: a `keras_prompt.FrozenBackbone` wrapping a `T5Backbone`.
        preprocessor: a `keras_hub.models.T5Seq2SeqLMPreprocessor` or
            `None` (then inputs must be token ids).
        **kwargs: passed to `keras_hub.models.T5Seq2SeqLM`.

    Example:

    ```python
    model = keras_prompt.PromptSeq2SeqLM.from_preset(
        "t5_1.1_small", prompt_length=20, initializer="sampled_vocab"
    )
    model.fit(x=["a great movie", "dull"], y=["positive", "negative"])
    model.generate(["what a film"])
    model.save_prompts("sentiment.prompt.safetensors")
    ```
    """

    backbone_cls = FrozenBackbone
    preprocessor_cls = keras_hub.models.T5Seq2SeqLMPreprocessor

    def __init__(self, backbone, preprocessor=None, **kwargs):
        check_frozen_backbone(
            "PromptSeq2SeqLM", backbone, "seq2seq", kwargs, ("preprocessor",)
        )
        super().__init__(backbone=backbone, preprocessor=preprocessor, **kwargs)

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        encoder_sequence_length=512,
        decoder_sequence_length=128,
        prompts=None,
        **kwargs,
    ):
        """Builds the task from a keras-hub preset or a HF T5 checkpoint.

        With `prompts=`, a trained prompt file (or the run folder of
        `keras-prompt tune`) is read first, before the backbone is loaded:
        it sets `prompt_length`, `num_prompts` and `variable_length`, and
        its prompt is loaded into the new task. An argument that
        contradicts the file, or a file saved by another kind of task, is
        a `ValueError`.

        Args:
            preset: a keras-hub preset name, handle or folder, or a Hugging
                Face T5 checkpoint folder.
            load_weights: bool, load pretrained weights.
            encoder_sequence_length: int, input tokens (the prompt comes on
                top of these).
            decoder_sequence_length: int, target tokens.
            prompts: optional path of a prompt file written by
                `save_prompts`, or of a folder holding `prompt.safetensors`.
            **kwargs: `prompt_length`, `initializer`, `num_prompts`, `deep`,
                `deep_initializer` go to
                `FrozenBackbone.from_preset` (which holds their defaults);
                `dtype` (`"auto"` by default: see
                `FrozenBackbone.from_preset`) and the backbone class's
                constructor arguments to the backbone's `from_preset`. Any
                other keyword is a `TypeError` naming the closest valid
                one, raised before anything is loaded.

        Example:

        ```python
        model = keras_prompt.PromptSeq2SeqLM.from_preset(
            "t5_1.1_small", prompts="runs/glue/rte/prompt.safetensors"
        )
        model.generate(["rte hypothesis: ... premise: ..."])
        ```
        """
        check_preset_kwargs(
            "PromptSeq2SeqLM.from_preset",
            preset,
            kwargs,
            allowed=PROMPT_KEYWORDS,
            known=FROM_PRESET_ARGUMENTS
            + ("encoder_sequence_length", "decoder_sequence_length"),
        )
        source = None
        if prompts is not None:
            source, kwargs = cls.read_preset_prompts(prompts, kwargs)
        backbone = FrozenBackbone.from_preset(
            preset, load_weights=load_weights, **kwargs
        )
        cls.check_source_backbone(source, backbone)
        preprocessor = load_preprocessor(
            preset,
            cls.preprocessor_cls,
            encoder_sequence_length=encoder_sequence_length,
            decoder_sequence_length=decoder_sequence_length,
        )
        model = cls(backbone=backbone, preprocessor=preprocessor)
        return model if source is None else model.load_prompt_source(source)

    # -- the prompt-state protocol ------------------------------------------
    text_key = "encoder_text"
    target_key = "decoder_text"

    def generate(self, inputs, *args, **kwargs):
        """keras-hub's `generate`, the texts checked first
        (`keras_prompt.tasks.text_inputs`)."""
        self.checked_texts(inputs)
        return super().generate(inputs, *args, **kwargs)

    def generated_tokens(self, outputs):
        return outputs["decoder_token_ids"], outputs["decoder_padding_mask"]

    def preprocess_samples(self, x, y=None, sample_weight=None):
        # Raw (input, target) string pairs become keras-hub's dict.
        if y is not None and is_text(x) and is_text(y):
            x, y = {"encoder_text": x, "decoder_text": y}, None
        return super().preprocess_samples(x, y, sample_weight)

    # -- label scoring (`LabelScoringMixin`) -------------------------------
    def pack_label_pairs(self, inputs, targets):
        """Training's packing of `(input, target)` pairs (the
        preprocessor's: decoder `[pad, target tokens, end token]`, labels
        shifted by one and weighted on the target and end tokens), each
        sequence then cut to the batch's longest row (the encoder's
        rounded up to a multiple of 8): padding changes nothing but the
        cost."""
        from keras_prompt.data.batching import PAD_MULTIPLE
        from keras_prompt.data.batching import padded_length

        x, y, weights = self.preprocessor(
            {"encoder_text": inputs, "decoder_text": targets}
        )
        x = {key: ops.convert_to_numpy(value) for key, value in x.items()}
        for part, multiple in (("encoder", PAD_MULTIPLE), ("decoder", 1)):
            mask = x[f"{part}_padding_mask"]
            width = padded_length(
                mask.sum(axis=1).max(), mask.shape[1], multiple
            )
            for key in (f"{part}_token_ids", f"{part}_padding_mask"):
                x[key] = x[key][:, :width]
        width = x["decoder_token_ids"].shape[1]
        y = ops.convert_to_numpy(y)[:, :width]
        return x, y, ops.convert_to_numpy(weights)[:, :width]

    def label_logits(self, x, positions):
        """The decoder's logits at `positions` `(rows, T)`, teacher-forced
        on the packed targets with the prompted encoder."""
        logits = self(x, training=False)
        return ops.take_along_axis(
            logits, ops.expand_dims(positions, -1), axis=1
        )

    def call_encoder(self, token_ids, padding_mask, prompt_ids=None):
        """The encoder with the prompt; returns hidden states of length
        `prompt_length + L` (see `call_encoder_with_mask` for the mask)."""
        return self.call_encoder_with_mask(token_ids, padding_mask, prompt_ids)[
            0
        ]

    def call_encoder_with_mask(self, token_ids, padding_mask, prompt_ids=None):
        """The prompted encoder output and its extended padding mask."""
        backbone = self.backbone
        return backbone.adapter.encode(
            token_ids, padding_mask, backbone.prompt_embedding, prompt_ids
        )

    def _initialize_cache(self, encoder_hidden_states, decoder_token_ids):
        """Empty decoder caches; the cross-attention cache spans the prompt."""
        batch_size = ops.shape(decoder_token_ids)[0]
        num_heads = self.backbone.num_heads
        head_dim = self.backbone.key_value_dim or (
            self.backbone.hidden_dim // num_heads
        )
        shape = [
            batch_size,
            self.backbone.num_layers,
            2,
            ops.shape(decoder_token_ids)[1],
            num_heads,
            head_dim,
        ]
        self_attention_cache = ops.zeros(shape, dtype=self.compute_dtype)
        shape[3] = ops.shape(encoder_hidden_states)[1]
        cross_attention_cache = ops.zeros(shape, dtype=self.compute_dtype)
        return self_attention_cache, cross_attention_cache

    def generate_step(self, inputs, stop_token_ids=None):
        """One compiled generation pass for a batch of token inputs.

        Like keras-hub's T5 `generate_step`, except that the encoder runs
        once with the prompt, and the cross-attention cache and its padding
        mask span `prompt_length + L` positions. `inputs` may carry
        `"prompt_ids"` for a bank.
        """
        encoder_hidden_states, encoder_padding_mask = (
            self.call_encoder_with_mask(
                inputs["encoder_token_ids"],
                inputs["encoder_padding_mask"],
                inputs.get("prompt_ids"),
            )
        )
        decoder_token_ids = inputs["decoder_token_ids"]
        decoder_padding_mask = inputs["decoder_padding_mask"]
        self_cache, cross_cache = self._initialize_cache(
            encoder_hidden_states, decoder_token_ids
        )
        _, hidden_states, self_cache, cross_cache = (
            self.call_decoder_with_cache(
                encoder_hidden_states=encoder_hidden_states,
                encoder_padding_mask=encoder_padding_mask,
                decoder_token_ids=decoder_token_ids,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=0,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=0,
            )
        )
        row_lengths = ops.sum(ops.cast(decoder_padding_mask, "int32"), axis=-1)
        index = ops.min(row_lengths)

        def next(prompt, cache, index):
            cache_index = index - 1
            num_samples = ops.shape(prompt)[0]
            token = ops.slice(prompt, [0, cache_index], [num_samples, 1])
            self_cache, cross_cache = cache
            logits, hidden, self_cache, _ = self.call_decoder_with_cache(
                encoder_hidden_states=encoder_hidden_states,
                encoder_padding_mask=encoder_padding_mask,
                decoder_token_ids=token,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=cache_index,
                cross_attention_cache=cross_cache,
                cross_attention_cache_update_index=None,
            )
            return (
                ops.squeeze(logits, axis=1),
                ops.squeeze(hidden, axis=1),
                (self_cache, cross_cache),
            )

        decoder_token_ids = self.sampler(
            next=next,
            prompt=decoder_token_ids,
            cache=(self_cache, cross_cache),
            index=index,
            mask=decoder_padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        return {
            "decoder_token_ids": decoder_token_ids,
            "decoder_padding_mask": mask_after_stop(
                decoder_token_ids, decoder_padding_mask, stop_token_ids
            ),
        }
