"""Bytes on one device for one way of training (`plan()`'s unit)."""

import dataclasses


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
