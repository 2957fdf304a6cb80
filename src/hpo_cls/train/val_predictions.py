"""A trial's validation predictions as one small file: what promote's ensemble selection reads.

Saved beside each epoch's checkpoint, so the file that reaches MLflow is the one of the epoch whose checkpoint
is kept. Float16 probabilities (``[images, classes]``), the ordered validation file names with a hash of the
list (two trials are comparable only when their hashes agree), the labels and the class order. NumPy only:
the sweep's driver logs it and promote reads it without torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["PREDICTIONS_FILE", "ValPredictions", "names_hash", "save_val_predictions", "load_val_predictions"]

PREDICTIONS_FILE = "val_predictions.npz"


def names_hash(names: Sequence[str]) -> str:
    """SHA-256 of the ordered file names (one per line): equal hashes, same images in the same order."""
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ValPredictions:
    probabilities: np.ndarray  # float16 [images, classes]
    names: list[str]  # "<class folder>/<file name>", in the order of the rows
    labels: np.ndarray  # int [images]: class index of each row
    classes: list[str]  # class names in index order
    names_sha256: str
    epoch: int


def save_val_predictions(path: str | Path, probabilities, names: Sequence[str], labels: Sequence[int],
                         classes: Sequence[str], epoch: int) -> Path:
    """Write the file (``path``: a folder takes :data:`PREDICTIONS_FILE`); ``probabilities`` any array-like."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    probabilities = np.asarray(probabilities, dtype=np.float16)
    if probabilities.shape != (len(names), len(classes)) or len(labels) != len(names):
        raise ValueError(f"{probabilities.shape} probabilities for {len(names)} images, {len(labels)} labels "
                         f"and {len(classes)} classes")
    with open(path, "wb") as f:  # an open file: np.savez would append .npz to a name without it
        np.savez(f, probabilities=probabilities, names=np.asarray(list(names), dtype=str),
                 labels=np.asarray(labels, dtype=np.int32), classes=np.asarray(list(classes), dtype=str),
                 names_sha256=np.asarray(names_hash(names)), epoch=np.asarray(int(epoch)))
    return path


def load_val_predictions(path: str | Path) -> ValPredictions:
    """Read a file written by :func:`save_val_predictions`; raises ValueError when it does not match its hash."""
    with np.load(Path(path), allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        predictions = ValPredictions(data["probabilities"], names, data["labels"].astype(np.int64),
                                     [str(c) for c in data["classes"]], str(data["names_sha256"]),
                                     int(data["epoch"]))
    if names_hash(names) != predictions.names_sha256:
        raise ValueError(f"{path}: the file names do not match their hash")
    return predictions
