"""What every trial of a sweep is handed besides its hyperparameters; torch-free, so the sweep's driver builds
it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from hpo_cls.spec import DataConfig, TrialConfig

__all__ = ["TrialSetup"]


@dataclass(frozen=True)
class TrialSetup:
    """What a trial needs besides its hyperparameters; the same for every trial of a sweep."""

    data: DataConfig
    fixed: TrialConfig
    epochs: int
    gpu_share: float = 0.0
