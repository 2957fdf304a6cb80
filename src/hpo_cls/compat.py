"""Every use of a private name of a dependency (Ray, torch), each behind a function with a public fallback.

Nothing else in hpo-cls names a private attribute of Ray, MLflow, Optuna, torch or the C library
(``tests/test_compat.py`` scans for it). Each function here checks that the name exists before using it,
and falls back to the public way when it does not: a Ray or torch that moved a name makes hpo-cls slower
or less tidy, never broken. ``HPO_CLS_COMPAT=off`` (read at every call) takes the fallback everywhere.

| function | private name | what it buys | fallback |
| --- | --- | --- | --- |
| :func:`loopback_only` | ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` | a private Ray on 127.0.0.1 when this process imported Ray already | Ray's public switch (an environment variable), read when Ray is imported |
| :func:`quiet_ray_auth_notice` | the logger ``ray._private.authentication...`` | no token-auth notice in every sweep's output | the notice prints |
| :func:`checkpoints_linked` | ``ray.train._internal.storage._pyarrow_fs_copy_files`` | a per-epoch checkpoint written once, linked into Tune's folder | Ray's byte copy |
| :func:`with_tune_mixin` | Tune's ``__mixins__`` hook of its function API | reused trial workers that never lose a trial | None: the caller runs every trial in a fresh worker |
| :func:`release_cuda_memory` | ``torch._C._cuda_clearCublasWorkspaces`` | cuBLAS workspaces handed back between reused trials | ``torch.cuda.empty_cache()`` alone |
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["COMPAT_ENV", "enabled", "RAY_CLUSTER_SWITCH", "loopback_only", "quiet_ray_auth_notice",
           "checkpoints_linked", "link_tree", "with_tune_mixin", "release_cuda_memory"]

COMPAT_ENV = "HPO_CLS_COMPAT"
RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's documented switch for one-machine Rays


def enabled() -> bool:
    """False when ``HPO_CLS_COMPAT`` is ``off`` (or ``0``, ``false``, ``no``): public APIs only."""
    return os.environ.get(COMPAT_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Around ``ray.init``: a Ray started in it (``address="local"``) listens on 127.0.0.1 only, not on every
    interface; a driver joining such a Ray at its 127.0.0.1 address must connect in it too.

    Ray keeps a one-machine Ray on 127.0.0.1 where it supports no multi-node clusters (macOS, Windows);
    ``ray.init(_node_ip_address="127.0.0.1")`` does not do it (Ray replaces a loopback address with the
    machine's own). Its switch for that, :data:`RAY_CLUSTER_SWITCH`, is public, but Ray reads it once, when
    a process imports Ray: set here for the processes Ray starts (and for this one if it has not imported
    Ray yet, as ``hpo-cls`` commands have not), and, in a process that has, Ray's constant read from it is
    set too (private). Both are restored afterwards, so this process can still join another cluster."""
    saved_env = os.environ.get(RAY_CLUSTER_SWITCH)
    os.environ[RAY_CLUSTER_SWITCH] = "0"
    constants = _ray_constants()
    saved_constant = constants.ENABLE_RAY_CLUSTER if constants is not None else None
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(RAY_CLUSTER_SWITCH, None)
        else:
            os.environ[RAY_CLUSTER_SWITCH] = saved_env


def _ray_constants():
    """Ray's constants module if this process imported it and it has the switch's constant, else None."""
    if not enabled():
        return None
    try:
        from ray._private import ray_constants
    except ImportError:
        return None
    return ray_constants if isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool) else None


def quiet_ray_auth_notice() -> None:
    """Ray announces its token-auth mode when it starts; for a private Ray on 127.0.0.1 that is noise in
    every command's output. Its logger has a private module's name: if Ray renames it, the notice prints."""
    if enabled():
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


@contextlib.contextmanager
def checkpoints_linked() -> Iterator[bool]:
    """Around ``tune.report(checkpoint=...)`` in a trial: a checkpoint folder persisted into a local
    experiment folder is hard-linked there instead of copied (yields True when so).

    Tune copies the folder with pyarrow; for a ResNet-50 checkpoint with its optimizer state (~300 MB, each
    epoch) that copy takes 0.2-1.5 s on the development VM (bench/README.md), inside the trial. Tune's function
    API cannot register a checkpoint already in place, so Ray's copy function is replaced for the duration of
    the report. Remote storage, other devices and file systems without hard links take Ray's copy."""
    storage = _ray_train_storage()
    original = getattr(storage, "_pyarrow_fs_copy_files", None) if storage is not None else None
    if original is None:
        yield False
        return
    import pyarrow.fs

    def copy_files(source, destination, source_filesystem=None, destination_filesystem=None, **kwargs):
        local = pyarrow.fs.LocalFileSystem
        if isinstance(source_filesystem, local) and isinstance(destination_filesystem, local):
            try:
                return link_tree(source, destination)
            except OSError:  # another device, or no hard links here: Ray's copy overwrites what was linked
                pass
        return original(source, destination, source_filesystem=source_filesystem,
                        destination_filesystem=destination_filesystem, **kwargs)

    storage._pyarrow_fs_copy_files = copy_files
    try:
        yield True
    finally:
        storage._pyarrow_fs_copy_files = original


def _ray_train_storage():
    if not enabled():
        return None
    try:
        from ray.train._internal import storage
    except ImportError:
        return None
    return storage


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


def with_tune_mixin(trainable: Callable[[dict], Any], mixin: type) -> Callable[[dict], Any] | None:
    """``trainable`` (a function for Tune) with ``mixin`` mixed into the class Tune makes of it, through the
    ``__mixins__`` hook of Tune's function API; None when Tune does not honour that hook (checked on a probe)
    or compat is off, so the caller can do without it."""
    if not enabled() or not _tune_honours_mixins(mixin):
        return None

    def with_mixin(config):
        return trainable(config)

    with_mixin.__name__ = getattr(trainable, "__name__", "trainable")
    with_mixin.__mixins__ = (*getattr(trainable, "__mixins__", ()), mixin)
    return with_mixin


def _tune_honours_mixins(mixin: type) -> bool:
    try:
        from ray.tune.trainable.function_trainable import wrap_function
    except ImportError:
        return False

    def probe(config):
        return None

    probe.__mixins__ = (mixin,)
    try:
        return issubclass(wrap_function(probe), mixin)
    except Exception:  # noqa: BLE001 - any change in Tune's wrapper: do without the hook
        return False


def release_cuda_memory(torch) -> None:
    """Hand the CUDA memory torch holds but no tensor uses back to the device (trials sharing a GPU then get
    it), including cuBLAS's workspaces, which ``torch.cuda.empty_cache()`` leaves in place (cf. ray#23971);
    without torch's private call, only what ``empty_cache`` frees."""
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None) if enabled() else None
    if clear_workspaces is not None:
        clear_workspaces()
    torch.cuda.empty_cache()
