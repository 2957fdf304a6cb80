"""Where hpo-cls keeps per-machine files: the decoded-image cache (torch-free)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "default_cache_root"]

CACHE_DIR_ENV = "HPO_CLS_CACHE_DIR"


def default_cache_root() -> Path:
    """``$HPO_CLS_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpo-cls``, else ``~/.cache/hpo-cls``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hpo-cls"
