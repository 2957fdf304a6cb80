"""Choosing members on the selection half of val, from the validation predictions every finished trial logs
(:mod:`hpo_cls.train.val_predictions`).

``topk`` ranks the trials by the sweep's metric measured on the selection half (``val_acc``: accuracy,
``val_loss``: negative log-likelihood; another metric keeps the trial's own score). ``greedy`` runs ensemble
selection (:mod:`hpo_cls.promote.greedy`) over every finished trial, completed or stopped early, within the
parameter budget (and ``max_latency_ms``, the members' batch-1 latencies summed). Either way the held-out
half of val (:mod:`hpo_cls.promote.val_split`) stays unseen by the choice, for promote's figures.

Sweeps logged before trials kept their predictions have none: the choice then falls back to the trials'
own scores, which saw all of val.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hpo_cls.errors import PromoteError
from hpo_cls.promote.greedy import accuracy, greedy_selection, nll
from hpo_cls.promote.select import Candidate, common_rule
from hpo_cls.promote.strategies import DEFAULT_SELECT, SELECT_STRATEGIES
from hpo_cls.promote.val_split import selection_mask
from hpo_cls.tracking.backend import TrackingStore
from hpo_cls.tracking.runs import PREDICTIONS_ARTIFACT
from hpo_cls.train.val_predictions import ValPredictions, load_val_predictions

__all__ = ["SELECT_STRATEGIES", "DEFAULT_SELECT", "FALLBACK_TOP", "GREEDY_METRIC", "HalfPredictions", "load_half_predictions",
           "rank_on_selection_half", "greedy_members"]

FALLBACK_TOP = 2  # members when greedy falls back to top-K and no --top was given
# Negative log-likelihood: on a few hundred images accuracy ties at most additions and greedy stops after one.
GREEDY_METRIC = "nll"


@dataclass(frozen=True)
class HalfPredictions:
    """The trials' probabilities on the selection half of val, by run id."""

    by_run: dict[str, np.ndarray]  # float [selection images, classes]
    labels: np.ndarray
    classes: list[str]
    selection_images: int
    held_out_images: int


def load_half_predictions(store: TrackingStore, candidates: Sequence[Candidate]) -> HalfPredictions | None:
    """The candidates' logged predictions cut to the selection half; None when none of them has any. Raises
    PromoteError when trials were evaluated on different validation images or classes."""
    found: dict[str, ValPredictions] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-cls-predictions-") as tmp:
        for c in candidates:
            path = store.download_artifact(c.run_id, PREDICTIONS_ARTIFACT, Path(tmp, c.run_id))
            if path is not None:
                found[c.run_id] = load_val_predictions(path)
    if not found:
        return None
    first = next(iter(found.values()))
    for run_id, p in found.items():
        if p.names_sha256 != first.names_sha256 or p.classes != first.classes:
            raise PromoteError(f"run {run_id} was evaluated on other validation images or classes than run "
                               f"{next(iter(found))}; promote runs of the same data together")
    mask = selection_mask(first.names, first.labels)
    return HalfPredictions({run_id: p.probabilities[mask].astype(np.float64) for run_id, p in found.items()},
                           first.labels[mask], first.classes, int(mask.sum()), int((~mask).sum()))


def _half_score(metric: str, probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    if metric == "val_acc":
        return accuracy(probabilities, labels)
    if metric == "val_loss":  # the evaluation's loss is the cross-entropy: the NLL of the true class
        return nll(probabilities, labels)
    return None


def rank_on_selection_half(candidates: Sequence[Candidate], half: HalfPredictions) -> list[Candidate] | None:
    """The candidates rescored by their sweep's metric on the selection half; None when that metric cannot be
    computed from predictions or a candidate has none (their own scores, which saw all of val, then rank)."""
    rule = common_rule(candidates)
    if any(c.run_id not in half.by_run for c in candidates):
        return None
    scores = [_half_score(rule.metric, half.by_run[c.run_id], half.labels) for c in candidates]
    if any(s is None for s in scores):
        return None
    return [dataclasses.replace(c, score=s) for c, s in zip(candidates, scores)]


def greedy_members(candidates: Sequence[Candidate], half: HalfPredictions, *, top: int | None, max_params: int,
                   max_latency_ms: float | None, count_parameters: Callable[[Candidate], int],
                   warn: Callable[[str], None]) -> tuple[list[Candidate], list[float]]:
    """Greedy selection with replacement over ``candidates`` (those with predictions), at most ``top`` distinct
    members, within the budget; the members, best-ranked first as chosen, and their weights (selection counts)."""
    common_rule(candidates)  # raises when the sweeps rank their runs differently
    pool = sorted((c for c in candidates if c.run_id in half.by_run),
                  key=lambda c: c.rank_key)  # ties go to the better trial
    if max_latency_ms is not None:
        missing = [c for c in pool if "latency_ms" not in c.metrics]
        for c in missing:
            warn(f"skipping run {c.run_id}: it records no latency_ms")
        pool = [c for c in pool if c not in missing]
    costs = [{"parameters": count_parameters(c),
              **({"latency_ms": c.metrics["latency_ms"]} if max_latency_ms is not None else {})} for c in pool]
    budget = {"parameters": max_params, **({"latency_ms": max_latency_ms} if max_latency_ms is not None else {})}
    try:
        result = greedy_selection([half.by_run[c.run_id] for c in pool], half.labels, metric=GREEDY_METRIC,
                                  max_members=top, costs=costs, budget=budget)
    except ValueError as exc:
        limits = f"max_params {max_params:,}" + (f", max_latency_ms {max_latency_ms:g}" if max_latency_ms else "")
        raise PromoteError(f"{{select}} greedy: {exc} ({limits}) among {len(pool)} run(s); relax "
                           "{max_params} / {max_latency_ms}") from None
    return [pool[i] for i in result.members], result.weights
