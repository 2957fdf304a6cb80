"""Checkpoint bundles: everything needed to resume a trial exactly or to predict with its model.

Loaded with ``torch.load(weights_only=True)`` so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "CHECKPOINT_FILE", "MODEL_FILE", "EVALUATION_FILE", "save_checkpoint", "load_checkpoint", "model_bundle"]

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
EVALUATION_FILE = "evaluation.json"  # confusion matrix + per-class report at that epoch
_MODEL_KEYS = ("format", "model", "epoch", "best_val_acc", "best_epoch", "config", "image_size", "class_to_idx")


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated, tampered with, or not an hpo-cls bundle."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (temp file + rename), so a crash never leaves half a checkpoint."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _without_crc32():
        torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _without_crc32():
    """Skip the zip CRC-32 of every tensor (half the cost of saving a ResNet's checkpoint each epoch);
    the rename above already guarantees a whole file. A no-op on torch versions without the switch."""
    try:
        from torch.utils.serialization import config
    except ImportError:
        return contextlib.nullcontext()
    return config.patch({"save.compute_crc32": False})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a bundle written by :func:`save_checkpoint`; raise :class:`CheckpointError` if unsafe or broken."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise CheckpointError(
            f"{path}: refused to load: it contains objects other than tensors and plain data "
            f"(weights_only=True): {first_line}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "class_to_idx" not in state:
        raise CheckpointError(f"{path}: not an hpo-cls checkpoint (missing model or class mapping)")
    return state


def model_bundle(state: dict[str, Any]) -> dict[str, Any]:
    """What prediction needs from a checkpoint (weights, config, class mapping, image size): no
    optimizer or scheduler state, so about half the size of a resumable checkpoint."""
    return {k: state[k] for k in _MODEL_KEYS if k in state}
