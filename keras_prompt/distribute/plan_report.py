"""What `keras_prompt.distribute.plan()` finds, and its printed report."""

import dataclasses

from keras_prompt.distribute.memory_estimate import MemoryEstimate
from keras_prompt.distribute.model_sizes import GIB


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
            f"GiB per {self.device.per}; {s['replicas']} replica(s)"
            + (
                f" x {s['model_parallel']} model-parallel = "
                f"{s['devices']} devices (mesh batch x model)"
                if s["model_parallel"] > 1
                else ""
            )
            + f"; usable {self.capacity / GIB:.1f} GiB",
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
