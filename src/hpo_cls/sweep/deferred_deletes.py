"""A trial's superseded checkpoints deleted off Tune's event loop.

With ``CheckpointConfig(num_to_keep=K)``, Tune's driver deletes a trial's checkpoint that falls out of the
best K while it handles the trial's save, before it tells the trial to go on: the trial's next epoch waits
for the deletion. Freeing a ResNet-18 checkpoint (90 MB) took 12-17 ms on ext4 here, once per epoch per
trial after the first K, most of what a result with a checkpoint cost the driver.

While :func:`deferred_checkpoint_deletes` is open, a checkpoint folder on the local file system is renamed
to a hidden sibling (``.deleting-<name>``; a rename is atomic and takes microseconds, and Tune has already
forgotten the path) and deleted by one background thread; the context waits for those deletions when it
closes. Remote storage, and a folder that cannot be renamed, take Ray's own delete, unchanged. Folders a
killed driver left half deleted are deleted the next time a sweep opens the same experiment folder.

It patches one private name of Ray (``ray.train._internal.checkpoint_manager._delete_fs_path``); where a
Ray version does not have it, nothing is patched and Tune deletes as it always did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

__all__ = ["TRASH_PREFIX", "deferred_checkpoint_deletes"]

TRASH_PREFIX = ".deleting-"
_logger = logging.getLogger(__name__)


@contextlib.contextmanager
def deferred_checkpoint_deletes(experiment_path: str | os.PathLike | None = None) -> Iterator[None]:
    """While open, Tune deletes local checkpoints in the background; on close, waits for them. Leftovers
    from a killed earlier run under ``experiment_path`` (a local folder) are deleted in the background too."""
    try:
        import pyarrow.fs
        from ray.train._internal import checkpoint_manager

        original = checkpoint_manager._delete_fs_path
    except (ImportError, AttributeError):  # another Ray: it deletes as it always did
        yield
        return
    deleter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-cls-checkpoint-deletes")

    def delete_fs_path(fs, fs_path: str) -> None:
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            path = Path(fs_path)
            trash = path.with_name(TRASH_PREFIX + path.name)
            try:
                os.rename(path, trash)
            except OSError:
                pass  # gone already, or a name in the way: Ray's delete, which logs what it finds
            else:
                deleter.submit(_delete, trash)
                return
        original(fs=fs, fs_path=fs_path)

    if experiment_path is not None and Path(experiment_path).is_dir():
        for leftover in Path(experiment_path).glob(f"*/{TRASH_PREFIX}*"):
            deleter.submit(_delete, leftover)
    checkpoint_manager._delete_fs_path = delete_fs_path
    try:
        yield
    finally:
        checkpoint_manager._delete_fs_path = original
        deleter.shutdown(wait=True)


def _delete(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # like Ray's own delete: reported, never fatal to the sweep
        _logger.warning("could not delete the superseded checkpoint %s: %s", path, exc)
