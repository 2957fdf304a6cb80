"""What the user sees: progress lines, warnings and plain-text tables, in hpo-cls's one voice.

Every module that talks to the user goes through here, so where output goes (stdout, stderr, a test's
buffer) and how it looks is decided in one place: a person at a terminal gets views updated in place
(``rich``), a log file or a pipe gets one plain line per event, ``--quiet`` gets the final summary only.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from hpo_cls.tracking.uri import redact_text  # a leaf module (re only): no MLflow import

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["PREFIX", "LIVE", "LINES", "QUIET", "say", "warn", "format_table", "format_cell", "is_terminal",
           "output_mode", "rich_console", "start_display", "stop_display", "Steps", "format_duration"]

PREFIX = "[hpo-cls]"
LIVE, LINES, QUIET = "live", "lines", "quiet"  # the output modes: see output_mode()


def say(message: str, out: TextIO | None = None) -> None:
    """A progress line on stdout (or ``out``), flushed at once so logs and pipes see it live."""
    print(f"{PREFIX} {redact_text(message)}", file=out or sys.stdout, flush=True)


def warn(message: str, out: TextIO | None = None) -> None:
    """A warning on stderr (or ``out``)."""
    print(f"{PREFIX} warning: {redact_text(message)}", file=out or sys.stderr, flush=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns under a dashed rule; readable in a terminal and in CI logs alike."""
    columns = list(zip(header, *rows)) if rows else [(h,) for h in header]
    widths = [max(len(str(x)) for x in column) for column in columns]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def format_cell(value: Any) -> str:
    """A config value for a table cell: floats to 4 significant digits, lists as ``[a, b]``."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def is_terminal(stream: TextIO) -> bool:
    """A terminal a person watches (and that understands cursor movement), not a file, pipe or CI log."""
    try:
        return bool(stream.isatty()) and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def output_mode(stream: TextIO, quiet: bool = False) -> str:
    """How a long command reports on ``stream``: ``LIVE`` (a view updated in place) on a terminal, ``LINES``
    (one line per event, nothing redrawn) elsewhere, ``QUIET`` (the final summary only) when asked."""
    if quiet:
        return QUIET
    return LIVE if is_terminal(stream) else LINES


def rich_console(stream: TextIO) -> Console:
    """A rich Console on ``stream`` that prints text as given (no markup, no guessed highlighting)."""
    from rich.console import Console

    return Console(file=stream, highlight=False, markup=False, emoji=False)


def _route_log_handlers(moves: dict[Any, Any]) -> list[tuple[logging.StreamHandler, Any]]:
    """Point every logging handler that writes to a stream in ``moves`` at its replacement; returns the
    ``(handler, old stream)`` pairs to put back."""
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    moved = []
    for handler in {h for logger in loggers for h in logger.handlers}:
        if isinstance(getattr(type(handler), "stream", None), property):
            continue  # writes to whatever sys.stderr is when it emits: follows the display by itself
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and stream in moves:
            moved.append((handler, handler.setStream(moves[stream])))
    return moved


def start_display(display) -> list:
    """Start a rich ``Live`` (or ``Progress``) display that owns the terminal: what is printed meanwhile,
    log records included, scrolls above it. A library's log handler (Ray's, Tune's) still writing to the
    real stderr would scroll the screen under the display and leave torn copies of it. Returns what
    :func:`stop_display` puts back."""
    real = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    display.start()
    proxies = (sys.stdout, sys.stderr, sys.stdout, sys.stderr)  # rich's, while the display is up
    return _route_log_handlers(dict(zip(real, proxies)))


def stop_display(display, moved: list) -> None:
    for handler, stream in moved:
        handler.setStream(stream)
    display.stop()


@dataclass
class _Task:
    bar: Any  # the rich task id on a terminal
    label: str
    total: int
    first: int | None = None  # completed at the first update: the pace is measured from there
    since: float = 0.0
    printed: tuple[int, int] = (-1, -1)  # (fraction step, completed) of the last plain line


class Steps:
    """Progress of a few long tasks (members retraining, images predicted): a rich bar per task, updated
    in place, on a terminal; elsewhere plain lines, one per update or (``line_every``) each time a task
    passes another such fraction of its total. Each shows an ETA: the caller's, or from its pace."""

    def __init__(self, out: TextIO | None = None, *, unit: str, line_every: float = 0.0):
        self.out = out or sys.stdout
        self.unit, self.line_every = unit, line_every
        self._bars = None
        self._moved: list = []
        self._tasks: dict[str, _Task] = {}

    def __enter__(self) -> Steps:
        if is_terminal(self.out):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bars = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TextColumn(self.unit), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                                  TextColumn("{task.fields[note]}"), console=rich_console(self.out))
            self._moved = start_display(self._bars)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bars is not None:
            stop_display(self._bars, self._moved)
            self._bars = None

    def add(self, key: str, label: str, total: int) -> None:
        """A task to follow (again adding a known key changes nothing)."""
        if key not in self._tasks:
            bar = self._bars.add_task(label, total=total, note="", eta="-") if self._bars else None
            self._tasks[key] = _Task(bar, label, total)

    def update(self, key: str, completed: int, note: str = "", eta_s: float | None = None) -> None:
        task, now = self._tasks[key], time.monotonic()
        if task.first is None:
            task.first, task.since = completed, now
        if eta_s is None and completed > task.first:
            eta_s = (now - task.since) / (completed - task.first) * (task.total - completed)
        eta = format_duration(eta_s)
        if self._bars is not None:
            self._bars.update(task.bar, completed=completed, note=note, eta=eta)
            return
        step = int(completed / task.total / self.line_every) if self.line_every and task.total else completed
        if step > task.printed[0] or (completed >= task.total > task.printed[1]):
            task.printed = (step, completed)
            done = completed >= task.total
            say(f"{task.label} {completed}/{task.total} {self.unit}" + (f"  {note}" if note else "")
                + ("" if done else f"  ETA {eta}"), self.out)

    def say(self, message: str) -> None:
        """A line above the bars (or a plain progress line)."""
        if self._bars is not None:
            self._bars.console.print(f"{PREFIX} {message}")
        else:
            say(message, self.out)


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
