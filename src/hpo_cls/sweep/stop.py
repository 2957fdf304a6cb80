"""SIGTERM (a batch scheduler's time limit, ``timeout``, ``kill``) stops a sweep the way Ctrl+C does: Tune
saves its experiment state, the trials keep their last checkpoints and their MLflow runs stay open, and the
sweep ends with :class:`~hpo_cls.errors.SweepStopped` (the CLI prints the command that resumes it) instead of
Ray's stack dump."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from hpo_cls.errors import SweepStopped

__all__ = ["GracefulStop"]

# Tune's own words on an interrupt ("Resume experiment with: Tuner.restore(...)", "Trials did not complete")
# point at its Python API; the CLI prints the hpo-cls command instead.
_TUNE_LOGGER = "ray.tune.tune"


class GracefulStop:
    """While entered, SIGTERM is handed to Tune's Ctrl+C handler (or, before Tune runs, stops at once);
    :meth:`check` then raises SweepStopped. Enter it in the main thread, after ``ray.init`` (whose own
    SIGTERM handler dumps a stack)."""

    def __init__(self, sweep_id: str):
        self.sweep_id = sweep_id
        self.signal_name: str | None = None
        self.progress = None  # the console callback, told so it does not report the trials Tune stops as ended
        self._previous = None

    def __enter__(self) -> "GracefulStop":
        self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        signal.signal(signal.SIGTERM, self._previous)
        if self.signal_name is not None and isinstance(exc, KeyboardInterrupt):
            raise SweepStopped(self.sweep_id, self.signal_name) from None
        return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        logging.getLogger(_TUNE_LOGGER).setLevel(logging.CRITICAL)
        if self.progress is not None:
            self.progress.interrupted = True
        # Tune's handler while its loop runs (it sets the "interrupted" event and restores the previous
        # handler); Python's default_int_handler before and after, which raises KeyboardInterrupt here.
        handler = signal.getsignal(signal.SIGINT)
        (handler if callable(handler) else signal.default_int_handler)(signal.SIGINT, frame)

    def check(self) -> None:
        """Raise SweepStopped if a SIGTERM arrived: the trials have not all ended, so nothing is summarized."""
        if self.signal_name is not None:
            raise SweepStopped(self.sweep_id, self.signal_name)
