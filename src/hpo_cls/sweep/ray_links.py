"""Per-epoch checkpoints into a local Tune experiment folder by hard link instead of a byte copy.

``tune.report(checkpoint=...)`` copies the checkpoint folder into the experiment folder with pyarrow in
64 MB chunks. For a ResNet checkpoint (90 MB for ResNet-18, ~200 MB for ResNet-50, every epoch) that copy
is most of what reporting costs, 0.15-0.4 s per epoch on a busy machine. Tune's function API cannot
register a checkpoint that is already in place, so when both sides are on the local file system the
files are hard-linked instead: the checkpoint is written once, and the temporary folder Tune copied from
is removed as before (the link keeps the data). Remote storage (S3, GCS), other devices and file systems
without hard links take Ray's own copy, unchanged.

:func:`install` patches one private function of Ray (``ray.train._internal.storage``); if a Ray version
does not have it, nothing is patched and Ray copies as it always did.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["install", "link_tree"]

_PATCHED = "_hpo_cls_links_local_checkpoints"


def link_tree(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Hard-link every file under ``source`` to the same place under ``destination`` (replacing files
    that exist). On ``OSError`` (e.g. across devices) the links made so far are removed again, so that a
    byte copy into ``destination`` afterwards cannot write through a link into ``source``."""
    source, destination = Path(source), Path(destination)
    linked: list[Path] = []
    try:
        for path in sorted(source.rglob("*")):
            if path.is_dir():
                continue
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                if os.path.samefile(path, target):  # already this file (or source is destination)
                    continue
                target.unlink()
            os.link(path, target)
            linked.append(target)
    except OSError:
        for target in linked:
            target.unlink(missing_ok=True)
        raise


def install() -> bool:
    """Make Tune link local checkpoints instead of copying them, in this process; True if active."""
    try:
        import pyarrow.fs
        from ray.train._internal import storage
    except ImportError:
        return False
    original = getattr(storage, "_pyarrow_fs_copy_files", None)
    if original is None:
        return False
    if getattr(original, _PATCHED, False):
        return True

    def copy_files(source, destination, source_filesystem=None, destination_filesystem=None, **kwargs):
        local = pyarrow.fs.LocalFileSystem
        if isinstance(source_filesystem, local) and isinstance(destination_filesystem, local):
            try:
                return link_tree(source, destination)
            except OSError:  # another device, or no hard links here: Ray's copy overwrites what was linked
                pass
        return original(source, destination, source_filesystem=source_filesystem,
                        destination_filesystem=destination_filesystem, **kwargs)

    setattr(copy_files, _PATCHED, True)
    storage._pyarrow_fs_copy_files = copy_files
    return True
