"""Superseded checkpoints leave Tune's event loop at once and are deleted in the background, all of them
by the time the sweep's fit returns. Driven through Ray's own checkpoint manager, the code that deletes."""

import threading

import pyarrow.fs
import pytest
from ray.train import Checkpoint, CheckpointConfig
from ray.train._internal import checkpoint_manager
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult

from hpo_cls.sweep import deferred_deletes
from hpo_cls.sweep.deferred_deletes import TRASH_PREFIX, deferred_checkpoint_deletes


def _register(manager: _CheckpointManager, folder, val_acc: float) -> None:
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights" * 1000)
    manager.register_checkpoint(_TrainingResult(Checkpoint.from_directory(str(folder)), {"val_acc": val_acc}))


@pytest.fixture
def held_deletes(monkeypatch):
    """Background deletions wait until the test releases them: what happens before is what Tune saw."""
    release, real_delete = threading.Event(), deferred_deletes._delete

    def held(path):
        release.wait(timeout=60)
        real_delete(path)

    monkeypatch.setattr(deferred_deletes, "_delete", held)
    return release


def test_tune_goes_on_before_the_superseded_checkpoint_is_deleted(tmp_path, held_deletes):
    trial = tmp_path / "trial_0"
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_acc",
                                                  checkpoint_score_order="max"))
    rays_delete = checkpoint_manager._delete_fs_path
    with deferred_checkpoint_deletes(tmp_path):
        _register(manager, trial / "checkpoint_000000", 0.2)
        _register(manager, trial / "checkpoint_000001", 0.5)  # better: epoch 0's checkpoint is superseded
        # register_checkpoint returned while the deletion is still held: it did not wait for it.
        assert not (trial / "checkpoint_000000").exists()
        assert (trial / f"{TRASH_PREFIX}checkpoint_000000" / "model.pt").exists()
        assert (trial / "checkpoint_000001" / "model.pt").exists()
        held_deletes.set()
    # Closing waited for the deletion: nothing is left behind, and Ray's own delete is back.
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]
    assert checkpoint_manager._delete_fs_path is rays_delete


def test_deletions_finish_and_the_patch_is_undone_when_the_sweep_fails(tmp_path):
    trial = tmp_path / "trial_0"
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    rays_delete = checkpoint_manager._delete_fs_path
    with pytest.raises(RuntimeError, match="driver failed"):
        with deferred_checkpoint_deletes(tmp_path):
            _register(manager, trial / "checkpoint_000000", 0.2)
            _register(manager, trial / "checkpoint_000001", 0.1)  # no score: the older one goes
            raise RuntimeError("driver failed")
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]
    assert checkpoint_manager._delete_fs_path is rays_delete


def test_leftovers_of_a_killed_driver_are_deleted_when_the_sweep_resumes(tmp_path):
    leftover = tmp_path / "trial_3" / f"{TRASH_PREFIX}checkpoint_000002"
    leftover.mkdir(parents=True)
    (leftover / "model.pt").write_bytes(b"half deleted")
    kept = tmp_path / "trial_3" / "checkpoint_000003"
    kept.mkdir()
    with deferred_checkpoint_deletes(tmp_path):
        pass
    assert not leftover.exists()
    assert kept.is_dir()


def test_remote_storage_keeps_rays_own_delete(tmp_path, held_deletes):
    """Not the local file system (here a sub-tree view of it, as a bucket would be): Ray deletes in place,
    before returning, as it always did."""
    bucket = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    (tmp_path / "trial_0" / "checkpoint_000000").mkdir(parents=True)
    (tmp_path / "trial_0" / "checkpoint_000000" / "model.pt").write_bytes(b"weights")
    with deferred_checkpoint_deletes(tmp_path):
        checkpoint_manager._delete_fs_path(fs=bucket, fs_path="trial_0/checkpoint_000000")
        assert list((tmp_path / "trial_0").iterdir()) == []
        held_deletes.set()
