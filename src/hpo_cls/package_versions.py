"""Versions of installed packages, read without importing them: a sweep's driver tags, keys and checks by
torch's version but has no other use for torch's 2-4 s of import."""

from __future__ import annotations

import importlib
import importlib.util
from importlib import metadata
from pathlib import Path

__all__ = ["installed_version", "torch_build"]


def installed_version(package: str) -> str:
    """The installed distribution's version; for a package without distribution metadata (built from
    source into the path), its ``__version__``, imported; ``"?"`` when it is not installed at all."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        try:
            return str(importlib.import_module(package).__version__)
        except (ImportError, AttributeError):
            return "?"


def torch_build() -> str:
    """torch's version, CUDA version and git revision as its build wrote them (``torch/version.py``):
    tells apart two builds of one version (CPU and CUDA wheels)."""
    try:
        return (Path(importlib.util.find_spec("torch").origin).parent / "version.py").read_text()
    except (AttributeError, TypeError, ValueError, OSError):
        import torch

        return f"{torch.__version__} {torch.version.cuda}"
