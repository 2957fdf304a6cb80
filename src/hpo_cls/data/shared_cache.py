"""Decoded images shared by every process on a node: one memory-mapped uint8 file per (files, resize side).

The first process that needs a split decodes it (under a file lock, so concurrent trials decode it once)
and writes ``<name>.u8`` (the images back to back, uint8 CHW) plus ``<name>.json`` (their shapes);
every other trial, promote member and DataLoader worker maps the same file read-only, so the node holds
one copy in its page cache however many trials read it. ``name`` is ``<family>-<content>``: the family
hashes the folder and resize side, the content hashes every file's path, size and mtime, so a changed,
added or removed image means a new entry (and the family's old entries are deleted when it is written).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from hpo_cls.cache_dir import default_cache_root
from hpo_cls.data.folders import file_stamp

if TYPE_CHECKING:
    import torch

__all__ = ["image_cache_dir", "cache_name", "MappedImages", "open_shared_cache"]

_FORMAT = 1
_CHUNK = 256  # images decoded ahead of the writer: bounds the memory a build holds


def image_cache_dir(root: Path | None = None) -> Path:
    """The decoded-image folder under ``root`` (default :func:`default_cache_root`)."""
    return Path(root or default_cache_root()).expanduser() / "images"


def cache_name(paths: Sequence[Path], side: int) -> tuple[str, str]:
    """``(family, entry)`` names of a list of image files resized to ``side`` (see the module doc): the
    family hashes the folder and side; the entry, ``<family>-<content hash>``, names the cache files."""
    paths = [Path(p).absolute() for p in paths]
    folder = os.path.commonpath([str(p.parent) for p in paths]) if paths else ""
    family = hashlib.sha1(f"{_FORMAT}|{side}|".encode() + os.fsencode(folder)).hexdigest()[:12]
    content = hashlib.sha1(f"{_FORMAT}|{side}|{len(paths)}".encode())
    for path in paths:
        content.update(file_stamp(path))
    return family, f"{family}-{content.hexdigest()[:20]}"


class MappedImages:
    """uint8 CHW images read from a cache file; ``images[i]`` is a tensor view of the mapped pages.

    The mapping is private copy-on-write: pages are shared with the page cache (and so with every other
    process reading the file) as long as nobody writes to them, and nothing here does.
    """

    def __init__(self, data_path: Path, shapes: np.ndarray):
        self.path, self.shapes = Path(data_path), shapes
        sizes = shapes.prod(axis=1)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        if self.path.stat().st_size != total:
            raise OSError(f"{self.path}: holds {self.path.stat().st_size} bytes, its index says {total}")
        mapped = np.memmap(self.path, dtype=np.uint8, mode="c", shape=(total,)) if total else np.empty(0, np.uint8)
        import torch

        self.flat = torch.from_numpy(mapped)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> torch.Tensor:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.flat[start:end].view(*self.shapes[index].tolist())

    @property
    def uniform_shape(self) -> tuple[int, ...] | None:
        """The one shape of every image, or None when sizes differ (non-square originals)."""
        if len(self.shapes) and (self.shapes == self.shapes[0]).all():
            return tuple(self.shapes[0].tolist())
        return None


def open_shared_cache(paths: Sequence[Path], side: int, folder: Path,
                      decode: Callable[[Path], torch.Tensor], workers: int = 1,
                      estimated_bytes: int = 0) -> MappedImages:
    """The cached images of ``paths`` (in order) under ``folder``: mapped if a valid entry exists, else
    decoded with ``decode`` (in ``workers`` threads) and written first, by one process at a time.

    Raises OSError when ``folder`` cannot hold it (not writable, ``estimated_bytes`` over its free space).
    """
    family, name = cache_name(paths, side)
    folder = Path(folder)
    data, index = folder / f"{name}.u8", folder / f"{name}.json"
    if not data.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / f"{name}.lock"):
            if not data.is_file():  # another process may have written it while this one waited
                if estimated_bytes and shutil.disk_usage(folder).free < estimated_bytes + 2**30:
                    raise OSError(f"{folder}: less free space than the ~{estimated_bytes / 2**30:.1f} GiB cache")
                _write(paths, decode, workers, data, index)
                _prune(folder, family, keep=name)
    meta = json.loads(index.read_text())
    return MappedImages(data, np.asarray(meta["shapes"], dtype=np.int64).reshape(-1, 3))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(paths: Sequence[Path], decode: Callable[[Path], Any], workers: int, data: Path, index: Path) -> None:
    """Decode in a thread pool, append each image in order, then publish index and data by rename:
    a reader sees a complete entry or none."""
    tmp_data, tmp_index = data.with_suffix(f".u8.tmp{os.getpid()}"), index.with_suffix(f".json.tmp{os.getpid()}")
    shapes = []
    try:
        with open(tmp_data, "wb") as out, ThreadPoolExecutor(max(1, workers)) as pool:
            for start in range(0, len(paths), _CHUNK):
                for image in pool.map(decode, paths[start:start + _CHUNK]):
                    image = image.contiguous()
                    out.write(image.numpy().data)
                    shapes.append(list(image.shape))
        tmp_index.write_text(json.dumps({"format": _FORMAT, "count": len(shapes), "shapes": shapes}))
        os.replace(tmp_index, index)
        os.replace(tmp_data, data)
    finally:
        for tmp in (tmp_data, tmp_index):
            tmp.unlink(missing_ok=True)


def _prune(folder: Path, family: str, keep: str) -> None:
    """Delete this family's other files: older entries (their files changed since) and temporary files a
    killed build left. A process still reading an old entry keeps its mapping until it exits."""
    kept = {f"{keep}.u8", f"{keep}.json", f"{keep}.lock"}
    for path in folder.glob(f"{family}-*"):
        if path.name not in kept:
            path.unlink(missing_ok=True)
