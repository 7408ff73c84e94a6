"""Will it fit? Per-device memory of prompt tuning vs. full fine-tuning.

`plan()` estimates, for one data-parallel replica, the bytes of

* **weights**: every frozen weight in its dtype (`2` bytes for bfloat16,
  `4` for float32), plus the prompt in float32;
* **prompt optimizer state**: the prompt's gradient and the optimizer's
  slots, in float32 (Adafactor without momentum, as in the paper: one slot
  the prompt's size; Adam: two);
* **activations** kept for the backward pass, with and without
  rematerialisation (formulas below);
* a **transient** working set: the backward pass of one block (or the
  vocabulary-sized logits and their gradient, whichever is larger);

and the same for full fine-tuning with Adam, for contrast: weights, a float32
master copy when the weights are bfloat16, a gradient per weight (in the
weights' dtype) and Adam's two float32 slots, i.e. 16 bytes per parameter
either way, plus the activations full fine-tuning must keep.

Activations (elements; multiplied by the compute dtype's bytes, `2` for
bfloat16, `4` for float32; logits always in float32). `b` is the
per-replica batch, `h` the width, `a` the heads, `d = a * d_k` the attention
width, `f` the feed-forward width, `P` the prompt length and `V` the
vocabulary. `m` is the number of feed-forward tensors of width `f` kept per
token: ReLU 2, exact GELU 3, tanh-GELU 5, SiLU 3, plus 1 for a gated
MLP's linear branch (T5 1.1: 4, Gemma: 6, Llama: 4, GPT-2: 5, original
T5: 2). `c` is the number of tensors of the attention scores' size kept
per layer: 1 for keras-hub's T5 and GPT-2 attention, 2 for its Gemma and
Llama-style attention. `m` and `c` count what TensorFlow's graph keeps
without fusion (measured); XLA fuses element-wise chains and keeps less,
so on TPU the estimates err on the safe side.

Prompt tuning only needs gradients with respect to the *inputs* of the
frozen matmuls, which need the weights but not the saved inputs, so a block
keeps only what its non-linear parts need: the normalisation inputs,
queries, keys and values, the attention probabilities and the feed-forward
non-linearity's tensors. Per token of a self-attention block over `s`
positions:

    A_block(s) = 2 h + 3 d + c a s + m f

* T5, encoder input `L`, target `T`, `s_e = L + P`:
  `L_enc * b * s_e * A_block(s_e)` for the encoder plus, for the decoder,
  `L_dec * b * [T * (A_block(T) + h + d + c a s_e) + 2 d s_e]` (a
  cross-attention norm, query and probabilities per target token, and the
  keys and values of the encoder output per layer).
* Decoder-only, `s = L + P`: `L * b * s * A_block(s)`.
* Both: plus the final norm's input, `b * s * h`.
* Logits: `2 * b * T * V` float32 kept (the logits and the loss' saved
  softmax gradient), where `T` is the number of scored positions (the
  target for T5, the text for decoder-only models).

The backward working set is the larger of one block's kept activations
and one more logits-sized float32 tensor (their gradient).

Full fine-tuning also keeps every matmul's input for the weight gradients:
`+ 2 h + d + f` per token and block (`+ h + d` per target token for T5's
cross-attention).

With rematerialisation (`keras.RematScope` / `jax.checkpoint` per block)
only each block's input `b * s * h` is kept (the decoder's also keep the
encoder output once); one block is recomputed at a time during the backward
pass and counts as transient memory.

The verdict compares the total with `usable_fraction` (default 0.9) of the
device's memory, leaving room for the runtime, compiled programs and
fragmentation. `benchmarks/planner_accuracy.py` checks the estimates
against TensorFlow's measured peak allocation of small configurations.
"""

import math

from keras_prompt.distribute.memory_estimate import MemoryEstimate
from keras_prompt.distribute.model_sizes import GIB
from keras_prompt.distribute.model_sizes import device_spec
from keras_prompt.distribute.model_sizes import model_spec
from keras_prompt.distribute.plan_report import Plan
from keras_prompt.validation import check_count

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_SLOTS = {"adafactor": 1, "adam": 2, "sgd": 0}
FULL_FINETUNING_BYTES_PER_PARAMETER = 16


# Feed-forward tensors of width `f` that TensorFlow's (unfused) graph keeps
# per token for the backward pass, by activation; a gated MLP keeps its
# linear branch too (+1). Measured by benchmarks/planner_accuracy.py.
ACTIVATION_TENSORS = {"relu": 2, "gelu": 3, "gelu_tanh": 5, "silu": 3}


def _mlp_tensors(spec):
    return ACTIVATION_TENSORS[spec.activation] + (1 if spec.gated else 0)


def _block(spec, s, full, shards=1):
    """Elements kept per token of one self-attention block over `s`, on
    one of `shards` devices of a model axis (heads and the feed-forward
    width split over it; the `h`-wide tensors whole on each)."""
    h, d, a, f = (
        spec.hidden_dim,
        spec.attention_dim,
        spec.num_heads,
        spec.intermediate_dim,
    )
    split = 3 * d + spec.score_tensors * a * s + _mlp_tensors(spec) * f
    kept = 2 * h + split / shards
    if full:
        kept += 2 * h + (d + f) / shards
    return kept


def activation_elements(
    spec, batch, sequence_length, target_length, prompt, model_parallel=1
):
    """Activation element counts of one replica's step (on one device of
    its `model_parallel` devices).

    Returns a dict with `"layers"` (kept by all blocks, no remat),
    `"layers_full"` (the same for full fine-tuning), `"remat"` (block
    inputs kept with remat), `"block"` / `"block_full"` (one block's kept
    activations for the whole batch: the transient of a recomputed block)
    and `"logits"` (float32 elements of one logits tensor).
    """
    b, h, a, m = batch, spec.hidden_dim, spec.num_heads, model_parallel
    d = spec.attention_dim / m  # a device's share of the attention width
    out = {}
    if spec.encoder_decoder:
        s_e, t = sequence_length + prompt, target_length
        for full in (False, True):
            s_full = sequence_length if full else s_e
            encoder = (
                spec.num_layers * b * s_full * _block(spec, s_full, full, m)
            )
            cross = h + d + spec.score_tensors * a * s_full / m
            cross += (h + d) if full else 0
            decoder_token = _block(spec, t, full, m) + cross
            decoder = (
                spec.num_decoder_layers
                * b
                * (t * decoder_token + 2 * d * s_full)
            )
            key = "layers_full" if full else "layers"
            out[key] = encoder + decoder + b * (s_full + t) * h
            out["block_full" if full else "block"] = max(
                b * s_full * _block(spec, s_full, full, m),
                b * (t * decoder_token + 2 * d * s_full),
            )
        out["remat"] = (
            spec.num_layers * b * s_e * h
            + spec.num_decoder_layers * b * t * h
            + b * s_e * h
        )
        out["logits"] = b * t * spec.vocabulary_size
        return out
    s = sequence_length + prompt
    for full in (False, True):
        s_full = sequence_length if full else s
        block = b * s_full * _block(spec, s_full, full, m)
        key = "layers_full" if full else "layers"
        out[key] = spec.num_layers * block + b * s_full * h
        out["block_full" if full else "block"] = block
    out["remat"] = spec.num_layers * b * s * h + b * s * h
    out["logits"] = b * sequence_length * spec.vocabulary_size
    return out


def _in_bytes(**sizes):
    """A `MemoryEstimate` of sizes rounded up to whole bytes (a device's
    share of sharded tensors can be fractional in the formulas)."""
    return MemoryEstimate(**{k: math.ceil(v) for k, v in sizes.items()})


def _estimates(spec, settings, batch):
    weight_bytes = DTYPE_BYTES[settings["dtype"]]
    compute_bytes = weight_bytes
    # A device holds its share of the weights sharded over a model axis.
    params = spec.num_parameters() / settings["model_parallel"]
    prompt_params = (
        settings["prompt_length"] * settings["num_prompts"] * spec.hidden_dim
    )
    elements = activation_elements(
        spec,
        batch,
        settings["sequence_length"],
        settings["target_length"],
        settings["prompt_length"],
        settings["model_parallel"],
    )
    logits = 4 * elements["logits"]
    slots = OPTIMIZER_SLOTS[settings["optimizer"]]
    prompt_tuning = _in_bytes(
        weights=params * weight_bytes + prompt_params * 4,
        gradients=prompt_params * 4,
        optimizer_state=prompt_params * 4 * slots,
        activations=compute_bytes * elements["layers"] + 2 * logits,
        activations_remat=compute_bytes * elements["remat"] + 2 * logits,
        transient=max(compute_bytes * elements["block"], logits),
        transient_remat=max(compute_bytes * elements["block"], logits),
    )
    master = 4 if weight_bytes < 4 else 0
    full_finetuning = _in_bytes(
        weights=params * weight_bytes,
        gradients=params * weight_bytes,
        optimizer_state=params * (8 + master),
        activations=compute_bytes * elements["layers_full"] + 2 * logits,
        activations_remat=compute_bytes * elements["remat"] + 2 * logits,
        transient=max(compute_bytes * elements["block_full"], logits),
        transient_remat=max(compute_bytes * elements["block_full"], logits),
    )
    return prompt_tuning, full_finetuning


def _largest_batch(spec, settings, capacity, remat, limit=1 << 16):
    """Largest per-replica batch whose prompt-tuning total fits."""

    def total(batch):
        estimate = _estimates(spec, settings, batch)[0]
        return estimate.total_remat if remat else estimate.total

    if total(1) > capacity:
        return 0
    low, high = 1, 2
    while high <= limit and total(high) <= capacity:
        low, high = high, high * 2
    if high > limit:
        return limit
    while high - low > 1:
        middle = (low + high) // 2
        if total(middle) <= capacity:
            low = middle
        else:
            high = middle
    return low


def _verdict(estimate, capacity):
    if estimate.total <= capacity:
        return "fits"
    if estimate.total_remat <= capacity:
        return "fits with rematerialisation"
    return "does not fit"


def plan(
    model,
    batch_size,
    sequence_length,
    prompt_length=100,
    target_length=None,
    dtype="bfloat16",
    device="tpu_v4",
    replicas=1,
    ram_gb=None,
    num_prompts=1,
    optimizer="adafactor",
    usable_fraction=0.9,
    model_parallel=1,
):
    """Estimates per-device memory of prompt tuning (and full fine-tuning).

    Data parallelism: every replica holds all frozen weights and the prompt
    and processes `batch_size / replicas` examples. With `model_parallel`
    devices per replica (a `keras.distribution.DeviceMesh` of shape
    `(replicas, model_parallel)`, axes `("batch", "model")`, as
    `ModelParallel` on JAX uses it), each device holds `1 / model_parallel`
    of the frozen weights (kernels and embeddings sharded over "model";
    norms and biases, a negligible share, counted as sharded too) and of
    the heads' and feed-forward activations; the prompt, the `h`-wide
    activations and the logits stay whole on every device.

    Args:
        model: a preset name (`"t5_1.1_xxl"`, `"gemma_7b_en"`, ...), a
            `ModelSpec`, a dict of its fields, a serialized keras-hub
            backbone config or a backbone; see
            `keras_prompt.distribute.model_sizes.model_spec`.
        batch_size: int, the global batch.
        sequence_length: int, input tokens per example (the encoder input
            for T5, the whole text for decoder-only models), without the
            prompt.
        prompt_length: int, prompt vectors. Defaults to 100 (the paper's).
        target_length: int, T5 target tokens. Defaults to 128 for T5;
            ignored for decoder-only models.
        dtype: `"bfloat16"` or `"float32"`, the frozen weights' and
            activations' dtype. The prompt and its optimizer state are
            float32 either way.
        device: a name from `model_sizes.device_names()`: `"tpu_v3"`,
            `"tpu_v4"`, `"tpu_v5e"`, `"tpu_v5p"`, `"a100_40"`,
            `"a100_80"`, `"h100_80"` or `"cpu"` (with `ram_gb`).
        replicas: int, data-parallel replicas (TPU cores for v2/v3, chips
            for v4/v5e/v5p, GPUs); must divide `batch_size`.
        ram_gb: float, host memory in GiB for `device="cpu"`.
        num_prompts: int, prompts in a bank (each example still uses one).
        optimizer: the prompt's optimizer: `"adafactor"` (default, one
            slot), `"adam"` (two) or `"sgd"` (none).
        usable_fraction: float in (0, 1], the share of device memory the
            verdict may use. Defaults to 0.9.
        model_parallel: int, devices of the mesh's model axis. Defaults to
            `1` (data parallelism only). The mesh has
            `replicas * model_parallel` devices.

    Returns:
        A `Plan`; `print(plan(...).summary())` shows it.

    Example:

    ```python
    from keras_prompt.distribute import plan

    result = plan(
        "t5_1.1_xxl", batch_size=32, sequence_length=512,
        target_length=16, prompt_length=100, dtype="bfloat16",
        device="tpu_v4", replicas=32,
    )
    print(result.summary())
    result.verdict  # "fits"
    ```
    """
    spec = model_spec(model)
    dev = device_spec(device, ram_gb=ram_gb)
    check_count("batch_size", batch_size)
    check_count("sequence_length", sequence_length)
    check_count("prompt_length", prompt_length)
    check_count("replicas", replicas)
    check_count("model_parallel", model_parallel)
    check_count("num_prompts", num_prompts)
    if spec.encoder_decoder:
        if target_length is None:
            target_length = 128
        check_count("target_length", target_length)
    else:
        target_length = 0
    if dtype not in DTYPE_BYTES:
        raise ValueError(
            f"`dtype` must be one of {sorted(DTYPE_BYTES)}. "
            f"Received: dtype={dtype!r}"
        )
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(
            f"`optimizer` must be one of {sorted(OPTIMIZER_SLOTS)}. "
            f"Received: optimizer={optimizer!r}"
        )
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be a multiple of `replicas` "
            f"({replicas}): each replica gets batch_size / replicas "
            f"examples. Received: batch_size={batch_size}, "
            f"replicas={replicas}"
        )
    if isinstance(usable_fraction, bool) or not (
        isinstance(usable_fraction, (int, float)) and 0 < usable_fraction <= 1
    ):
        raise ValueError(
            "`usable_fraction` must be in (0, 1]. "
            f"Received: usable_fraction={usable_fraction!r}"
        )
    settings = {
        "batch_size": batch_size,
        "batch_per_replica": batch_size // replicas,
        "replicas": replicas,
        "model_parallel": model_parallel,
        "devices": replicas * model_parallel,
        "sequence_length": sequence_length,
        "target_length": target_length,
        "prompt_length": prompt_length,
        "num_prompts": num_prompts,
        "dtype": dtype,
        "optimizer": optimizer,
        "usable_fraction": usable_fraction,
    }
    capacity = int(dev.memory_bytes * usable_fraction)
    batch = settings["batch_per_replica"]
    prompt_tuning, full_finetuning = _estimates(spec, settings, batch)
    verdict = _verdict(prompt_tuning, capacity)
    max_batch = _largest_batch(spec, settings, capacity, remat=False)
    max_batch_remat = _largest_batch(spec, settings, capacity, remat=True)
    advice = _advice(
        spec,
        settings,
        dev,
        capacity,
        prompt_tuning,
        max_batch,
        max_batch_remat,
        verdict,
    )
    return Plan(
        model=spec,
        device=dev,
        settings=settings,
        prompt_tuning=prompt_tuning,
        full_finetuning=full_finetuning,
        capacity=capacity,
        verdict=verdict,
        full_finetuning_verdict=_verdict(full_finetuning, capacity),
        max_batch_per_replica=max_batch,
        max_batch_per_replica_remat=max_batch_remat,
        advice=advice,
    )


def _advice(
    spec,
    settings,
    device,
    capacity,
    estimate,
    max_batch,
    max_batch_remat,
    verdict,
):
    """What to change when prompt tuning does not fit (or only with remat)."""
    if verdict == "fits":
        return []
    advice = []
    batch = settings["batch_per_replica"]
    if estimate.static > capacity:
        weights = estimate.weights / GIB
        if settings["dtype"] == "float32":
            advice.append(
                "load the frozen weights in bfloat16 "
                '(`dtype="bfloat16"`): halves the weights '
                f"({weights:.1f} GiB now)"
            )
        shards = settings["model_parallel"] * 2
        while estimate.weights * settings["model_parallel"] / shards > (
            capacity / 2
        ):
            shards *= 2
        advice.append(
            f"the frozen weights alone ({weights:.1f} GiB) exceed "
            f"{capacity / GIB:.1f} GiB usable per {device.per}: shard them "
            f"over a model axis (try model_parallel={shards}, "
            "keras.distribution.ModelParallel with a LayoutMap on the JAX "
            "backend, see docs/scale.md) or use a device with more memory"
        )
        return advice

    def accumulate(smaller):
        steps = math.ceil(batch / smaller)
        return (
            f"keep the global batch with {steps}-step gradient accumulation "
            "(Adafactor(gradient_accumulation_steps=...)) or "
            f"{steps}x the replicas"
        )

    if verdict == "fits with rematerialisation":
        advice.append(
            "turn on rematerialisation (per-block gradient checkpointing)"
        )
        if max_batch >= 1:
            advice.append(
                f"or, without remat, lower the batch per replica from "
                f"{batch} to {max_batch} and {accumulate(max_batch)}"
            )
    elif max_batch_remat >= 1:
        advice.append(
            f"lower the batch per replica from {batch} to "
            f"{max_batch_remat} with remat"
            + (f" ({max_batch} without)" if max_batch else "")
            + f" and {accumulate(max_batch_remat)}"
        )
    else:
        advice.append(
            "even one example per replica does not fit: shorten "
            "`sequence_length` (attention probabilities grow with its "
            "square) or shard the model (see docs/scale.md)"
        )
    if settings["dtype"] == "float32":
        advice.append(
            'use bfloat16 weights and activations (`dtype="bfloat16"`)'
        )
    return advice
