"""The checks of a `Recipe`'s settings (`Recipe.__post_init__`): each
bad value is one `ValueError` / `TypeError` naming the setting."""

from keras_prompt import optimizers
from keras_prompt.tasks.prompt_classifier import POOLINGS
from keras_prompt.training import frozen_prefix_cache
from keras_prompt.training.splits import resolve_decode
from keras_prompt.validation import check_bool
from keras_prompt.validation import check_count
from keras_prompt.validation import check_float
from keras_prompt.validation import check_label_strings

OPTIMIZER_NAMES = ("auto",) + optimizers.NAMES
INITIALIZER_NAMES = ("class_label", "sampled_vocab", "random_uniform")
#: `Recipe.schedule`'s names: the paper's constant rate, or a cosine decay
#: from `learning_rate` to zero over `steps`.
SCHEDULES = ("constant", "cosine")
# The int settings: (name, minimum, whether None is allowed).
COUNTS = [
    (name, 1, False)
    for name in (
        "prompt_length",
        "batch_size",
        "steps",
        "eval_interval",
        "encoder_sequence_length",
        "decoder_sequence_length",
        "sampled_vocab_top_k",
    )
] + [("eval_batch_size", 1, True), ("patience", 1, True), ("seed", 0, True)]


def check_recipe(recipe):
    """Normalises and checks the settings of `recipe`, in place."""
    recipe.fill_from_prompt_config()
    if recipe.reparameterization is not None:
        from keras_prompt.layers import reparameterizations

        recipe.reparameterization = reparameterizations.normalize(
            recipe.reparameterization
        )
    if recipe.task is not None:
        from keras_prompt.data import get_task

        recipe.task = get_task(recipe.task)
    for name, minimum, allow_none in COUNTS:
        check_count(name, getattr(recipe, name), minimum, allow_none)
    check_float("learning_rate", recipe.learning_rate, allow_none=True)
    if recipe.optimizer_name not in OPTIMIZER_NAMES:
        raise ValueError(
            f"`optimizer_name` must be one of {OPTIMIZER_NAMES}. "
            f"Received: optimizer_name={recipe.optimizer_name!r}"
        )
    if recipe.schedule not in SCHEDULES:
        raise ValueError(
            f"`schedule` must be one of {SCHEDULES}. "
            f"Received: schedule={recipe.schedule!r}"
        )
    check_float("decay_rate", recipe.decay_rate)
    frozen_prefix_cache.check_setting(recipe.frozen_prefix_cache)
    rate = check_float("frozen_dropout", recipe.frozen_dropout, allow_none=True)
    if rate is not None and rate >= 1.0:
        raise ValueError(
            "`frozen_dropout` must be None (the checkpoint's dropout) or a "
            f"rate in [0, 1). Received: frozen_dropout={rate!r}"
        )
    check_float("weight_decay_rate", recipe.weight_decay_rate)
    check_float(
        "clipping_threshold", recipe.clipping_threshold, allow_none=True
    )
    for name in ("multiply_by_parameter_scale", "factored", "deep"):
        check_bool(name, getattr(recipe, name))
    if recipe.steps % recipe.eval_interval:
        raise ValueError(
            "`steps` must be a multiple of `eval_interval` (each "
            "evaluation ends a Keras epoch of `eval_interval` steps). "
            f"Received: steps={recipe.steps}, "
            f"eval_interval={recipe.eval_interval}"
        )
    if not isinstance(recipe.eval_split, str) or not recipe.eval_split:
        raise ValueError(
            "`eval_split` must be a split name. "
            f"Received: eval_split={recipe.eval_split!r}"
        )
    if isinstance(recipe.initializer, str):
        if recipe.initializer not in INITIALIZER_NAMES:
            raise ValueError(
                f"`initializer` must be one of {INITIALIZER_NAMES} or "
                "an initialiser instance. "
                f"Received: initializer={recipe.initializer!r}"
            )
    elif not callable(recipe.initializer):
        raise TypeError(
            "`initializer` must be a name or an initialiser instance. "
            f"Received: initializer={recipe.initializer!r}"
        )
    if recipe.pooling is not None and recipe.pooling not in POOLINGS:
        raise ValueError(
            f"`pooling` must be None (the task's default) or one of "
            f"{POOLINGS}. Received: pooling={recipe.pooling!r}"
        )
    if recipe.labels is not None:
        recipe.labels = check_label_strings("labels", recipe.labels, False)
    resolve_decode(recipe.decode, recipe.task)
    # The prompt's fields, checked (and agreeing with `prompt_config`).
    recipe.prompt_settings()
