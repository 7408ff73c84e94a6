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

import dataclasses
import math

from keras_prompt.distribute.model_sizes import GIB
from keras_prompt.distribute.model_sizes import device_spec
from keras_prompt.distribute.model_sizes import model_spec
from keras_prompt.validation import check_count

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_SLOTS = {"adafactor": 1, "adam": 2, "sgd": 0}
FULL_FINETUNING_BYTES_PER_PARAMETER = 16


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes on one replica's device for one way of training.

    Attributes:
        weights: bytes of all weights as stored (frozen and trained).
        gradients: bytes of the gradients of the trained weights.
        optimizer_state: bytes of the optimizer's slots (and, for full
            fine-tuning of bfloat16 weights, the float32 master copy).
        activations: bytes kept for the backward pass, no remat.
        activations_remat: the same with per-block rematerialisation.
        transient: bytes of the backward working set without remat.
        transient_remat: the same with remat (one block recomputed).
    """

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    activations_remat: int
    transient: int
    transient_remat: int

    @property
    def static(self):
        """Bytes that do not depend on the batch."""
        return self.weights + self.gradients + self.optimizer_state

    @property
    def total(self):
        return self.static + self.activations + self.transient

    @property
    def total_remat(self):
        return self.static + self.activations_remat + self.transient_remat

    def to_dict(self):
        data = dataclasses.asdict(self)
        data.update(total=self.total, total_remat=self.total_remat)
        return data


@dataclasses.dataclass
class Plan:
    """What `plan()` finds. `summary()` prints it as a table."""

    model: object
    device: object
    settings: dict
    prompt_tuning: MemoryEstimate
    full_finetuning: MemoryEstimate
    capacity: int
    verdict: str
    full_finetuning_verdict: str
    max_batch_per_replica: int
    max_batch_per_replica_remat: int
    advice: list

    @property
    def fits(self):
        return self.verdict != "does not fit"

    def to_dict(self):
        return {
            "model": self.model.to_dict(),
            "parameters": self.model.num_parameters(),
            "device": dataclasses.asdict(self.device),
            "settings": dict(self.settings),
            "prompt_tuning": self.prompt_tuning.to_dict(),
            "full_finetuning": self.full_finetuning.to_dict(),
            "capacity": self.capacity,
            "verdict": self.verdict,
            "full_finetuning_verdict": self.full_finetuning_verdict,
            "max_batch_per_replica": self.max_batch_per_replica,
            "max_batch_per_replica_remat": self.max_batch_per_replica_remat,
            "advice": list(self.advice),
        }

    def summary(self):
        """A human-readable report (GiB per device)."""
        s = self.settings
        pt, ft = self.prompt_tuning, self.full_finetuning

        def gib(value):
            return f"{value / GIB:9.2f}"

        lines = [
            f"model: {self.model.name} ({self.model.family}, "
            f"{self.model.num_parameters() / 1e9:.2f}B parameters), "
            f"weights in {s['dtype']}",
            f"device: {self.device.name}, {self.device.memory_bytes / GIB:g} "
            f"GiB per replica (per {self.device.per}); {s['replicas']} "
            f"replica(s); usable {self.capacity / GIB:.1f} GiB",
            f"batch: {s['batch_size']} global = {s['batch_per_replica']} per "
            f"replica; sequence {s['sequence_length']}"
            + (
                f" + target {s['target_length']}"
                if self.model.encoder_decoder
                else ""
            )
            + f"; prompt {s['prompt_length']}",
            "",
            f"{'GiB per device':<34}{'prompt tuning':>14}"
            f"{'full FT (Adam)':>16}",
            f"{'weights':<34}{gib(pt.weights):>14}{gib(ft.weights):>16}",
            f"{'gradients':<34}{gib(pt.gradients):>14}{gib(ft.gradients):>16}",
            f"{'optimizer state':<34}{gib(pt.optimizer_state):>14}"
            f"{gib(ft.optimizer_state):>16}",
            f"{'activations (no remat)':<34}{gib(pt.activations):>14}"
            f"{gib(ft.activations):>16}",
            f"{'activations (remat per block)':<34}"
            f"{gib(pt.activations_remat):>14}{gib(ft.activations_remat):>16}",
            f"{'backward working set':<34}{gib(pt.transient):>14}"
            f"{gib(ft.transient):>16}",
            f"{'total (no remat)':<34}{gib(pt.total):>14}{gib(ft.total):>16}",
            f"{'total (remat)':<34}{gib(pt.total_remat):>14}"
            f"{gib(ft.total_remat):>16}",
            "",
            f"prompt tuning: {self.verdict} (largest batch per replica: "
            f"{self.max_batch_per_replica} without remat, "
            f"{self.max_batch_per_replica_remat} with remat)",
            f"full fine-tuning with Adam: {self.full_finetuning_verdict}",
        ]
        if self.advice:
            lines.append("to make prompt tuning fit:")
            lines += [f"  - {line}" for line in self.advice]
        return "\n".join(lines)


# Feed-forward tensors of width `f` that TensorFlow's (unfused) graph keeps
# per token for the backward pass, by activation; a gated MLP keeps its
# linear branch too (+1). Measured by benchmarks/planner_accuracy.py.
ACTIVATION_TENSORS = {"relu": 2, "gelu": 3, "gelu_tanh": 5, "silu": 3}


def _mlp_tensors(spec):
    return ACTIVATION_TENSORS[spec.activation] + (1 if spec.gated else 0)


def _block(spec, s, full):
    """Elements kept per token of one self-attention block over `s`."""
    h, d, a, f = (
        spec.hidden_dim,
        spec.attention_dim,
        spec.num_heads,
        spec.intermediate_dim,
    )
    kept = 2 * h + 3 * d + spec.score_tensors * a * s + _mlp_tensors(spec) * f
    if full:
        kept += 2 * h + d + f
    return kept


def activation_elements(spec, batch, sequence_length, target_length, prompt):
    """Activation element counts of one replica's step.

    Returns a dict with `"layers"` (kept by all blocks, no remat),
    `"layers_full"` (the same for full fine-tuning), `"remat"` (block
    inputs kept with remat), `"block"` / `"block_full"` (one block's kept
    activations for the whole batch: the transient of a recomputed block)
    and `"logits"` (float32 elements of one logits tensor).
    """
    b, h, d, a = batch, spec.hidden_dim, spec.attention_dim, spec.num_heads
    out = {}
    if spec.encoder_decoder:
        s_e, t = sequence_length + prompt, target_length
        for full in (False, True):
            s_full = sequence_length if full else s_e
            encoder = spec.num_layers * b * s_full * _block(spec, s_full, full)
            cross = h + d + spec.score_tensors * a * s_full
            cross += (h + d) if full else 0
            decoder_token = _block(spec, t, full) + cross
            decoder = (
                spec.num_decoder_layers
                * b
                * (t * decoder_token + 2 * d * s_full)
            )
            key = "layers_full" if full else "layers"
            out[key] = encoder + decoder + b * (s_full + t) * h
            out["block_full" if full else "block"] = max(
                b * s_full * _block(spec, s_full, full),
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
        block = b * s_full * _block(spec, s_full, full)
        key = "layers_full" if full else "layers"
        out[key] = spec.num_layers * block + b * s_full * h
        out["block_full" if full else "block"] = block
    out["remat"] = spec.num_layers * b * s * h + b * s * h
    out["logits"] = b * sequence_length * spec.vocabulary_size
    return out


def _estimates(spec, settings, batch):
    weight_bytes = DTYPE_BYTES[settings["dtype"]]
    compute_bytes = weight_bytes
    params = spec.num_parameters()
    prompt_params = (
        settings["prompt_length"] * settings["num_prompts"] * spec.hidden_dim
    )
    elements = activation_elements(
        spec,
        batch,
        settings["sequence_length"],
        settings["target_length"],
        settings["prompt_length"],
    )
    logits = 4 * elements["logits"]
    slots = OPTIMIZER_SLOTS[settings["optimizer"]]
    prompt_tuning = MemoryEstimate(
        weights=params * weight_bytes + prompt_params * 4,
        gradients=prompt_params * 4,
        optimizer_state=prompt_params * 4 * slots,
        activations=compute_bytes * elements["layers"] + 2 * logits,
        activations_remat=compute_bytes * elements["remat"] + 2 * logits,
        transient=max(compute_bytes * elements["block"], logits),
        transient_remat=max(compute_bytes * elements["block"], logits),
    )
    master = 4 if weight_bytes < 4 else 0
    full_finetuning = MemoryEstimate(
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
):
    """Estimates per-device memory of prompt tuning (and full fine-tuning).

    Data parallelism: every replica holds all frozen weights and the prompt
    and processes `batch_size / replicas` examples.

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
        advice.append(
            f"the frozen weights alone ({weights:.1f} GiB) exceed "
            f"{capacity / GIB:.1f} GiB usable per {device.per}: data "
            "parallelism cannot work; shard the weights (model parallelism: "
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


def weight_bytes(model):
    """Bytes of a model's weights, as stored.

    Args:
        model: a Keras layer or model (e.g. a task or `FrozenBackbone`).

    Returns:
        A dict: `"trainable"`, `"frozen"` and `"total"` bytes, and
        `"by_dtype"` (bytes per variable dtype).

    Example:

    ```python
    weight_bytes(keras_prompt.FrozenBackbone(t5_bf16, prompt_length=4))
    # {"trainable": 512, "frozen": ..., "by_dtype": {"bfloat16": ...,
    #  "float32": 512}, ...}: the prompt stays float32
    ```
    """
    import numpy as np

    sizes = {"trainable": 0, "frozen": 0, "by_dtype": {}}
    trainable = {id(v) for v in model.trainable_weights}
    seen = set()
    for variable in model.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        dtype = str(variable.dtype)
        size = int(np.prod(variable.shape)) * np.dtype(dtype).itemsize
        key = "trainable" if id(variable) in trainable else "frozen"
        sizes[key] += size
        sizes["by_dtype"][dtype] = sizes["by_dtype"].get(dtype, 0) + size
    sizes["total"] = sizes["trainable"] + sizes["frozen"]
    return sizes
