"""What hpo-cls reads from a tracking store, whatever the store: a sweep's record, its trial runs, and the
:class:`TrackingStore` protocol that promote talks to. :mod:`hpo_cls.tracking.store` is its MLflow
implementation; a second backend is one module that fulfils the same protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from hpo_cls.tracking.score import ScoreRule

__all__ = ["SweepRecord", "TrialRun", "TrackingStore"]


@dataclass(frozen=True)
class SweepRecord:
    """The parent run of a sweep."""

    run_id: str
    sweep_id: str
    name: str
    experiment_id: str
    start_time: int
    params: dict[str, str]

    @property
    def rule(self) -> ScoreRule:
        """How this sweep ranks its trials (its own metric and mode)."""
        return ScoreRule.of_sweep(self.params)

    @property
    def searched(self) -> list[str]:
        return [name for name in self.params.get("searched", "").split(",") if name]


@dataclass(frozen=True)
class TrialRun:
    """A trial's run as the store holds it: params as the strings logged, each metric's last value."""

    run_id: str
    trial_id: str
    sweep_id: str
    experiment_id: str
    name: str
    status: str  # completed | early_stopped | failed | running (no final status yet)
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


class TrackingStore(Protocol):
    """The reads and writes promote makes; :class:`hpo_cls.tracking.store.MlflowStore` fulfils it."""

    uri: str

    def find_sweep(self, experiment: str, sweep: str | None = None) -> SweepRecord:
        """By sweep id, else the newest sweep of that spec name; None: the newest of the experiment."""

    def sweep_by_id(self, experiment_id: str, sweep_id: str) -> SweepRecord | None: ...

    def trial_runs(self, sweep: SweepRecord, statuses: Sequence[str] | None = None) -> list[TrialRun]:
        """The sweep's trial runs, oldest first (only those in ``statuses`` when given)."""

    def trial_run(self, run_id: str) -> TrialRun | None:
        """A trial run by id; None when the store has no run ``run_id``."""

    def metric_history(self, run_id: str, metric: str) -> list[tuple[int, float, int]]:
        """``(step, value, timestamp ms)`` of every value logged, in step order."""

    def download_artifact(self, run_id: str, path: str, dst: Path) -> Path | None:
        """The artifact ``path`` of a run copied under ``dst``; None when the run has none."""
