"""What the sweep's console view knows, apart from how it is drawn: each trial's state, the best so far,
and the sweep's elapsed time and ETA. Plain data and arithmetic (no Ray, no rich), fed by
:class:`hpo_cls.sweep.progress.SweepProgress`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialRow", "SweepBoard", "FINISHED"]

FINISHED = ("completed", "early_stopped", "failed")


@dataclass
class TrialRow:
    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"  # pending | running | paused | completed | early_stopped | failed
    epoch: int = 0
    score: float | None = None  # the metric at its latest epoch
    best: float | None = None  # the best metric of its epochs
    started: float | None = None  # clock time it was first seen running
    reason: str | None = None  # why it failed


class SweepBoard:
    """Every trial of a sweep as the console shows it. Times are seconds of one clock (``time.monotonic``)
    passed in by the caller, so the arithmetic is testable."""

    def __init__(self, sweep_id: str, num_samples: int, epochs: int, metric: str, mode: str,
                 param_names: list[str], started: float, time_budget_s: float | None = None):
        self.sweep_id, self.num_samples, self.epochs = sweep_id, num_samples, epochs
        self.metric, self.mode, self.param_names = metric, mode, param_names
        self.started, self.time_budget_s = started, time_budget_s
        self.rows: dict[str, TrialRow] = {}
        self.restored_epochs = 0  # epochs of trials that had finished before this run (a resumed sweep)

    def row(self, trial_id: str, config: dict[str, Any] | None = None) -> TrialRow:
        """The trial's row, added (with its searched values) when first seen."""
        if trial_id not in self.rows:
            searched = {k: config[k] for k in self.param_names if k in (config or {})}  # in the spec's order
            self.rows[trial_id] = TrialRow(trial_id, searched)
        return self.rows[trial_id]

    def start(self, trial_id: str, config: dict[str, Any], now: float) -> TrialRow:
        row = self.row(trial_id, config)
        row.status = "running"
        row.started = row.started if row.started is not None else now
        return row

    def result(self, trial_id: str, epoch: int, score: float | None) -> bool:
        """Record an epoch's result; True when the epoch is new (a restored trial may report one again)."""
        row = self.row(trial_id)
        new = epoch > row.epoch
        row.epoch = max(row.epoch, epoch)
        if score is not None:
            row.score = score
            row.best = score if row.best is None or self.better(score, row.best) else row.best
        return new

    def restore(self, trial_id: str, config: dict[str, Any], epoch: int, score: float | None, status: str) -> None:
        """A trial that had ended before a resumed sweep started again: shown, but not counted in its pace."""
        self.row(trial_id, config)
        self.result(trial_id, epoch, score)
        self.end(trial_id, status)
        self.restored_epochs += epoch

    def end(self, trial_id: str, status: str, reason: str | None = None) -> TrialRow:
        row = self.row(trial_id)
        row.status, row.reason = status, reason
        return row

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _rank_key(self, row: TrialRow):
        return -row.best if self.mode == "max" else row.best

    def running(self) -> list[TrialRow]:
        rows = [r for r in self.rows.values() if r.status in ("running", "paused")]
        return sorted(rows, key=lambda r: (r.started is None, r.started or 0.0, r.trial_id))

    def finished_best_first(self) -> list[TrialRow]:
        """Finished trials with a score, best first, then those without (failed before any epoch)."""
        done = [r for r in self.rows.values() if r.status in FINISHED]
        scored = sorted((r for r in done if r.best is not None and r.status != "failed"), key=self._rank_key)
        return scored + [r for r in done if r.best is None or r.status == "failed"]

    def best(self) -> TrialRow | None:
        """The trial with the best score so far, running ones included (failed ones never)."""
        scored = [r for r in self.rows.values() if r.best is not None and r.status != "failed"]
        return min(scored, key=self._rank_key) if scored else None

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("running", "pending", *FINISHED)}
        for row in self.rows.values():
            status = "running" if row.status == "paused" else row.status
            counts[status] = counts.get(status, 0) + 1
        counts["pending"] += max(0, self.num_samples - len(self.rows))
        return counts

    def done(self) -> int:
        return sum(r.status in FINISHED for r in self.rows.values())

    def eta_s(self, now: float) -> float | None:
        """Seconds until the last trial ends, from the sweep's epochs per second so far; trials to come are
        expected to run the share of their budget that finished trials ran (ASHA stops many early)."""
        elapsed = now - self.started
        epochs_done = sum(r.epoch for r in self.rows.values()) - self.restored_epochs
        if epochs_done <= 0 or elapsed <= 0:
            return None
        finished = [r for r in self.rows.values() if r.status in ("completed", "early_stopped")]
        share = sum(r.epoch for r in finished) / (len(finished) * self.epochs) if finished else 1.0
        expected = share * self.epochs
        remaining = sum(max(expected - r.epoch, 0.0) for r in self.rows.values() if r.status not in FINISHED)
        remaining += max(0, self.num_samples - len(self.rows)) * expected
        eta = remaining / (epochs_done / elapsed)
        if self.time_budget_s is not None:
            eta = min(eta, max(self.time_budget_s - elapsed, 0.0))
        return eta
