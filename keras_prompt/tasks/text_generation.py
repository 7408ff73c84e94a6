"""Pieces shared by the text-generating tasks (`PromptSeq2SeqLM`,
`PromptCausalLM`): telling raw text inputs from token inputs, and the
padding mask of generated tokens."""

from keras import ops


def is_text(value):
    """Whether `value` holds raw text (a string, a list of strings or a
    string tensor) rather than token ids."""
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, (list, tuple)) and value:
        return isinstance(value[0], (str, bytes))
    dtype = getattr(value, "dtype", None)
    return dtype is not None and str(dtype) in ("string", "<dtype: 'string'>")


def mask_after_stop(token_ids, padding_mask, stop_token_ids):
    """Masks every position after the first generated stop token.

    Args:
        token_ids: int tensor `(batch, length)`, prompt and generated ids.
        padding_mask: bool tensor `(batch, length)`, true on the prompt
            (stop tokens there do not count).
        stop_token_ids: sequence of ids that end generation, or `None`.

    Returns:
        A bool tensor `(batch, length)`: true up to and including each
        row's first generated stop token; all true without stop tokens.
    """
    if stop_token_ids is None:
        return ops.ones_like(token_ids, dtype="bool")
    from keras_hub.src.utils.tensor_utils import any_equal

    end_locations = ops.cast(
        any_equal(token_ids, stop_token_ids, ops.logical_not(padding_mask)),
        "int32",
    )
    cumsum = ops.cast(ops.cumsum(end_locations, axis=-1), "int32")
    overflow = cumsum - end_locations
    return ops.logical_not(ops.cast(overflow, "bool"))
