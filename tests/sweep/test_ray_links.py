"""Tune's checkpoint persistence by hard link: written once, Ray's copy for everything else."""

import os

import pyarrow.fs
import pytest
from ray.train._internal import storage

from hpo_cls.sweep import ray_links


@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setattr(storage, "_pyarrow_fs_copy_files", storage._pyarrow_fs_copy_files)  # restored after
    assert ray_links.install()
    assert ray_links.install()  # idempotent: the patch does not wrap itself
    return storage._pyarrow_fs_copy_files


def _checkpoint(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"weights" * 1000)
    (folder / "sub" / "evaluation.json").write_text("{}")
    return folder


def test_local_checkpoints_are_linked_not_copied(tmp_path, patched):
    source = _checkpoint(tmp_path / "tmp_ckpt")
    destination = tmp_path / "experiment" / "trial" / "checkpoint_000000"
    local = pyarrow.fs.LocalFileSystem()
    patched(str(source), str(destination), source_filesystem=local, destination_filesystem=local)
    for name in ("checkpoint.pt", "sub/evaluation.json"):
        assert os.path.samefile(source / name, destination / name)
    # Tune then removes its temporary folder: the persisted checkpoint is whole.
    for path in sorted(source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert (destination / "checkpoint.pt").read_bytes() == b"weights" * 1000


def test_an_existing_file_is_replaced_and_linking_onto_itself_is_harmless(tmp_path):
    source = _checkpoint(tmp_path / "a")
    destination = tmp_path / "b"
    destination.mkdir()
    (destination / "checkpoint.pt").write_bytes(b"old")
    ray_links.link_tree(source, destination)
    assert (destination / "checkpoint.pt").read_bytes() == b"weights" * 1000
    ray_links.link_tree(source, source)
    assert (source / "checkpoint.pt").read_bytes() == b"weights" * 1000


def test_without_hard_links_rays_copy_is_used(tmp_path, patched, monkeypatch):
    source = _checkpoint(tmp_path / "tmp_ckpt")
    destination = tmp_path / "experiment" / "checkpoint_000000"

    real_link = os.link

    def no_links(src, dst):  # the first file links, the second cannot (as across devices)
        if "evaluation" in str(src):
            raise OSError(18, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", no_links)
    local = pyarrow.fs.LocalFileSystem()
    patched(str(source), str(destination), source_filesystem=local, destination_filesystem=local)
    assert (destination / "checkpoint.pt").read_bytes() == b"weights" * 1000
    assert (source / "checkpoint.pt").read_bytes() == b"weights" * 1000  # the copy did not write through a link
    assert not os.path.samefile(source / "checkpoint.pt", destination / "checkpoint.pt")
    assert (destination / "sub" / "evaluation.json").read_text() == "{}"
