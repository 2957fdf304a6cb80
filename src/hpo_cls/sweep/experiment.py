"""A sweep's identity: its id and Tune folder, the trainable it runs, and what it was run with."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import time
from pathlib import Path
from typing import Callable

from hpo_cls.errors import SweepError, echo
from hpo_cls.spec.validate import name_problem

__all__ = ["resolve_trainable", "sweep_directory", "trial_dirname", "git_commit", "versions"]


def resolve_trainable(dotted: str) -> Callable:
    """``pkg.module`` (its ``trainable`` function) or ``pkg.module.function``: a function that Tune can call as
    ``fn(config, setup=...)`` (see ``trainables.image_classifier``); a SweepError otherwise."""
    try:
        module = importlib.import_module(dotted)
        fn = getattr(module, "trainable", None)
    except ModuleNotFoundError:
        module_name, _, attr = dotted.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module_name), attr, None) if module_name else None
        except ModuleNotFoundError:
            fn = None
    if not callable(fn):
        raise SweepError(f"trainable: cannot import {echo(dotted)} (a module with a trainable() function, or a function)")
    try:
        inspect.signature(fn).bind({}, setup=None)  # how the sweep calls it: tune.with_parameters(fn, setup=...)
    except (TypeError, ValueError):  # ValueError: a builtin without a signature
        taken = _parameters(fn)
        raise SweepError(f"trainable: {echo(dotted)} is not a trainable ({taken}); a trainable is a function "
                         f"taking (config, setup), like trainables.image_classifier.trainable") from None
    return fn


def _parameters(fn: Callable) -> str:
    try:
        return f"it takes {inspect.signature(fn)}"
    except (TypeError, ValueError):
        return "its parameters cannot be read"


def sweep_directory(storage: str, spec_name: str, name: str | None, resume: bool) -> tuple[str, str]:
    """The sweep's id and Tune experiment folder (a local path or a URI such as ``s3://bucket/runs``).

    New sweeps get a timestamped id unless ``name`` is given; ``resume`` without a name picks the newest
    sweep of this spec (local storage only: listing a bucket is left to the user)."""
    from ray.tune import Tuner

    remote = "://" in storage
    if name is not None and name_problem(name):  # it becomes a folder under storage, never one elsewhere
        raise SweepError(f"{{name}}: {name_problem(name)}")
    if name is not None:
        path = f"{storage.rstrip('/')}/{name}" if remote else str(Path(storage) / name)
        if resume and not Tuner.can_restore(path):
            raise SweepError(f"{{resume}}: no interrupted sweep named {echo(name)} in {storage}")
        if not resume and not remote and Path(path).exists():
            raise SweepError(f"a sweep named {echo(name)} already exists in {storage}; use {{resume}} to continue it")
        return name, path
    if resume:
        if remote:
            raise SweepError(f"{{resume}} with storage_path {storage}: name the sweep to resume with {{name}}")
        candidates = sorted(
            (p for p in Path(storage).glob(f"{spec_name}-*") if Tuner.can_restore(str(p))),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise SweepError(f"{{resume}}: no sweep of {echo(spec_name)} to resume in {storage}")
        return candidates[-1].name, str(candidates[-1])
    sweep_id = f"{spec_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return sweep_id, f"{storage.rstrip('/')}/{sweep_id}" if remote else str(Path(storage) / sweep_id)


def trial_dirname(trial) -> str:
    return trial.trial_id


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, str]:
    """The versions a sweep's results depend on (tagged on its MLflow runs), torch's read without importing it."""
    import optuna
    import ray

    import hpo_cls
    from hpo_cls.package_versions import installed_version

    return {"ray": ray.__version__, "optuna": optuna.__version__, "torch": installed_version("torch"),
            "hpo_cls": hpo_cls.__version__}
