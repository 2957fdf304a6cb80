"""Ensemble selection (Caruana et al., ICML 2004): greedy forward selection, with replacement, over the
candidates' predictions on images the ensemble is chosen on.

Pure NumPy, no store and no torch: the caller hands over each candidate's class probabilities, the labels,
and optionally each candidate's costs and the budget they must fit.

Each round adds the candidate (one already chosen counts again) whose addition gives the best score of the
average of the chosen probabilities; it stops when no addition improves the score. At most ``max_members``
distinct candidates are chosen: once that many are in, only they can be added again. The weights are the
selection counts. Ties go to the candidate listed first (callers list them best first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

__all__ = ["GREEDY_METRICS", "GreedyResult", "nll", "accuracy", "greedy_selection"]

_EPS = 1e-7  # probabilities are float16 in the files; log(0) would make one confident mistake infinite


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


# name -> (score function, "min" | "max")
GREEDY_METRICS = {"nll": (nll, "min"), "accuracy": (accuracy, "max")}


@dataclass(frozen=True)
class GreedyResult:
    counts: dict[int, int]  # candidate index -> times chosen, in order of first choice
    scores: list[float]  # the ensemble's score after each round

    @property
    def members(self) -> list[int]:
        return list(self.counts)

    @property
    def weights(self) -> list[float]:
        total = sum(self.counts.values())
        return [count / total for count in self.counts.values()]


def _fits(chosen: Sequence[int], index: int, costs: Sequence[Mapping[str, float]] | None,
          budget: Mapping[str, float] | None) -> bool:
    if not budget or index in chosen:
        return True
    members = [*chosen, index]
    return all(sum(costs[i][name] for i in members) <= limit for name, limit in budget.items())


def greedy_selection(probabilities: Sequence[np.ndarray], labels: np.ndarray, *, metric: str = "nll",
                     max_members: int | None = None, costs: Sequence[Mapping[str, float]] | None = None,
                     budget: Mapping[str, float] | None = None, max_rounds: int = 100) -> GreedyResult:
    """Choose members and weights; ``probabilities[i]``: candidate i's ``[images, classes]`` array on the
    selection images, ``labels`` their classes. ``budget``: cost name -> limit that the distinct members'
    summed ``costs[i][name]`` must not exceed. Raises ValueError when no candidate fits the budget."""
    if metric not in GREEDY_METRICS:
        raise ValueError(f"metric {metric!r}: one of {', '.join(GREEDY_METRICS)}")
    if budget and (costs is None or len(costs) != len(probabilities)):
        raise ValueError("a budget needs the costs of every candidate")
    score_of, mode = GREEDY_METRICS[metric]
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    labels = np.asarray(labels)
    arrays = [np.asarray(p, dtype=np.float64) for p in probabilities]
    total = np.zeros_like(arrays[0]) if arrays else None
    counts: dict[int, int] = {}
    scores: list[float] = []
    for _ in range(max_rounds):
        full = max_members is not None and len(counts) >= max_members
        best_index, best_score = None, None
        for i, p in enumerate(arrays):
            if (full and i not in counts) or not _fits(list(counts), i, costs, budget):
                continue
            score = score_of((total + p) / (sum(counts.values()) + 1), labels)
            if best_score is None or better(score, best_score):
                best_index, best_score = i, score
        if best_index is None:
            if not counts:
                raise ValueError("no candidate fits the budget")
            break
        if scores and not better(best_score, scores[-1]):
            break
        counts[best_index] = counts.get(best_index, 0) + 1
        total += arrays[best_index]
        scores.append(best_score)
    return GreedyResult(counts, scores)
