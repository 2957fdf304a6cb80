"""What the user sees: progress lines, warnings and plain-text tables, in hpo-cls's one voice.

Every module that talks to the user goes through here, so where output goes (stdout, stderr, a test's
buffer) and how it looks is decided in one place.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence, TextIO

__all__ = ["PREFIX", "say", "warn", "format_table", "format_cell"]

PREFIX = "[hpo-cls]"


def say(message: str, out: TextIO | None = None) -> None:
    """A progress line on stdout (or ``out``), flushed at once so logs and pipes see it live."""
    print(f"{PREFIX} {message}", file=out or sys.stdout, flush=True)


def warn(message: str, out: TextIO | None = None) -> None:
    """A warning on stderr (or ``out``)."""
    print(f"{PREFIX} warning: {message}", file=out or sys.stderr, flush=True)


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
