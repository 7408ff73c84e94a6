"""Rank classification ("label scoring") for the text-generating tasks.

A classification task's answer is one of a few label strings (SST-2:
`"negative"` / `"positive"`). Instead of generating text and comparing it
with them, a text-to-text model can rank them: the log-likelihood of each
label's tokens given the input, with the soft prompt, teacher-forced in
one forward pass over every (input, label) pair of a batch. This is the
rank classification of the official prompt-tuning code; it always answers
with one of the labels and needs no decoding loop.

`LabelScoringMixin` gives `PromptSeq2SeqLM` and `PromptCausalLM`
`score_labels` and `predict_labels`. Each task packs the pairs exactly as
its training does (`pack_label_pairs`) and computes the logits at the
target positions (`label_logits`); everything else is shared here.
"""

import numpy as np
from keras import ops

from keras_prompt.validation import check_bool
from keras_prompt.validation import check_count
from keras_prompt.validation import check_label_strings

#: How `score_labels` combines a label's token log-probabilities.
NORMALIZATIONS = ("sum", "mean")


def label_probabilities(scores):
    """The softmax of label scores over the labels (the last axis): each
    label's probability among the labels. Float64 NumPy."""
    scores = np.asarray(scores, dtype="float64")
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def check_texts(texts):
    """`texts` as a list of strings, or a `TypeError` naming them."""
    if isinstance(texts, (str, bytes)) or not isinstance(
        texts, (list, tuple, np.ndarray)
    ):
        raise TypeError(
            f"`texts` must be a list of strings. Received: texts={texts!r}"
        )
    texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
    if not all(isinstance(text, str) for text in texts):
        raise TypeError(
            f"`texts` must be a list of strings. Received: texts={texts!r}"
        )
    return texts


def target_positions(weights):
    """Where each row's target tokens are, from training's sample weights
    `(rows, L)` (1 on the target tokens and the end token, contiguous).

    Returns `(positions, valid)`, both `(rows, T)` with `T` the most
    target tokens of a row: each row's `T` positions from its first target
    token (clipped to `L - 1`), and 1.0 where the position holds one of
    the row's target tokens, else 0.0.
    """
    weights = np.asarray(weights, dtype="float32")
    length = weights.shape[1]
    counts = weights.sum(axis=1)
    width = max(int(counts.max()), 1) if len(weights) else 1
    first = np.argmax(weights > 0, axis=1)
    positions = first[:, None] + np.arange(width)[None, :]
    clipped = np.minimum(positions, length - 1).astype("int32")
    inside = (positions < length).astype("float32")
    valid = np.take_along_axis(weights, clipped, axis=1) * inside
    return clipped, valid


class LabelScoringMixin:
    """`score_labels` and `predict_labels` for a text-generating task.

    The task class implements `pack_label_pairs(inputs, targets) -> (x, y,
    sample_weight)` (its training's packing of `(input, target)` string
    pairs) and `label_logits(x, positions)` (the logits at `positions`
    `(rows, T)` of the label sequence, from one teacher-forced forward
    pass with the prompt).
    """

    def score_labels(
        self,
        texts,
        label_strings,
        prompt_ids=None,
        normalization="sum",
        batch_size=32,
        include_end_token=True,
    ):
        """Log-likelihoods of each label string given each input.

        Every input is repeated once per label and packed with it exactly
        as training packs an `(input, target)` pair; one teacher-forced
        forward pass per batch of inputs (with the soft prompt) gives the
        log-probability of each target token. A label's score is the sum
        of those over its tokens and the end token that training appends
        to every target (`normalization="sum"`, the default: the label's
        log-likelihood), or their mean (`"mean"`: per token, which does
        not favour labels of fewer tokens). Labels of several tokens are
        scored as a whole.

        Args:
            texts: a list of input strings (as training reads them, e.g.
                `"sentence: a gem of a film ."` for `glue/sst2`).
            label_strings: the candidate targets, e.g. `("negative",
                "positive")`: distinct strings.
            prompt_ids: for a prompt bank, the prompt of each input (ints
                in `[0, num_prompts)`).
            normalization: `"sum"` or `"mean"`.
            batch_size: int, inputs per forward pass (each repeated once
                per label: `batch_size * len(label_strings)` rows).
            include_end_token: bool, whether a label's score includes the
                end token after it, as training's targets do (default).
                `False` scores the label's own tokens only (what a model
                that was not trained to stop after a label may prefer;
                with one-token labels the ranking is then that of the
                first generated token).

        Returns:
            A NumPy array `(len(texts), len(label_strings))` of float
            log-likelihoods (natural log).

        Example:

        ```python
        scores = model.score_labels(
            ["sentence: a gem of a film ."], ["negative", "positive"]
        )
        scores.argmax(axis=-1)  # e.g. [1]
        ```
        """
        texts = check_texts(texts)
        labels = check_label_strings("label_strings", label_strings)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        check_count("batch_size", batch_size)
        check_bool("include_end_token", include_end_token)
        if self.preprocessor is None:
            raise ValueError(
                "`score_labels` needs the model's preprocessor to tokenize "
                "the texts and labels. Received: preprocessor=None"
            )
        prompt_ids = self._label_prompt_ids(prompt_ids, len(texts))
        scores = np.zeros((len(texts), len(labels)), dtype="float32")
        # Batches of similar lengths: less padding in each forward pass.
        order = np.argsort([len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            ids = None if prompt_ids is None else prompt_ids[rows]
            total, count = self._score_label_batch(
                [texts[i] for i in rows], labels, ids, include_end_token
            )
            if normalization == "mean":
                total = total / np.maximum(count, 1.0)
            scores[rows] = total.reshape(len(rows), len(labels))
        return scores

    def predict_labels(self, texts, label_strings, **options):
        """The best label of each input by `score_labels`, and its
        probability over the labels (the softmax of the scores).

        Args:
            texts: a list of input strings.
            label_strings: the candidate targets (distinct strings).
            **options: `prompt_ids`, `normalization`, `batch_size`,
                `include_end_token`, as for `score_labels`.

        Returns:
            `(indices, probabilities)`: int array `(len(texts),)` of
            indices into `label_strings`, float array `(len(texts),)`.

        Example:

        ```python
        labels = ("negative", "positive")
        best, probability = model.predict_labels(
            ["sentence: dull ."], labels
        )
        labels[best[0]], probability[0]  # e.g. ("negative", 0.93)
        ```
        """
        scores = self.score_labels(texts, label_strings, **options)
        probabilities = label_probabilities(scores)
        best = probabilities.argmax(axis=-1) if len(scores) else np.zeros(0)
        best = best.astype("int64")
        chosen = np.take_along_axis(probabilities, best[:, None], axis=1)
        return best, chosen[:, 0]

    # -- shared steps --------------------------------------------------------
    def _label_prompt_ids(self, prompt_ids, count):
        """The checked prompt id of each input (a bank), or `None`."""
        num_prompts = self.backbone.num_prompts
        if prompt_ids is None:
            if num_prompts > 1:
                raise ValueError(
                    f"This model holds a bank of {num_prompts} prompts: "
                    "`score_labels` needs `prompt_ids`, one per text. "
                    "Received: prompt_ids=None"
                )
            return None
        prompt_ids = np.reshape(
            np.asarray(self.checked_prompt_ids(prompt_ids), "int32"), (-1,)
        )
        if len(prompt_ids) != count:
            raise ValueError(
                f"`prompt_ids` must hold one id per text ({count} texts). "
                f"Received: prompt_ids={prompt_ids.tolist()}"
            )
        return prompt_ids if num_prompts > 1 else None

    def _score_label_batch(self, texts, labels, prompt_ids, end_token):
        """`(total, count)` over the rows `texts x labels` (text-major):
        the summed target-token log-probabilities and the token counts."""
        inputs = np.repeat(np.asarray(texts, dtype=object), len(labels))
        targets = np.tile(np.asarray(labels, dtype=object), len(texts))
        x, y, weights = self.pack_label_pairs(list(inputs), list(targets))
        x = {key: ops.convert_to_numpy(value) for key, value in x.items()}
        positions, valid = target_positions(ops.convert_to_numpy(weights))
        if not end_token:
            # The end token is each row's last target token.
            last = valid.sum(axis=1).astype("int64") - 1
            valid[np.arange(len(valid)), np.maximum(last, 0)] = 0.0
        y = np.take_along_axis(ops.convert_to_numpy(y), positions, axis=1)
        if prompt_ids is not None:
            x["prompt_ids"] = np.repeat(prompt_ids, len(labels))
        log_probs = ops.convert_to_numpy(
            self._label_function()(x, positions, y.astype("int32"))
        )
        total = (log_probs.astype("float64") * valid).sum(axis=1)
        return total, valid.sum(axis=1)

    def target_log_probs(self, x, positions, targets):
        """The log-probability of `targets` `(rows, T)` at `positions`
        `(rows, T)` of the packed label sequences `x`, in float32."""
        logits = ops.cast(self.label_logits(x, positions), "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        picked = ops.take_along_axis(
            log_probs, ops.expand_dims(targets, -1), axis=-1
        )
        return ops.squeeze(picked, axis=-1)

    def _label_function(self):
        """`target_log_probs`, traced once per shape class with
        TensorFlow (without XLA, like the train step on CPU); eager with
        `run_eagerly` and on other backends."""
        import keras

        if keras.config.backend() != "tensorflow" or self.run_eagerly:
            return self.target_log_probs
        function = self.__dict__.get("_label_scoring_function")
        if function is None:
            import tensorflow as tf

            function = tf.function(self.target_log_probs, reduce_retracing=True)
            # Not a tracked attribute: the function holds no state.
            self.__dict__["_label_scoring_function"] = function
        return function
