"""The output folder of ``hpo-cls train``: created or refused before any training, locked while a run
writes into it, never silently overwritten (``resume`` continues its checkpoint, ``force`` starts over)."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

from hpo_cls.errors import OutputError

__all__ = ["LOCK_FILE", "RUN_FILES", "claimed_out_dir"]

LOCK_FILE = ".hpo-cls-train.lock"
RUN_FILES = ("checkpoint.pt", "metrics.csv", "per_class_report.csv", "confusion_matrix.png", "config.json")


@contextlib.contextmanager
def claimed_out_dir(out_dir: Path, *, resume: bool, force: bool) -> Iterator[Path]:
    """``out_dir`` created and locked for one run; its checkpoint path is yielded when ``resume`` finds one.

    The lock is an ``flock`` on a file inside the folder: a second run into the same folder is refused at
    once, and the kernel releases the lock when the first ends, even if it is killed.
    """
    out_dir = Path(out_dir)
    _create(out_dir)
    with open(out_dir / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{out_dir}: another `hpo-cls train` is writing into this folder now; wait for "
                              "it or choose another {out}") from None
        yield _existing_run(out_dir, resume=resume, force=force)


def _create(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file, not a folder; choose another {{out}}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the folder ({exc.strerror or exc}); choose another "
                          "{out}") from None


def _existing_run(out_dir: Path, *, resume: bool, force: bool) -> Path | None:
    """The checkpoint to resume (``resume``), or None for a fresh run (a run already there: refused, or
    removed with ``force``)."""
    checkpoint = out_dir / RUN_FILES[0]
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    if resume:
        if not checkpoint.is_file():
            raise OutputError(f"{out_dir}: no {checkpoint.name} to resume from; drop {{resume}} to start a run")
        return checkpoint
    if found and not force:
        raise OutputError(f"{out_dir}: already holds a run ({', '.join(found)}); pass {{resume}} to continue it "
                          "from its checkpoint, {force} to overwrite it, or choose another {out}")
    for name in found:
        (out_dir / name).unlink()
    return None
