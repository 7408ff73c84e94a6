"""Which Hugging Face T5 tensor is which keras-hub `T5Backbone` variable.

`weight_map(backbone)` lists every variable of a `T5Backbone` with its
Hugging Face tensor name and whether torch's `(out, in)` layout needs a
transpose; `hf_layout(kwargs, untied_head)` gives the names and shapes a
checkpoint of given `T5Backbone` arguments must hold, so a checkpoint is
checked (`check_tensor_names`) before anything is built. The mapping
itself is listed in `keras_prompt.convert.hf_t5`'s docstring.
"""

from keras_prompt.convert.hf_t5_config import SUPPORTED_NUM_BUCKETS


def _attention_map(prefix, attention):
    entries = [
        (f"{prefix}.q.weight", attention.query_projector.kernel, True),
        (f"{prefix}.k.weight", attention.key_projector.kernel, True),
        (f"{prefix}.v.weight", attention.value_projector.kernel, True),
        (f"{prefix}.o.weight", attention.output_projector.kernel, True),
    ]
    if attention.use_relative_attention_bias:
        entries.append(
            (
                f"{prefix}.relative_attention_bias.weight",
                attention.relative_attention_bias,
                False,
            )
        )
    return entries


def _feed_forward_map(prefix, layer):
    if layer.use_gated_activation:
        return [
            (f"{prefix}.wi_0.weight", layer.input_projector.kernel, True),
            (f"{prefix}.wi_1.weight", layer.gate_projector.kernel, True),
            (f"{prefix}.wo.weight", layer.output_projector.kernel, True),
        ]
    return [
        (f"{prefix}.wi.weight", layer.input_projector.kernel, True),
        (f"{prefix}.wo.weight", layer.output_projector.kernel, True),
    ]


def _block_map(prefix, layer, attentions):
    """Entries of one block: each of `attentions`, a list of
    `(hf_name, attention_layer, layer_norm)`, then the feed-forward."""
    entries = []
    for index, (hf_name, attention, norm) in enumerate(attentions):
        entries += _attention_map(f"{prefix}.{index}.{hf_name}", attention)
        entries.append(
            (f"{prefix}.{index}.layer_norm.weight", norm.weight, False)
        )
    index = len(attentions)
    entries += _feed_forward_map(f"{prefix}.{index}.DenseReluDense", layer)
    entries.append(
        (f"{prefix}.{index}.layer_norm.weight", layer.layer_norm.weight, False)
    )
    return entries


def _stack_map(stack, layers, final_norm, cross_attention):
    """Entries of the `"encoder"` or `"decoder"` stack's blocks and norm."""
    entries = []
    for i, layer in enumerate(layers):
        attentions = [
            (
                "SelfAttention",
                layer.self_attention,
                layer.self_attention_layer_norm,
            )
        ]
        if cross_attention:
            attentions.append(
                (
                    "EncDecAttention",
                    layer.cross_attention,
                    layer.cross_attention_layer_norm,
                )
            )
        entries += _block_map(f"{stack}.block.{i}.layer", layer, attentions)
    entries.append(
        (f"{stack}.final_layer_norm.weight", final_norm.weight, False)
    )
    return entries


def weight_map(backbone):
    """List of `(hf_name, keras_variable, transpose)` for every variable."""
    embedding = backbone.token_embedding
    entries = [("shared.weight", embedding.embeddings, False)]
    if not backbone.tie_embedding_weights:
        entries.append(("lm_head.weight", embedding.reverse_embeddings, True))
    entries += _stack_map(
        "encoder",
        backbone.encoder_transformer_layers,
        backbone.encoder_layer_norm,
        cross_attention=False,
    )
    entries += _stack_map(
        "decoder",
        backbone.decoder_transformer_layers,
        backbone.decoder_layer_norm,
        cross_attention=True,
    )
    # Guard against keras-hub layout drift: every variable mapped exactly once.
    mapped = [id(variable) for _, variable, _ in entries]
    all_variables = {id(v): v.path for v in backbone.weights}
    unmapped = [path for k, path in all_variables.items() if k not in mapped]
    if unmapped or len(set(mapped)) != len(mapped):
        raise RuntimeError(
            "The keras-hub T5Backbone variable layout changed; this converter "
            f"does not map: {sorted(unmapped)}"
        )
    return entries


def hf_layout(kwargs, untied_head):
    """Hugging Face tensor name -> shape implied by `T5Backbone` kwargs."""
    d_model = kwargs["hidden_dim"]
    d_ff = kwargs["intermediate_dim"]
    inner = kwargs["num_heads"] * kwargs["key_value_dim"]
    vocab = kwargs["vocabulary_size"]
    buckets = (SUPPORTED_NUM_BUCKETS, kwargs["num_heads"])

    def attention(prefix, with_bias):
        shapes = {
            f"{prefix}.q.weight": (inner, d_model),
            f"{prefix}.k.weight": (inner, d_model),
            f"{prefix}.v.weight": (inner, d_model),
            f"{prefix}.o.weight": (d_model, inner),
        }
        if with_bias:
            shapes[f"{prefix}.relative_attention_bias.weight"] = buckets
        return shapes

    def feed_forward(prefix):
        if kwargs["use_gated_activation"]:
            shapes = {
                f"{prefix}.wi_0.weight": (d_ff, d_model),
                f"{prefix}.wi_1.weight": (d_ff, d_model),
            }
        else:
            shapes = {f"{prefix}.wi.weight": (d_ff, d_model)}
        shapes[f"{prefix}.wo.weight"] = (d_model, d_ff)
        return shapes

    layout = {"shared.weight": (vocab, d_model)}
    if untied_head:
        layout["lm_head.weight"] = (vocab, d_model)
    for i in range(kwargs["num_layers"]):
        p = f"encoder.block.{i}.layer"
        layout.update(attention(f"{p}.0.SelfAttention", i == 0))
        layout[f"{p}.0.layer_norm.weight"] = (d_model,)
        layout.update(feed_forward(f"{p}.1.DenseReluDense"))
        layout[f"{p}.1.layer_norm.weight"] = (d_model,)
        p = f"decoder.block.{i}.layer"
        layout.update(attention(f"{p}.0.SelfAttention", i == 0))
        layout[f"{p}.0.layer_norm.weight"] = (d_model,)
        layout.update(attention(f"{p}.1.EncDecAttention", False))
        layout[f"{p}.1.layer_norm.weight"] = (d_model,)
        layout.update(feed_forward(f"{p}.2.DenseReluDense"))
        layout[f"{p}.2.layer_norm.weight"] = (d_model,)
    layout["encoder.final_layer_norm.weight"] = (d_model,)
    layout["decoder.final_layer_norm.weight"] = (d_model,)
    return layout


def _format_names(names, limit=50):
    names = sorted(names)
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


def check_tensor_names(available, expected, allowed_extra):
    """Raises a `ValueError` listing the tensors of `expected` (name ->
    shape) missing from `available` (a set of names) and those of
    `available` neither expected nor in `allowed_extra`."""
    missing = set(expected) - available
    unexpected = available - set(expected) - set(allowed_extra)
    if missing or unexpected:
        message = "The checkpoint does not match the T5Backbone layout."
        if missing:
            message += f" Missing tensors: {_format_names(missing)}."
        if unexpected:
            message += f" Unexpected tensors: {_format_names(unexpected)}."
        raise ValueError(message)
