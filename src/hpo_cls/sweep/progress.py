"""The sweep's console output while trials run: one line per finished trial and a compact table."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray import tune

from hpo_cls.console import PREFIX, format_cell, format_table, say
from hpo_cls.sweep.outcome import error_text, trial_status

__all__ = ["ProgressTable"]


class ProgressTable(tune.Callback):
    """Prints a compact trial table when something changed, at most every ``interval_s`` seconds,
    plus one line per finished trial. Plain text: readable in a terminal and in CI logs alike."""

    def __init__(self, param_names: list[str], epochs: int, metric: str, interval_s: float = 15.0,
                 stream=None):
        self.param_names, self.epochs, self.metric = param_names, epochs, metric
        self.interval_s = interval_s
        self.stream = stream
        self._last_print = 0.0
        self._dirty = False

    def __getstate__(self):
        state = self.__dict__.copy()
        state["stream"] = None
        return state

    def _out(self) -> Any:
        return self.stream or sys.stdout

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._dirty = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = trial_status(trial.last_result, self.epochs, errored=False)
        self._line(trial, status + (f" ({reason})" if reason else ""))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trial, f"failed ({error_text(trial)})")

    def _line(self, trial, what: str) -> None:
        result = trial.last_result or {}
        score = result.get(self.metric)
        score_text = f"{self.metric} {score:.4f}" if isinstance(score, float) else ""
        say(f"trial {trial.trial_id} {what} after {result.get('epoch', 0)}/{self.epochs} epochs {score_text}",
            self._out())
        self._dirty = True

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if self._dirty and now - self._last_print >= self.interval_s:
            self._last_print, self._dirty = now, False
            print(self.render(trials), file=self._out(), flush=True)

    def on_experiment_end(self, trials, **info) -> None:
        print(self.render(trials), file=self._out(), flush=True)

    def render(self, trials) -> str:
        rows = []
        for trial in trials:
            result = trial.last_result or {}
            score = result.get(self.metric)
            status = trial.status.lower()
            if status == "terminated":
                status = trial_status(result, self.epochs, errored=False)[0]
            rows.append([
                trial.trial_id,
                status,
                f"{result.get('epoch', 0)}/{self.epochs}",
                f"{score:.4f}" if isinstance(score, float) else "-",
                *[format_cell(trial.config.get(name, "·")) for name in self.param_names],
            ])
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.status.lower()] = counts.get(trial.status.lower(), 0) + 1
        header = ["trial", "status", "epoch", self.metric, *self.param_names]
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"{PREFIX} {len(trials)} trials: {summary}\n" + format_table(header, rows)
