"""The one split of the validation set into a selection half and a held-out half.

Promote chooses an ensemble's members and weights on the selection half and reports every figure on the
held-out half, so the figures it prints were not used to choose what they measure. Stratified (each class
halved), seeded, and stable: an image's half depends only on its name, its class and the seed, never on the
order of the list or on the other images of other classes.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

__all__ = ["SPLIT_SEED", "selection_mask"]

SPLIT_SEED = 0


def _rank_key(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode("utf-8")).hexdigest()


def selection_mask(names: Sequence[str], labels: Sequence[int], seed: int = SPLIT_SEED) -> np.ndarray:
    """True for the images of the selection half, False for the held-out half: within each class, images in
    the order of a seeded hash of their name, the first half (rounded down; alternately up, class by class,
    so the halves stay within one image of each other) selects."""
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} names for {len(labels)} labels")
    mask = np.zeros(len(names), dtype=bool)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    odd = 0
    for label in sorted(by_class):
        rows = sorted(by_class[label], key=lambda i: _rank_key(seed, names[i]))
        take = len(rows) // 2
        if len(rows) % 2:
            take += odd
            odd ^= 1
        mask[rows[:take]] = True
    return mask
