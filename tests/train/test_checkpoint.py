"""Checkpoint files are written around the page cache (O_DIRECT) where the OS allows, byte-exact either way."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest
import torch

from hpo_cls.train import checkpoint
from hpo_cls.train.checkpoint import UncachedFile, load_checkpoint, save_checkpoint

STATE = {"model": {"w": torch.arange(5000, dtype=torch.float32)}, "class_to_idx": {"cat": 0, "dog": 1}}


def uncached_or_skip(path, **kwargs) -> UncachedFile:
    try:
        return UncachedFile(path, **kwargs)
    except OSError as exc:
        pytest.skip(f"this filesystem refuses O_DIRECT: {exc}")


def test_uncached_file_bypasses_the_page_cache(tmp_path):
    with uncached_or_skip(tmp_path / "f") as file:
        assert fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_DIRECT


# Sizes around the 4 KiB block and the 8 KiB staging chunk, written in uneven pieces.
@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 8191, 8192, 8193, 3 * 8192 + 17])
def test_uncached_file_writes_exact_bytes(tmp_path, size):
    data = os.urandom(size)
    with uncached_or_skip(tmp_path / "f", chunk_bytes=8192) as file:
        for start in range(0, size, 3001):
            assert file.write(memoryview(data)[start:start + 3001]) == len(data[start:start + 3001])
    assert (tmp_path / "f").read_bytes() == data


def test_checkpoint_round_trips_through_the_uncached_writer(tmp_path):
    state = load_checkpoint(save_checkpoint(STATE, tmp_path))
    assert torch.equal(state["model"]["w"], STATE["model"]["w"]) and state["class_to_idx"] == STATE["class_to_idx"]


class RefusedAtOpen(UncachedFile):
    def __init__(self, path, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument", str(path))


class SmallChunks(UncachedFile):
    """Flushes every 8 KiB, so direct writes happen while torch.save is still serializing."""

    def __init__(self, path, **kwargs):
        super().__init__(path, chunk_bytes=8192)


class WritesFailWith:
    """Stands in for the ``os`` module inside hpo_cls.train.checkpoint: every ``os.write`` fails with ``code``."""

    def __init__(self, code: int):
        self.code = code

    def write(self, fd, data):
        raise OSError(self.code, os.strerror(self.code))

    def __getattr__(self, name):
        return getattr(os, name)


def test_checkpoint_falls_back_to_buffered_writes_when_refused_at_open(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "UncachedFile", RefusedAtOpen)
    path = save_checkpoint(STATE, tmp_path / "ckpt.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], STATE["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_checkpoint_falls_back_to_buffered_writes_when_refused_mid_save(tmp_path, monkeypatch):
    """Some FUSE mounts open with O_DIRECT and then reject the writes."""
    uncached_or_skip(tmp_path / "probe").close()
    (tmp_path / "probe").unlink()
    monkeypatch.setattr(checkpoint, "UncachedFile", SmallChunks)
    monkeypatch.setattr(checkpoint, "os", WritesFailWith(errno.EINVAL))
    path = save_checkpoint(STATE, tmp_path / "ckpt.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], STATE["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_full_disk_fails_the_save_with_its_os_error_and_leaves_nothing(tmp_path, monkeypatch):
    uncached_or_skip(tmp_path / "probe").close()
    (tmp_path / "probe").unlink()
    monkeypatch.setattr(checkpoint, "UncachedFile", SmallChunks)
    monkeypatch.setattr(checkpoint, "os", WritesFailWith(errno.ENOSPC))
    with pytest.raises(OSError) as raised:
        save_checkpoint(STATE, tmp_path / "ckpt.pt")
    assert raised.value.errno == errno.ENOSPC  # not torch's RuntimeError, not a BufferError from the mmap
    assert list(tmp_path.iterdir()) == []
