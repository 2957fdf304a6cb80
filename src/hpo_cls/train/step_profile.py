"""How fast one configuration trains on one device, as :mod:`hpo_cls.train.profile` measures it; torch-free,
so a sweep's driver reads this machine's stored profiles without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["StepProfile"]


@dataclass(frozen=True)
class StepProfile:
    """Throughput of one configuration on one device; memory figures only on CUDA."""

    device: str  # "cpu" or "cuda"
    device_name: str
    train_images_per_s: float
    eval_images_per_s: float
    peak_memory_bytes: int | None = None  # what the trial's process holds at its peak (torch's reserved memory)
    device_memory_bytes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)
