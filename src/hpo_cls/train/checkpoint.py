"""Checkpoint bundles: everything needed to resume a trial exactly or to predict with its model.

Loaded with ``torch.load(weights_only=True)`` so a checkpoint from an untrusted source cannot run code.
Torch is imported by the functions that use it: the sweep's driver reads this module's file names and
logs a trial's model file without importing torch.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo_cls.errors import CheckpointError

if TYPE_CHECKING:
    import torch

__all__ = ["CheckpointError", "UncachedFile", "CHECKPOINT_FILE", "MODEL_FILE", "TRAINING_STATE_FILE", "EVALUATION_FILE",
           "save_checkpoint", "save_trial_checkpoint", "load_checkpoint", "model_bundle"]

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
TRAINING_STATE_FILE = "training_state.pt"  # a trial checkpoint's optimizer, scheduler, RNG and history
EVALUATION_FILE = "evaluation.json"  # confusion matrix + per-class report at that epoch
# What open() or write() answer where the platform or filesystem does not do O_DIRECT.
_DIRECT_IO_REFUSED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)})
_MODEL_KEYS = ("format", "model", "epoch", "best_val_acc", "best_epoch", "config", "image_size", "class_to_idx")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (temp file + rename), so a crash never leaves half a checkpoint."""
    import torch

    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _without_crc32():
            try:
                with UncachedFile(tmp) as file:
                    torch.save(state, file)
            except OSError as exc:
                if exc.errno not in _DIRECT_IO_REFUSED:  # a full disk, say: the page cache would not help
                    raise
                torch.save(state, tmp)  # no O_DIRECT here (tmpfs, macOS, some FUSE mounts): buffered it is
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed save leaves nothing behind (on a full disk, least of all)
        raise
    return path


def save_trial_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """A sweep trial's per-epoch checkpoint, in two files: its model bundle (:data:`MODEL_FILE`, what
    prediction needs) and the rest of its training state (:data:`TRAINING_STATE_FILE`). When the trial
    ends, the sweep's MLflow writer logs the best epoch's model file as it is, where a single file would
    have to be loaded and saved again in the driver (with torch imported there, seconds of CPU taken from
    the trials still training). :func:`load_checkpoint` on the folder returns the whole state."""
    directory = Path(directory)
    bundle = model_bundle(state)
    save_checkpoint({k: v for k, v in state.items() if k not in bundle}, directory / TRAINING_STATE_FILE)
    save_checkpoint(bundle, directory / MODEL_FILE)  # last: a folder with a model file is complete
    return directory


class UncachedFile:
    """A write-only file that bypasses the page cache (``O_DIRECT``), for checkpoints written every epoch
    and rarely read back.

    Buffered writes make the kernel fill fresh page-cache memory; for a ResNet-18 checkpoint (~90 MB
    with optimizer state) that cost 0.2-0.35 s of CPU per epoch on ext4 in our runs (a trial's whole
    core on 2-core machines), against ~0.05 s of mostly I/O wait here. ``O_DIRECT`` needs block-aligned
    memory, lengths and offsets: data is staged through a page-aligned buffer and written a chunk at a
    time; the last block is zero-padded, then the file is cut to its true length.

    Raises ``OSError`` at open where the platform refuses ``O_DIRECT``. A write that fails (a filesystem
    that refuses it after all, a full disk) is remembered and raised by :meth:`close`, and later writes
    are dropped: ``torch.save`` would turn an exception raised inside ``write`` into an unrelated
    ``RuntimeError``.
    """

    BLOCK = 4096  # covers the logical block size of every common device
    CHUNK = 4 << 20

    def __init__(self, path: str | Path, chunk_bytes: int = CHUNK):
        if not hasattr(os, "O_DIRECT"):
            raise OSError(errno.EINVAL, "O_DIRECT is not available on this platform", str(path))
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        self._staging = mmap.mmap(-1, chunk_bytes)  # anonymous mmap: page-aligned, as O_DIRECT requires
        self._staged = 0
        self._size = 0
        self._error: OSError | None = None

    def write(self, data: bytes | memoryview) -> int:
        with memoryview(data) as raw, raw.cast("B") as view:
            if self._error is None:
                try:
                    self._stage(view)
                except OSError as exc:
                    self._error = exc
            self._size += len(view)
            return len(view)

    def _stage(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            take = min(len(view) - done, len(self._staging) - self._staged)
            self._staging[self._staged:self._staged + take] = view[done:done + take]
            self._staged += take
            done += take
            if self._staged == len(self._staging):
                self._write_staged(self._staged)

    def fileno(self) -> int:
        return self._fd

    def flush(self) -> None:
        """Nothing to do: whole chunks are written as they fill, the tail on close."""

    def close(self) -> None:
        """Write the tail and close; raises the first write error, if any (the file is then incomplete)."""
        if self._fd < 0:
            return
        try:
            if self._error is None:
                if self._staged:
                    padded = -(-self._staged // self.BLOCK) * self.BLOCK
                    self._staging[self._staged:padded] = bytes(padded - self._staged)
                    self._write_staged(padded)
                os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self._error = exc
        finally:
            os.close(self._fd)
            self._fd = -1
            self._staging.close()
        if self._error is not None:
            raise self._error

    def _write_staged(self, length: int) -> None:
        # Views are released by their `with` even when os.write raises, or the mmap could not be closed.
        written = 0
        with memoryview(self._staging) as staged:
            while written < length:
                with staged[written:length] as pending:
                    written += os.write(self._fd, pending)
        self._staged = 0

    def __enter__(self) -> "UncachedFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _without_crc32():
    """Skip the zip CRC-32 of every tensor (half the cost of saving a ResNet's checkpoint each epoch);
    the rename above already guarantees a whole file. A no-op on torch versions without the switch."""
    try:
        from torch.utils.serialization import config
    except ImportError:
        return contextlib.nullcontext()
    return config.patch({"save.compute_crc32": False})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Load a bundle written by :func:`save_checkpoint`, or the folder of one (its :data:`CHECKPOINT_FILE`, or
    the files of :func:`save_trial_checkpoint` merged); raise :class:`CheckpointError` if unsafe or broken.

    ``mmap``: tensors map the file instead of being read into memory (a tenth of the CPU for a bundle that
    is only passed on, e.g. into :func:`model_bundle` and saved again)."""
    path = Path(path)
    training_state = None
    if path.is_dir():
        if not (path / CHECKPOINT_FILE).is_file() and (path / MODEL_FILE).is_file():
            training_state = path / TRAINING_STATE_FILE
            path = path / MODEL_FILE
        else:
            path = path / CHECKPOINT_FILE
    state = _load_file(path, map_location, mmap)
    if training_state is not None and training_state.is_file():
        state = {**_load_file(training_state, map_location, mmap), **state}
    if not isinstance(state, dict) or "model" not in state or "class_to_idx" not in state:
        raise CheckpointError(f"{path}: not an hpo-cls checkpoint (missing model or class mapping)")
    return state


def _load_file(path: Path, map_location, mmap: bool) -> Any:
    import torch

    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise CheckpointError(
            f"{path}: refused to load: it contains objects other than tensors and plain data "
            f"(weights_only=True): {first_line}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(exc).__name__})") from None


def model_bundle(state: dict[str, Any]) -> dict[str, Any]:
    """What prediction needs from a checkpoint (weights, config, class mapping, image size): no
    optimizer or scheduler state, so about half the size of a resumable checkpoint."""
    return {k: state[k] for k in _MODEL_KEYS if k in state}
