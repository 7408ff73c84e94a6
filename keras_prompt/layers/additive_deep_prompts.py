"""Additive deep prompts (`PromptConfig(deep=True, deep_mode="add")`).

P-Tuning v2's deep prompts *replace* the hidden states at the prompt
positions before every layer, so what the input prompt did below a layer
is thrown away there: its vectors reach the output only through the
first layer's attention. On decoder-only models that loses to the input
prompt alone (SmolLM2-135M on SST-2: 0.516 against 0.804, docs/
performance.md). With `deep_mode="add"` each layer's prompt is instead
*added* to the hidden states that reach the prompt positions from below:
layer `l` sees `h_l + d_l`, `h_l` carrying the input prompt (and the
earlier deep prompts) through the frozen layers, `d_l` the trained
offset. The offsets start at zero, so the deep model starts as the
shallow one and keeps its path.

On a causal (decoder-only) model the prompt positions come before the
text and never attend to it, so `h_l` depends on the prompt alone: the
added prompt is exactly a replacing prompt with vectors `h_l + d_l`,
computed once from a probe (`fold`). That is what `prompt_values()`,
prompt files, banks, ensembles and serving hold; a plain file loads into
an additive model through `unfold`, which gives offsets whose fold is the
file. On an encoder the prompt positions read the text, `h_l` depends on
it and nothing folds: `check_applies` refuses. (GPT-2's absolute
positions make `h_l` depend on where the prompt sits: fold and unfold
are exact for right-padded inputs, what keras-hub's causal LM
preprocessors produce.)
"""

import contextlib

import numpy as np

from keras_prompt.initializers.deep_prompts import prompt_position_states

#: The `PromptConfig.deep_mode` of this method.
MODE = "add"


def check_applies(config, adapter, backbone_name):
    """Raises a `ValueError` naming `deep_mode` unless the prompt of
    `PromptConfig` `config` can be additive on a model of `adapter`."""
    if config.deep_mode != MODE or not adapter.prompt_sees_text:
        return
    raise ValueError(
        f"`deep_mode={MODE!r}` needs a decoder-only (causal) model, where the "
        "prompt positions never see the text and added deep prompts fold "
        f"into plain vectors; {backbone_name} is not (its kind: "
        f"{adapter.kind!r}). Use deep_mode='replace'. Received: "
        f"deep_mode={config.deep_mode!r}"
    )


def _per_prompt(values, num_prompts):
    """`values` with a leading bank axis (a single prompt gets one)."""
    return values if num_prompts > 1 else values[None]


def fold(model):
    """The plain (replacing) prompt vectors of `model`, a `FrozenBackbone`
    with additive deep prompts: layer 0 as trained, layer `l >= 1` the
    hidden states reaching the prompt positions plus its offset. float32,
    the shape of the prompt variable."""
    values = np.array(model.prompt_embedding.folded_values(), "float32")
    per_prompt = _per_prompt(values, model.num_prompts)
    for layer, state in prompt_position_states(model, apply=True).items():
        per_prompt[:, layer] += state
    return values


@contextlib.contextmanager
def _replacing(prompt):
    mode = prompt.deep_mode
    prompt.deep_mode = "replace"
    try:
        yield
    finally:
        prompt.deep_mode = mode


def unfold(model, values):
    """Sets the prompt of `model` (additive deep prompts) so that it folds
    into the plain vectors `values` (the prompt variable's shape): the
    model runs once replacing with `values`, and each layer's offset is
    `values[l]` minus the hidden states that reached it."""
    prompt = model.prompt_embedding
    values = np.array(values, "float32")
    prompt.embeddings.assign(values)
    with _replacing(prompt):
        states = prompt_position_states(model, apply=True)
    offsets = values.copy()
    per_prompt = _per_prompt(offsets, model.num_prompts)
    for layer, state in states.items():
        per_prompt[:, layer] -= state
    prompt.embeddings.assign(offsets)
