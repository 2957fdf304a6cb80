"""Where hpo-cls keeps per-machine files: the decoded-image cache (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

from hpo_cls.errors import OutputError

__all__ = ["CACHE_DIR_ENV", "default_cache_root"]

CACHE_DIR_ENV = "HPO_CLS_CACHE_DIR"


def default_cache_root() -> Path:
    """``$HPO_CLS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpo-cls``, else ``~/.cache/hpo-cls``. An OutputError
    naming the variable when that is a file, or lies under one: no cache file could ever be written there."""
    if os.environ.get(CACHE_DIR_ENV):
        root, variable = Path(os.environ[CACHE_DIR_ENV]).expanduser(), CACHE_DIR_ENV
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        root, variable = Path(base or Path.home() / ".cache") / "hpo-cls", "XDG_CACHE_HOME" if base else "HOME"
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == root else f"lies under the file {existing}"
        raise OutputError(f"{variable}: the hpo-cls cache folder {root} {where}; point {variable} at a folder")
    return root
