"""Every error hpo-cls reports to a user, in one place.

Each is shown as one ``error:`` line (exit status 2), never a traceback. Library messages name options
by their parameter name in braces, ``{top}``; ``str(error)`` shows the bare name and the CLI renders
its flag (``--top``) with :meth:`HpoClsError.render`, so no library module knows the command line.
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = [
    "HpoClsError",
    "SpecError",
    "DataError",
    "CheckpointError",
    "PretrainedWeightsUnavailable",
    "NonFiniteLossError",
    "CommandError",
    "SweepError",
    "SweepStopped",
    "PromoteError",
    "TrackingError",
    "OutputError",
    "ECHO_LIMIT",
    "echo",
    "cut_line",
    "printable",
]

ECHO_LIMIT = 200  # characters of a value a message quotes; a 35-MB alias expansion must not flood the terminal
LINE_LIMIT = 2000  # characters of one error line, whatever it quotes


# Only a lone lower-case identifier in braces names an option: a quoted mapping such as
# "{mix: [cutmix, both]}" in a message stays as it is.
_OPTION = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def echo(value) -> str:
    """``repr(value)`` for a message, cut at :data:`ECHO_LIMIT` characters with its full length after."""
    text = repr(value)
    if len(text) <= ECHO_LIMIT:
        return text
    return f"{text[:ECHO_LIMIT]}... ({len(text):,} characters)"


def cut_line(line: str) -> str:
    """One printed error line of at most about :data:`LINE_LIMIT` characters: a long middle (a value nobody cut
    with :func:`echo`) is replaced by its length, so the start (where) and the end (what to do) stay."""
    if len(line) <= LINE_LIMIT:
        return line
    head, tail = LINE_LIMIT * 3 // 4, LINE_LIMIT // 4
    return f"{line[:head]} ... ({len(line) - head - tail:,} characters cut) ... {line[-tail:]}"


def printable(text: str) -> str:
    r"""``text`` as valid UTF-8: the bytes of a file name that are not UTF-8 (Python holds them as lone
    surrogates, and printing or writing them fails with UnicodeEncodeError) written as ``\xNN``, so the file
    ``b'\xff\xfe.jpg'`` reads ``\xff\xfe.jpg``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (from JSON, say)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class HpoClsError(Exception):
    """Base of the user-facing errors; ``message`` may name options as ``{option_name}``."""

    def __init__(self, message: str):
        self.template = message
        super().__init__(self.render(lambda name: name))

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each ``{option}`` written as ``name_of(option)`` (e.g. ``--option``)."""
        return _OPTION.sub(lambda match: name_of(match.group(1)), self.template)


class SpecError(HpoClsError):
    """A sweep spec (or an override) is invalid; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = self.render_lines(lambda name: name)

    def render_lines(self, name_of: Callable[[str], str]) -> list[str]:
        """One rendered line per problem (see :meth:`HpoClsError.render`)."""
        return self.render(name_of).split("\n")


class DataError(HpoClsError, ValueError):
    """The data folder does not have the expected layout, or an image cannot be used."""


class CheckpointError(HpoClsError):
    """A checkpoint or model bundle cannot be read or does not fit."""


class PretrainedWeightsUnavailable(HpoClsError, RuntimeError):
    """ImageNet weights were asked for but are neither in torch hub's cache nor downloadable."""


class NonFiniteLossError(HpoClsError, RuntimeError):
    """The training loss became NaN or infinite; continuing would only waste compute."""


class CommandError(Exception):
    """A user-facing error of the command line itself (a flag's value): one line, exit status 2."""


class SweepError(HpoClsError):
    """A sweep cannot start or continue."""


class SweepStopped(SweepError):
    """A signal (SIGTERM) stopped the sweep before its trials ended; its state is saved for ``--resume``."""

    def __init__(self, sweep_id: str, signal_name: str):
        super().__init__(f"sweep {sweep_id} was stopped ({signal_name}) before its trials ended; its checkpoints "
                         "and MLflow runs are kept for {resume}")
        self.sweep_id, self.signal_name = sweep_id, signal_name


class PromoteError(HpoClsError):
    """Promote cannot go on (unknown sweep, too few runs, over the parameter budget, ...)."""


class TrackingError(HpoClsError):
    """The tracking store does not hold what was asked for (an experiment, a sweep)."""


class OutputError(HpoClsError):
    """An output path cannot be written: a file where a folder belongs, a run already there, a lock held."""
