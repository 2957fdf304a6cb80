"""The files a command writes (``--out``): checked before any work starts, written whole or not at all.

One guard for every command that writes a file, so no ``--out`` can replace something hpo-cls did not
write: a folder or a SQLite database (an MLflow store) is always refused; a file of the kind the command
writes but not written by hpo-cls (another CSV) only with ``--force``; anything else never. The file is
written to a temp file beside it and renamed over it, so a failed write leaves the old file whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from hpo_cls.errors import OutputError

__all__ = ["OutputKind", "PREDICTION_CSV", "REPORT_HTML", "check_output_file", "atomic_write"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEAD_BYTES = 4096


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: ``ours(head)`` recognises a file hpo-cls wrote (overwritten freely),
    ``same_kind(head)`` one of that kind written by something else (overwritten only with ``force``)."""

    name: str  # with its article: "a prediction CSV"
    ours: Callable[[bytes], bool]
    same_kind: Callable[[bytes], bool]


def _text(head: bytes) -> str | None:
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut by the head's end is still text
        return head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else None


def _csv_like(head: bytes) -> bool:
    text = _text(head)
    return text is not None and "\x00" not in text and "," in text.split("\n", 1)[0]


def _html_like(head: bytes) -> bool:
    text = (_text(head) or "").lstrip().lower()
    return text.startswith("<!doctype html") or text.startswith("<html")


PREDICTION_CSV = OutputKind("a prediction CSV", lambda head: head.startswith(b"image_name,pred_label"), _csv_like)
REPORT_HTML = OutputKind("an HTML report", lambda head: b"<title>hpo-cls sweep" in head, _html_like)


def check_output_file(path: Path, kind: OutputKind, *, force: bool = False, option: str = "out") -> Path:
    """``path``, or an OutputError (naming ``{option}``) unless ``kind`` may be written there now: not a
    folder, not a SQLite database, not a file of another kind (nor of this kind not written by hpo-cls,
    unless ``force``), and its folder writable (or creatable). Run it before any work starts."""
    path = Path(path)
    flag = f"{{{option}}}"
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; {flag} names the file to write")
    if path.exists() or path.is_symlink():
        head = _head(path, flag)
        if head.startswith(_SQLITE_MAGIC):
            raise OutputError(f"{path}: is a SQLite database (an MLflow store?), not {kind.name}; it is left "
                              f"as it is: choose another {flag}")
        if head and not kind.ours(head):
            if not kind.same_kind(head):
                raise OutputError(f"{path}: is not {kind.name}, so it is left as it is; choose another {flag}")
            if not force:
                raise OutputError(f"{path}: is {kind.name} that hpo-cls did not write; pass {{force}} to "
                                  f"overwrite it or choose another {flag}")
    _check_folder_writable(path, flag)
    return path


def _head(path: Path, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError as exc:
        raise OutputError(f"{path}: cannot read what is there ({exc.strerror or exc}); choose another "
                          f"{flag}") from None


def _check_folder_writable(path: Path, flag: str) -> None:
    """A file can be created in ``path``'s folder, or in the nearest existing folder above it (the write
    creates the rest). Tried with a real temp file: permissions alone miss read-only mounts and ``/proc``."""
    folder = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is a file, not a folder; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hpo-cls-probe-")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {folder} ({exc.strerror or exc}); choose another "
                          f"{flag}") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_write(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A UTF-8 text file object whose content replaces ``path`` only when the block ends without an error
    (a temp file in the same folder, renamed over it); on an error the old file is left whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with open(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.chmod(partial, 0o666 & ~_umask())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
