"""The sweep's live view on a terminal: one rich table of a :class:`SweepBoard`, redrawn in place.

Running trials come first, then the best finished ones; searched parameters are dropped from the right
when the terminal is too narrow, rows from the bottom when it is too short.
"""

from __future__ import annotations

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hpo_cls.console import format_cell, format_duration
from hpo_cls.sweep.board import SweepBoard, TrialRow

__all__ = ["render_board", "visible_params", "TITLE"]

TITLE = "sweep"  # first word of the view's headline (tests look for it)
STATUS_STYLE = {"running": "cyan", "paused": "cyan", "pending": "dim", "completed": "green",
                "early_stopped": "yellow", "failed": "red"}
BAR_WIDTH = 10
_FIXED = {"trial": 8, "status": 13, "epoch": BAR_WIDTH + 6}  # widths of the columns before the parameters
_CELL_PADDING = 2  # a column's padding and separator
_PARAM_MAX = 14  # a parameter column is never wider
_CHROME_LINES = 6  # headline, table header and rule, caption, margins


def _score(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def visible_params(board: SweepBoard, rows: list[TrialRow], width: int) -> list[str]:
    """The searched parameters that fit beside the fixed columns in ``width`` characters, in order."""
    metric_width = max(len(board.metric), 6)
    used = sum(w + _CELL_PADDING for w in _FIXED.values()) + 2 * (metric_width + _CELL_PADDING)
    shown = []
    for name in board.param_names:
        cells = [len(format_cell(r.config[name])) for r in rows if name in r.config]
        need = min(max([len(name), *cells]), _PARAM_MAX) + _CELL_PADDING
        if used + need > width:
            break
        used += need
        shown.append(name)
    return shown


def _headline(board: SweepBoard, now: float) -> Text:
    counts = board.counts()
    done = ", ".join(f"{counts[s]} {s}" for s in ("completed", "early_stopped", "failed") if counts[s])
    text = Text.assemble((f"{TITLE} {board.sweep_id}", "bold"), "  ",
                         f"{board.done()}/{board.num_samples} done" + (f" ({done})" if done else ""),
                         f", {counts['running']} running, {counts['pending']} pending")
    best = board.best()
    if best is not None:
        text.append(f"   best {board.metric} ")
        text.append(_score(best.best), "bold green")
        text.append(f" ({best.trial_id})")
    text.append(f"   elapsed {format_duration(now - board.started)}  ETA ~{format_duration(board.eta_s(now))}")
    return text


def _row_cells(board: SweepBoard, row: TrialRow, params: list[str], best_id: str | None) -> list:
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=board.epochs, completed=row.epoch, width=BAR_WIDTH), f"{row.epoch}/{board.epochs}")
    best = Text(_score(row.best), style="bold green" if row.trial_id == best_id else "")
    return [row.trial_id, Text(row.status, style=STATUS_STYLE.get(row.status, "")), bar, _score(row.score), best,
            *[format_cell(row.config.get(name, "·")) for name in params]]


def render_board(board: SweepBoard, now: float, width: int, height: int) -> Group:
    """The headline and the trial table for a terminal of ``width`` x ``height`` characters."""
    running, finished = board.running(), board.finished_best_first()
    room = max(height - _CHROME_LINES, 3)
    rows = (running + finished)[:room]
    params = visible_params(board, rows, width)
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False, expand=False)
    for name in ("trial", "status", "epoch", board.metric, "best"):
        table.add_column(name, no_wrap=True, justify="right" if name in (board.metric, "best") else "left")
    for name in params:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=_PARAM_MAX)
    best = board.best()
    for row in rows:
        table.add_row(*_row_cells(board, row, params, best.trial_id if best else None))
    notes = []
    if len(running) + len(finished) > len(rows):
        notes.append(f"{len(running) + len(finished) - len(rows)} more trial(s) below")
    if len(params) < len(board.param_names):
        notes.append(f"{len(board.param_names) - len(params)} searched parameter(s) hidden: terminal too narrow")
    parts = [_headline(board, now), table]
    if notes:
        parts.append(Text("; ".join(notes), style="dim"))
    return Group(*parts)
