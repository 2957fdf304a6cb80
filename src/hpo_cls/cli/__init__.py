"""``hpo-cls`` command line: parse arguments (:mod:`.args`), dispatch (:mod:`.commands`), and turn errors
into ``error:`` lines, exit status 2, never a traceback."""

from __future__ import annotations

import logging
import os
import sys

from hpo_cls.cli.args import build_parser
from hpo_cls.console import is_terminal
from hpo_cls.errors import CommandError, HpoClsError, SpecError, cut_line, printable
from hpo_cls.tracking.uri import redact_text

__all__ = ["main", "run", "flag", "build_parser", "EXIT_BAD_INPUT"]

EXIT_BAD_INPUT = 2


def flag(option: str) -> str:
    """The command-line flag of a library option name: ``include_early_stopped`` -> ``--include-early-stopped``."""
    return "--" + option.replace("_", "-")


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(build_parser().parse_args(argv))
    except BrokenPipeError:  # `--help` too is printed into the closed pipe
        return _closed_pipe()


def _dispatch(args) -> int:
    # MLflow logs store migrations and similar at INFO; hpo-cls prints what a user needs itself.
    # (Read by mlflow when it is first imported, which the commands do lazily after this point.)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run ... at: <store URI>" per ended run: the URI whole, password included; hpo-cls
    # prints its own links, redacted.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    plain_ray_logs_unless_terminal(sys.stdout, sys.stderr)
    redact_log_records()
    from hpo_cls.cli.commands import HANDLERS

    try:
        return HANDLERS[args.command](args) or 0
    except BrokenPipeError:  # a ConnectionError, but not the Ray cluster's: main ends quietly
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (HpoClsError, CommandError, ConnectionError) as exc:
        for line in _error_lines(exc, args):
            print(f"error: {cut_line(redact_text(printable(line)))}", file=sys.stderr)
        return EXIT_BAD_INPUT


def plain_ray_logs_unless_terminal(stdout, stderr) -> None:
    """Ray prints its processes' lines (a raylet's "disk over 95% full", a worker's warning) into ours with
    colour codes, whatever the stream, and marks lines it folded as repeats in colour too; in a file or CI
    log those codes are noise, so unless both streams are a terminal (or ``NO_COLOR`` is set) Ray is asked
    for plain prefixes and every line as printed. A user's own ``RAY_COLOR_PREFIX``/``RAY_DEDUP_LOGS`` win.
    (Ray reads ``RAY_DEDUP_LOGS`` when it is imported: after this, since no command imports it earlier.)"""
    if os.environ.get("NO_COLOR") or not (is_terminal(stdout) and is_terminal(stderr)):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def redact_log_records() -> None:
    """Every log record this process makes (MLflow's, SQLAlchemy's, ours) leaves with the secrets of the URIs
    in it replaced (:func:`redact_text`): a library's warning may quote the store URI whole. Installed once."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def redacted_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: logging reports it itself, as it would have
            return record
        record.msg, record.args = redact_text(message), ()
        return record

    redacted_record.redacts = True
    logging.setLogRecordFactory(redacted_record)


def _redacted_excepthook(kind, value, tb) -> None:
    """A traceback (a bug: user errors are ``error:`` lines) printed with the secrets of its URIs replaced."""
    import traceback

    sys.stderr.write(redact_text("".join(traceback.format_exception(kind, value, tb))))


def _error_lines(exc: Exception, args) -> list[str]:
    """The ``error:`` lines of a user-facing error (not yet redacted)."""
    if isinstance(exc, SpecError):
        return exc.render_lines(flag)
    if isinstance(exc, HpoClsError):
        return [exc.render(flag)]
    if isinstance(exc, ConnectionError):
        return [f"cannot connect to the Ray cluster at {getattr(args, 'address', None)}: {exc}"]
    return [str(exc)]


def _closed_pipe() -> int:
    """The reader of stdout went away (``hpo-cls sweeps | head``): stop quietly, the standard way. Python
    flushes stdout again at exit; pointing it at devnull keeps that from raising a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def run() -> None:
    """Console entry point: :func:`main`, then exit without tearing down the imported modules.

    Everything is written and closed when ``main`` returns; the interpreter's teardown of torch, Ray and
    MLflow would only add most of a second to every command.
    """
    sys.excepthook = _redacted_excepthook
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _closed_pipe()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
