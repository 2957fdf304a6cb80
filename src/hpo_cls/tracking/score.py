"""How a sweep ranks its trials: by its own metric (its first objective, the one ASHA stops on), in its own
direction. Promote, the report, ``hpo-cls sweeps`` and the sweep's own summary all rank with this rule.

A trial's score is its ``best_<metric>`` (each trial logs it as it goes), else the best value of the
metric's history (runs logged before ``best_<metric>`` was).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from hpo_cls.spec import METRIC_MODES

__all__ = ["ScoreRule", "dominates", "pareto_front"]


@dataclass(frozen=True)
class ScoreRule:
    """A metric and its direction (``max`` or ``min``)."""

    metric: str = "val_acc"
    mode: str = "max"

    @classmethod
    def of_sweep(cls, params: Mapping[str, str]) -> ScoreRule:
        """The rule a sweep's parent run records: its first ``objectives`` entry, else its ``metric`` in that
        metric's direction; a sweep that recorded neither was made when every sweep maximised val_acc."""
        first = (params.get("objectives") or "").split(",")[0]
        if ":" in first:
            metric, mode = first.split(":", 1)
            return cls(metric, mode)
        metric = params.get("metric") or "val_acc"
        return cls(metric, METRIC_MODES.get(metric, "max"))

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"

    @property
    def best_metric(self) -> str:
        """The metric a trial run logs its best value so far under."""
        return f"best_{self.metric}"

    def best(self, values: Iterable[float | None]) -> float | None:
        """The best finite value, or None."""
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if self.mode == "max" else min(finite)

    def better(self, a: float, b: float) -> bool:
        """``a`` is strictly better than ``b``."""
        return a > b if self.mode == "max" else a < b

    def key(self, score: float) -> float:
        """Sort key: best first."""
        return -score if self.mode == "max" else score

    def rank_key(self, score: float, start_time: int, run_id: str) -> tuple:
        """Promote's order of candidate runs: best score first, then the earlier run."""
        return self.key(score), start_time, run_id

    def keep_key(self, status: str, score: float | None, start_time: int, run_id: str) -> tuple:
        """Which trials a sweep keeps checkpoints of, first to last: completed trials in promote's order (the
        ones promote takes by default), then early-stopped ones (taken with ``include_early_stopped``), then
        any without a score."""
        if score is None or not math.isfinite(score):
            return 2, 0.0, start_time, run_id
        return (0 if status == "completed" else 1), *self.rank_key(score, start_time, run_id)

    def score(self, metrics: Mapping[str, float],
              history: Callable[[], Iterable[float]] | None = None) -> float | None:
        """A run's score from its last metric values, else from its history (asked for only when needed)."""
        logged = metrics.get(self.best_metric)
        if logged is not None and math.isfinite(logged):
            return float(logged)
        return self.best(history()) if history is not None else None


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    better_or_equal = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return better_or_equal and any(s * x > s * y for s, x, y in zip(signs, a, b))


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices (in input order) of the points no other point dominates; equal points are all kept."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, modes) for q in points)]
