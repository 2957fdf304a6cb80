"""The sweep's console output while trials run, as a Tune callback.

On a terminal: one live table (:mod:`hpo_cls.sweep.live`) redrawn in place, with a line per finished,
stopped or failed trial scrolling above it. Elsewhere (a log file, CI, ``nohup``): one plain line per
event (trial started, every few epochs, stopped early, finished, failed) and never a table. Quiet: nothing
(the summary after the sweep is printed by :func:`hpo_cls.sweep.outcome.print_summary`). The console
module decides which.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, TextIO

from ray import tune

from hpo_cls.console import (
    LINES,
    LIVE,
    PREFIX,
    QUIET,
    format_cell,
    format_duration,
    output_mode,
    rich_console,
    say,
    start_display,
    stop_display,
)
from hpo_cls.sweep.board import FINISHED, SweepBoard, TrialRow
from hpo_cls.sweep.outcome import error_text, trial_status

__all__ = ["SweepProgress", "epoch_line_every"]

_REFRESH_S = 1.0  # the live table is redrawn at most this often (and at every event)
# The progress callback of a resuming driver, while Tune unpickles the interrupted run's (see taking_over).
_TAKING_OVER: ContextVar[SweepProgress | None] = ContextVar("hpo_cls_progress_taking_over", default=None)


def epoch_line_every(epochs: int) -> int:
    """Plain output reports a trial's epochs every N epochs: about five lines for a full trial."""
    return max(1, round(epochs / 5))


class SweepProgress(tune.Callback):
    """Feeds a :class:`SweepBoard` from Tune's events and shows it the way the output mode asks.

    Tune pickles its callbacks with the experiment, so the view (a terminal, a thread) is made in
    :meth:`setup`, again for a resumed sweep; ``quiet`` may be changed before then. ``Tuner.restore``
    unpickles the interrupted run's callbacks and Tune has no public getter for them: a resuming driver
    restores inside :meth:`taking_over`, so the callback Tune gets back is its own (``--quiet``, the stream
    and the stop signal of this run)."""

    def __init__(self, sweep_id: str, num_samples: int, epochs: int, metric: str, mode: str,
                 param_names: list[str], time_budget_s: float | None = None, quiet: bool = False,
                 stream: TextIO | None = None):
        self.sweep_id, self.num_samples, self.epochs = sweep_id, num_samples, epochs
        self.metric, self.mode, self.param_names = metric, mode, param_names
        self.time_budget_s, self.quiet, self.stream = time_budget_s, quiet, stream
        self.board: SweepBoard | None = None
        self._view: _LiveView | None = None
        self._mode = QUIET
        self._last_refresh = 0.0
        self._synced = False  # trials were compared with Tune's list once (see _sync)
        self.interrupted = False  # a signal stopped the sweep: Tune ends its running trials, they did not end

    def __getstate__(self):
        return {**self.__dict__, "stream": None, "board": None, "_view": None, "interrupted": False}

    def __reduce__(self):
        return _unpickled, (self.__getstate__(),)

    @contextmanager
    def taking_over(self) -> Iterator[SweepProgress]:
        """Within: a pickled progress callback of this sweep unpickles as this one."""
        token = _TAKING_OVER.set(self)
        try:
            yield self
        finally:
            _TAKING_OVER.reset(token)

    def setup(self, **info) -> None:
        out = self.stream or sys.stdout
        self._mode = output_mode(out, self.quiet)
        self.board = SweepBoard(self.sweep_id, self.num_samples, self.epochs, self.metric, self.mode,
                                self.param_names, started=time.monotonic(), time_budget_s=self.time_budget_s)
        self._synced = False
        if self._mode == LIVE:
            self._view = _LiveView(out)

    def close(self) -> None:
        """Leave the terminal as it was (the last table stays); safe to call twice."""
        if self._view is not None:
            self._refresh(force=True)
            self._view.stop()
            self._view = None

    # -- Tune's events --------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        row = self.board.start(trial.trial_id, trial.config, time.monotonic())
        if self._mode == LINES:
            values = " ".join(f"{k}={format_cell(v)}" for k, v in row.config.items())
            self._line(f"trial {trial.trial_id} started" + (f": {values}" if values else ""))
        self._refresh(force=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.board.start(trial.trial_id, trial.config, time.monotonic())  # a restored trial starts reporting
        epoch = int(result.get("epoch", 0))
        score = result.get(self.metric)
        new = self.board.result(trial.trial_id, epoch, float(score) if isinstance(score, (int, float)) else None)
        if self._mode == LINES and new and epoch < self.epochs and epoch % epoch_line_every(self.epochs) == 0:
            row = self.board.rows[trial.trial_id]
            self._line(f"trial {trial.trial_id} epoch {epoch}/{self.epochs}: {self._scores(row)}")
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = trial_status(trial.last_result, self.epochs, errored=False)
        self._ended(trial, status, reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial, "failed", error_text(trial))

    def on_step_end(self, iteration, trials, **info) -> None:
        self._sync(trials)
        self._refresh()

    def on_experiment_end(self, trials, **info) -> None:
        if not self.interrupted:  # else the trials Tune stopped would read as stopped early
            self._sync(trials)
        self.close()

    def _sync(self, trials) -> None:
        """Catch up with trials that ended without an event here (e.g. failing to start on a reused actor);
        those already finished when this callback first sees them were restored with a resumed sweep and
        join the table silently."""
        restored, self._synced = not self._synced, True
        for trial in trials:
            if trial.status not in ("ERROR", "TERMINATED"):
                continue
            row = self.board.rows.get(trial.trial_id)
            if row is not None and row.status in FINISHED:
                continue
            failed = trial.status == "ERROR"
            status = "failed" if failed else trial_status(trial.last_result, self.epochs, errored=False)[0]
            reason = error_text(trial) if failed else None
            if restored and row is None:
                score = (trial.last_result or {}).get(self.metric)
                self.board.restore(trial.trial_id, trial.config, int((trial.last_result or {}).get("epoch", 0)),
                                   float(score) if isinstance(score, (int, float)) else None, status)
            else:
                self._ended(trial, status, reason)

    # -- output ---------------------------------------------------------------------------------

    def _record(self, trial) -> None:
        result = trial.last_result or {}
        score = result.get(self.metric)
        self.board.row(trial.trial_id, trial.config)
        self.board.result(trial.trial_id, int(result.get("epoch", 0)),
                          float(score) if isinstance(score, (int, float)) else None)

    def _ended(self, trial, status: str, reason: str | None) -> None:
        self._record(trial)
        row = self.board.end(trial.trial_id, status, reason)
        what = {"completed": "completed", "early_stopped": "stopped early", "failed": "failed"}[status]
        text = f"trial {row.trial_id} {what} after {row.epoch}/{self.epochs} epochs"
        text += f": {reason}" if status == "failed" else f": {self._scores(row)}"
        # The live table's headline says how the sweep stands; a log line has to say it itself.
        self._line(text if self._view is not None else f"{text}  [{self._sweep_status()}]")
        self._refresh(force=True)

    def _scores(self, row: TrialRow) -> str:
        score = f"{row.score:.4f}" if row.score is not None else "-"
        best = f"{row.best:.4f}" if row.best is not None else "-"
        return f"{self.metric} {score} (best {best})"

    def _sweep_status(self) -> str:
        now = time.monotonic()
        best = self.board.best()
        best_text = f", best {self.metric} {best.best:.4f} ({best.trial_id})" if best else ""
        return (f"{self.board.done()}/{self.num_samples} done{best_text}, elapsed "
                f"{format_duration(now - self.board.started)}, ETA ~{format_duration(self.board.eta_s(now))}")

    def _line(self, text: str) -> None:
        if self._mode == QUIET:
            return
        if self._view is not None:
            self._view.line(f"{PREFIX} {text}")
        else:
            say(text, self.stream or sys.stdout)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._view is not None and (force or now - self._last_refresh >= _REFRESH_S):
            self._last_refresh = now
            self._view.show(self.board, now)


def _unpickled(state: dict) -> SweepProgress:
    taking_over = _TAKING_OVER.get()
    if taking_over is not None and taking_over.sweep_id == state["sweep_id"]:
        return taking_over
    progress = SweepProgress.__new__(SweepProgress)
    progress.__dict__.update(state)
    return progress


class _LiveView:
    """The rich ``Live`` display: the table in place, event lines (and anything else printed to stdout or
    stderr meanwhile, e.g. warnings) above it."""

    def __init__(self, stream: TextIO):
        from rich.live import Live

        self.console = rich_console(stream)
        self.live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=True,
                         redirect_stderr=True, vertical_overflow="crop")
        self._moved = start_display(self.live)

    def show(self, board: SweepBoard, now: float) -> None:
        from hpo_cls.sweep.live import render_board

        self.live.update(render_board(board, now, self.console.width, self.console.height), refresh=True)

    def line(self, text: str) -> None:
        self.live.console.print(text)

    def stop(self) -> None:
        stop_display(self.live, self._moved)
