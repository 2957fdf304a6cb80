"""``hpo-cls`` command line: parse arguments (:mod:`.args`), dispatch (:mod:`.commands`), and turn errors
into ``error:`` lines, exit status 2, never a traceback."""

from __future__ import annotations

import logging
import os
import sys

from hpo_cls.cli.args import build_parser
from hpo_cls.errors import CommandError, HpoClsError, SpecError

__all__ = ["main", "run", "flag", "build_parser", "EXIT_BAD_INPUT"]

EXIT_BAD_INPUT = 2


def flag(option: str) -> str:
    """The command-line flag of a library option name: ``include_early_stopped`` -> ``--include-early-stopped``."""
    return "--" + option.replace("_", "-")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # MLflow logs store migrations and similar at INFO; hpo-cls prints what a user needs itself.
    # (Read by mlflow when it is first imported, which the commands do lazily after this point.)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from hpo_cls.cli.commands import HANDLERS

    handler = HANDLERS[args.command]
    try:
        return handler(args) or 0
    except SpecError as exc:
        for line in exc.render_lines(flag):
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HpoClsError as exc:
        print(f"error: {exc.render(flag)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConnectionError as exc:
        print(f"error: cannot connect to the Ray cluster at {getattr(args, 'address', None)}: {exc}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console entry point: :func:`main`, then exit without tearing down the imported modules.

    Everything is written and closed when ``main`` returns; the interpreter's teardown of torch, Ray and
    MLflow would only add most of a second to every command.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
