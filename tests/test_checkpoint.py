"""Checkpoint files are written around the page cache (O_DIRECT) where the OS allows, byte-exact either way."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest
import torch

from hpo_cls import checkpoint
from hpo_cls.checkpoint import UncachedFile, load_checkpoint, save_checkpoint

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


class RefusedMidWrite(UncachedFile):
    """Opens fine, then the filesystem rejects the first direct write (seen on some FUSE mounts)."""

    def _write_staged(self, length):
        raise OSError(errno.EINVAL, "Invalid argument")


@pytest.mark.parametrize("writer", [RefusedAtOpen, RefusedMidWrite])
def test_checkpoint_falls_back_to_buffered_writes(tmp_path, monkeypatch, writer):
    monkeypatch.setattr(checkpoint, "UncachedFile", writer)
    path = save_checkpoint(STATE, tmp_path / "ckpt.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], STATE["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
