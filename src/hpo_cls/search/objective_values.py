"""Several objectives and constraints: a trial's objective values, its constraint violations, and the
Pareto front of a set of trials. Plain Python: the searcher, the sweep summary and promote share it."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from hpo_cls.spec import Constraint, Objective
from hpo_cls.tracking.score import dominates, pareto_front  # the one home of ranking; re-exported here

__all__ = ["STATIC_METRICS", "objective_values", "violations", "dominates", "pareto_front"]

# Cost metrics that the config alone determines: known when a configuration is proposed, before training.
STATIC_METRICS = ("params_m", "flops_g")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def objective_values(values: Mapping[str, Any], objectives: Sequence[Objective]) -> list[float] | None:
    """The objectives' values in order, or None when one is missing or not finite."""
    picked = [values.get(o.metric) for o in objectives]
    return [float(v) for v in picked] if all(_finite(v) for v in picked) else None


def violations(values: Mapping[str, Any], constraints: Sequence[Constraint]) -> dict[str, float]:
    """Metric -> violation (> 0: infeasible) of each constraint whose metric has a finite value here."""
    return {c.metric: c.violation(float(values[c.metric])) for c in constraints if _finite(values.get(c.metric))}
