import copy

import keras
import keras_hub
import numpy as np

from keras_prompt.convert.presets import check_preset_kwargs
from keras_prompt.convert.presets import load_preprocessor
from keras_prompt.frozen_backbone import FROM_PRESET_ARGUMENTS
from keras_prompt.frozen_backbone import FrozenBackbone
from keras_prompt.layers.classification_head import ClassificationHead
from keras_prompt.layers.index_checks import checked_indices
from keras_prompt.layers.index_checks import concrete_value
from keras_prompt.tasks.prompt_task import PROMPT_KEYWORDS
from keras_prompt.tasks.prompt_task import PromptTaskMixin
from keras_prompt.tasks.prompt_task import check_frozen_backbone
from keras_prompt.validation import check_int

CLASSIFIER_OPTIONS = ("activation", "dropout", "pooling", "name", "compile")
POOLINGS = ("cls", "mean")


@keras.saving.register_keras_serializable(package="keras_prompt")
class PromptClassifier(PromptTaskMixin, keras_hub.models.TextClassifier):
    """A prompt-tuned text classifier on a frozen encoder.

    A `FrozenBackbone` around a `BertBackbone`, `RobertaBackbone` or
    `DistilBertBackbone` (the prompt sits right after `[CLS]` / `<s>`, see
    `keras_prompt.adapters.bert`), followed by dropout and a small dense
    head on the final hidden state of the first token (`[CLS]` / `<s>`,
    which keeps position 0). Only the prompt and the head train; the
    backbone's weights never change.

    The head reads the `[CLS]` hidden state for every family rather than
    BERT's `pooled_output`: it is the one representation all three
    families have, it attends to the prompt directly, and BERT's pooler
    is a frozen `tanh` layer pretrained for next-sentence prediction (and
    is not trained at all in sentence-embedding checkpoints like MiniLM),
    so passing through it adds nothing a trainable head could use.

    `pooling="mean"` instead averages the final hidden states of every
    position attention sees (`[CLS]`, the prompt, the real tokens; padding
    left out), the pooling sentence-embedding models such as
    all-MiniLM-L6-v2 were trained with (`benchmarks/minilm_sst2.py`
    compares the two).

    `fit` / `evaluate` take raw strings (or pairs of strings as a tuple)
    with integer labels in `[0, num_classes)` (float labels only when all
    are whole numbers; see `checked_labels`), checked before any compute;
    `predict` takes strings and returns class probabilities of shape
    `(N, num_classes)` (with the default `activation="softmax"`;
    `activation=None` gives logits).

    With a prompt bank (`num_prompts > 1`) each prompt has its own head
    (all with `num_classes` outputs), so one model serves several tasks;
    inputs are then a dict `{"text": strings, "prompt_ids": ints}`, which
    picks prompt and head per example.

    `compile()` defaults to Adam with a constant learning rate of 1e-2,
    sparse categorical cross-entropy (on probabilities, or on logits when
    `activation=None`) and sparse categorical accuracy.

    `save_prompts` writes the prompt(s) and the head(s) to one small file;
    `load_prompts` on a classifier built on the same backbone (e.g. by
    `from_preset`) restores the trained classifier exactly.

    Args:
        backbone: a `keras_prompt.FrozenBackbone` wrapping a BERT, RoBERTa
            or DistilBERT backbone.
        num_classes: int, number of classes (>= 2).
        preprocessor: the family's `keras_hub.models.TextClassifierPreprocessor`
            (e.g. `BertTextClassifierPreprocessor`) or `None` (then inputs
            must be the backbone's token dicts).
            `prompt_length + preprocessor.sequence_length` must fit the
            backbone's positions.
        activation: activation of the outputs. Defaults to `"softmax"`
            (probabilities); `None` gives logits.
        dropout: float in `[0, 1)`, dropout on the pooled state before the
            head. Defaults to `0.1`.
        pooling: `"cls"` (the final `[CLS]` / `<s>` state) or `"mean"`
            (the mean over `[CLS]`, the prompt and the real tokens).
            Defaults to `"cls"`. Saved in the prompt file, and checked when
            one is loaded.
        **kwargs: passed to `keras_hub.models.TextClassifier` (`name`,
            `compile`, ...).

    Example:

    ```python
    import numpy as np
    import keras_hub
    import keras_prompt

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad"]
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=2, num_heads=2,
        hidden_dim=16, intermediate_dim=32, max_sequence_length=32,
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocab), sequence_length=8
    )
    model = keras_prompt.PromptClassifier(
        keras_prompt.FrozenBackbone(bert, prompt_length=4),
        num_classes=2,
        preprocessor=preprocessor,
    )
    model.fit(x=["good good", "bad", "good", "bad bad"], y=[1, 0, 1, 0])
    model.predict(["good bad"])  # (1, 2) class probabilities
    model.save_prompts("sentiment.prompt.safetensors")
    ```
    """

    backbone_cls = FrozenBackbone
    preprocessor_cls = keras_hub.models.TextClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        activation="softmax",
        dropout=0.1,
        pooling="cls",
        **kwargs,
    ):
        check_frozen_backbone(
            "PromptClassifier",
            backbone,
            "encoder",
            kwargs,
            ("num_classes", "preprocessor", "activation", "dropout", "pooling"),
        )
        if pooling not in POOLINGS:
            raise ValueError(
                f"`pooling` must be one of {POOLINGS}. "
                f"Received: pooling={pooling!r}"
            )
        num_classes = check_int("num_classes", num_classes, 2)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(
                f"`dropout` must be a float. Received: dropout={dropout!r}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout}"
            )
        check_preprocessor_length(backbone, preprocessor)

        # === Config === (set first: `Task.__init__` compiles, and the
        # default loss reads `activation`)
        self.num_classes = num_classes
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.pooling = pooling

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        # The head trains: float32 whatever the frozen weights' dtype (a
        # bfloat16 backbone's outputs are pooled in float32 too).
        self.output_dropout = keras.layers.Dropout(
            dropout,
            dtype="float32",
            name="classifier_dropout",
        )
        self.head = ClassificationHead(
            num_classes,
            num_heads=backbone.num_prompts,
            activation=activation,
            dtype="float32",
            name="logits",
        )

        # === Functional Model ===
        inputs = backbone.input
        outputs = backbone(inputs)
        if isinstance(outputs, dict):
            outputs = outputs["sequence_output"]
        outputs = keras.ops.cast(outputs, "float32")
        if pooling == "mean":
            mask = backbone.adapter.extend_padding_mask(
                inputs["padding_mask"], backbone.prompt_embedding
            )
            x = masked_mean(outputs, mask)
        else:
            x = outputs[:, 0, :]
        x = self.output_dropout(x)
        outputs = self.head(x, head_ids=inputs.get("prompt_ids"))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "pooling": self.pooling,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Deserializing writes the built layers into the (nested) config
        # dicts; leave the caller's config untouched.
        return super().from_config(copy.deepcopy(config))

    @classmethod
    def from_preset(
        cls,
        preset,
        num_classes=None,
        sequence_length=128,
        load_weights=True,
        prompts=None,
        **kwargs,
    ):
        """Builds the classifier on a pretrained encoder.

        The backbone comes from `keras_prompt.convert.presets.load_backbone`
        and the preprocessor from keras-hub's
        `TextClassifierPreprocessor.from_preset`, which picks the family's
        class (`BertTextClassifierPreprocessor`, ...). The head starts
        fresh; `load_prompts` restores a trained prompt and head.

        With `prompts=`, a trained classifier's prompt file (or the run
        folder of `keras-prompt tune`) is read first, before the backbone
        is loaded: it sets `num_classes`, `pooling`, `prompt_length` and
        `num_prompts`, and its prompt and head are loaded into the new
        classifier. An argument that contradicts the file, or a file saved
        by another kind of task, is a `ValueError`.

        Args:
            preset: a keras-hub preset name, handle or folder, or a Hugging
                Face BERT / RoBERTa / DistilBERT folder that keras-hub
                converts (e.g. `keras_prompt.pretrained.minilm_preset_dir()`).
            num_classes: int, number of classes. Required unless `prompts`
                is given.
            sequence_length: int, tokens per input including `[CLS]` and
                `[SEP]`; the prompt comes on top of these. Defaults to 128.
            load_weights: bool, load the pretrained weights.
            prompts: optional path of a prompt file written by
                `save_prompts`, or of a folder holding `prompt.safetensors`.
            **kwargs: `activation`, `dropout`, `pooling`, `name` and
                `compile` go to the task; `prompt_length`, `initializer`,
                `num_prompts`, `deep`, `deep_initializer` to
                `FrozenBackbone.from_preset` (which holds
                their defaults); `dtype` (`"auto"` by default: see
                `FrozenBackbone.from_preset`) and the
                backbone class's constructor arguments to the backbone's
                `from_preset`. Any other keyword is a `TypeError` naming the
                closest valid one, raised before anything is loaded.

        Example:

        ```python
        from keras_prompt.pretrained import minilm_preset_dir

        model = keras_prompt.PromptClassifier.from_preset(
            minilm_preset_dir(), num_classes=2, prompt_length=20
        )
        model.fit(x=["a great movie", "dull"], y=[1, 0])

        # After `keras-prompt tune`: the trained classifier.
        tuned = keras_prompt.PromptClassifier.from_preset(
            minilm_preset_dir(), prompts="runs/glue/sst2/prompt.safetensors"
        )
        tuned.predict(["a great movie"])
        ```
        """
        check_preset_kwargs(
            "PromptClassifier.from_preset",
            preset,
            kwargs,
            allowed=CLASSIFIER_OPTIONS + PROMPT_KEYWORDS,
            known=FROM_PRESET_ARGUMENTS + ("num_classes", "sequence_length"),
        )
        source = None
        if prompts is not None:
            source, kwargs = cls.read_preset_prompts(
                prompts, dict(kwargs, num_classes=num_classes)
            )
            num_classes = kwargs.pop("num_classes")
        if num_classes is None:
            raise ValueError(
                "`num_classes` is required unless `prompts` (a trained "
                "classifier's prompt file) is given. Received: "
                "num_classes=None"
            )
        sequence_length = check_int("sequence_length", sequence_length, 2)
        options = {
            key: kwargs.pop(key) for key in CLASSIFIER_OPTIONS if key in kwargs
        }
        backbone = FrozenBackbone.from_preset(
            preset, load_weights=load_weights, **kwargs
        )
        cls.check_source_backbone(source, backbone)
        check_frozen_backbone("PromptClassifier", backbone, "encoder")
        backbone.adapter.check_sequence_length(
            sequence_length, backbone.prompt_length
        )
        preprocessor = load_preprocessor(
            preset, cls.preprocessor_cls, sequence_length=sequence_length
        )
        model = cls(
            backbone=backbone,
            num_classes=num_classes,
            preprocessor=preprocessor,
            **options,
        )
        return model if source is None else model.load_prompt_source(source)

    # -- inputs -------------------------------------------------------------
    def checked_labels(self, y):
        """`y` checked to hold class indices in `[0, num_classes)`.

        Integer labels, or float labels whose values are all whole numbers
        (`[1.0, 0.0]`, as NumPy and pandas often store them); `[1.7, 0.2]`
        is a `ValueError`, not a silent truncation. Other dtypes (strings,
        bools) are a `TypeError`. Concrete labels are checked at once; in a
        `tf.data` pipeline an assertion fails the pipeline with the same
        message. Returns `y` (a traced tensor through the assertion).
        """
        return checked_indices(
            y,
            self.num_classes,
            "y",
            where=(
                " (class indices) for a PromptClassifier with "
                f"num_classes={self.num_classes}"
            ),
            allow_whole_floats=True,
        )

    def _check_concrete_labels(self, y, validation_data=None):
        # Before any compute: the input pipeline would otherwise report a
        # bad label only as a failed assertion once the first batch runs.
        if y is not None and concrete_value(y) is not None:
            self.checked_labels(y)
        if isinstance(validation_data, (tuple, list)):
            labels = keras.utils.unpack_x_y_sample_weight(
                tuple(validation_data)
            )[1]
            if labels is not None and concrete_value(labels) is not None:
                self.checked_labels(labels)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_concrete_labels(y, kwargs.get("validation_data"))
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_concrete_labels(y)
        return super().evaluate(x, y, *args, **kwargs)

    def preprocess_samples(self, x, y=None, sample_weight=None):
        if y is not None:
            y = self.checked_labels(y)
        if isinstance(x, dict) and "text" in x:
            x = dict(x)
            text = x.pop("text")
            prompt_ids = x.pop("prompt_ids", None)
            if prompt_ids is not None:
                prompt_ids = self.checked_prompt_ids(prompt_ids)
            if x:
                raise ValueError(
                    "A `PromptClassifier` input dict holds `'text'` and "
                    f"optionally `'prompt_ids'`. Received extra keys: "
                    f"{sorted(x)}"
                )
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
                super().preprocess_samples(text, y, sample_weight)
            )
            if prompt_ids is not None:
                x = dict(x)
                x["prompt_ids"] = prompt_ids
            outputs = keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        else:
            outputs = super().preprocess_samples(x, y, sample_weight)
        if self.backbone.num_prompts > 1:
            features = keras.utils.unpack_x_y_sample_weight(outputs)[0]
            if not isinstance(features, dict) or "prompt_ids" not in features:
                raise ValueError(
                    f"This PromptClassifier has a bank of "
                    f"{self.backbone.num_prompts} prompts, so each example "
                    "needs a prompt id: pass `x={'text': strings, "
                    "'prompt_ids': ints}`. Received inputs without "
                    "'prompt_ids'."
                )
        return outputs

    # -- the prompt-state protocol ------------------------------------------
    text_key = "text"
    generates_text = False
    extras_description = "classification head"
    # Files written before `pooling` existed were trained on [CLS].
    prompt_file_defaults = {"pooling": "cls"}

    def head_variables(self):
        """The head (kernel and bias) trains and travels with the prompt."""
        return {"head/kernel": self.head.kernel, "head/bias": self.head.bias}

    def task_config(self):
        return {
            "num_classes": self.num_classes,
            "activation": self.activation,
            "dropout": self.dropout,
            "pooling": self.pooling,
        }

    def prompt_file_info(self):
        """The head only fits the pooling it was trained with."""
        return {"pooling": self.pooling}

    @classmethod
    def prompt_file_settings(cls, metadata, tensors, path):
        """The backbone's settings, the number of classes (the head's
        width) and the pooling of a classifier's prompt file."""
        settings = super().prompt_file_settings(metadata, tensors, path)
        bias = tensors.get("extra/head/bias")
        if bias is None:
            raise ValueError(
                f"The prompt file {path!r} holds no classification head; "
                "it was not saved by a PromptClassifier."
            )
        settings["num_classes"] = int(np.shape(bias)[-1])
        settings["pooling"] = metadata.get(
            "pooling", cls.prompt_file_defaults["pooling"]
        )
        return settings

    def infer(self, texts, prompt_ids=None, **kwargs):
        """Class probabilities `(N, num_classes)` (logits with
        `activation=None`); `prompt_ids` picks each text's prompt and head
        in a bank. Other arguments go to `predict`."""
        x, _ = self.prompt_inputs(texts, prompt_ids)
        kwargs.setdefault("verbose", 0)
        return self.predict(x, **kwargs)

    def output_records(self, outputs, label_strings=None):
        """One record per input: the most likely class (its name when
        `label_strings` names the `num_classes` classes, else its index)
        and its probability (`"score"` for an activation other than
        softmax)."""
        scores = np.asarray(outputs, dtype="float64")
        names = label_strings
        if names is not None and len(names) != self.num_classes:
            names = None
        key = (
            "probability"
            if self.activation is keras.activations.softmax
            else "score"
        )
        records = []
        for row in scores.reshape(-1, self.num_classes):
            index = int(np.argmax(row))
            label = index if names is None else names[index]
            records.append({"label": label, key: float(row[index])})
        return records

    # -- compiling ---------------------------------------------------------
    default_optimizer_name = "adam"


def masked_mean(sequence, mask):
    """Mean of `sequence` `(batch, length, dim)` over positions where
    `mask` `(batch, length)` is true."""
    mask = keras.ops.cast(mask, sequence.dtype)[:, :, None]
    total = keras.ops.sum(sequence * mask, axis=1)
    count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1)
    return total / count


def check_preprocessor_length(backbone, preprocessor):
    """Raises if the preprocessor's sequences plus the prompt are too long."""
    sequence_length = getattr(preprocessor, "sequence_length", None)
    if isinstance(sequence_length, (int, np.integer)):
        backbone.adapter.check_sequence_length(
            int(sequence_length), backbone.prompt_length
        )
