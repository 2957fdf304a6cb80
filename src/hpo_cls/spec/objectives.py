"""``objectives:`` and ``constraints:`` of a spec: what the search optimises and which trials are feasible.

```yaml
objectives:                      # default: the single metric/mode
  - {metric: val_acc, mode: max} # the first one is what ASHA stops on: a training metric
  - {metric: params_m, mode: min}
constraints: {params_m: {max: 15}, latency_ms: {max: 5}}
```
"""

from __future__ import annotations

from typing import Any, Mapping

from hpo_cls.errors import echo
from hpo_cls.spec.schema import COST_METRICS, METRIC_MODES, METRIC_RANGES, Constraint, Objective
from hpo_cls.spec.validate import coerce_scalar

__all__ = ["ALL_METRICS", "parse_objectives", "parse_constraints"]

ALL_METRICS = {**METRIC_MODES, **COST_METRICS}


def parse_objectives(raw: Any, metric: str, problems: list[str], where: str) -> tuple[Objective, ...]:
    """The objectives (empty when the key is absent: the single ``metric``/``mode``). ``metric``: the
    top-level value as written, or None; it must then be the first objective."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: objectives: expected a list like [{{metric: val_acc, mode: max}}, ...]")
        return ()
    objectives: list[Objective] = []
    for i, entry in enumerate(raw):
        objective = _objective(entry, f"objectives[{i}]", problems, where)
        if objective is None:
            continue
        if any(o.metric == objective.metric for o in objectives):
            problems.append(f"{where}: objectives[{i}].metric: {objective.metric} is listed twice")
        elif i == 0 and objective.metric not in METRIC_MODES:
            problems.append(f"{where}: objectives[0].metric: ASHA stops trials on the first objective; "
                            f"it must be a training metric ({', '.join(METRIC_MODES)}), got {objective.metric}")
        objectives.append(objective)
    if objectives and metric is not None and metric != objectives[0].metric:
        problems.append(f"{where}: metric: {metric} differs from the first objective {objectives[0].metric}; "
                        "remove metric or make it the first objective")
    return tuple(objectives)


def _objective(entry: Any, key: str, problems: list[str], where: str) -> Objective | None:
    if isinstance(entry, str):
        entry = {"metric": entry}
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: {key}: expected {{metric: NAME, mode: max|min}}, got {echo(entry)}")
        return None
    extra = [k for k in entry if k not in ("metric", "mode")]
    if extra:
        problems.append(f"{where}: {key}.{extra[0]}: unknown key (known: metric, mode)")
        return None
    metric = entry.get("metric")
    if not isinstance(metric, str) or metric not in ALL_METRICS:  # a list or mapping is not hashable
        problems.append(f"{where}: {key}.metric: {echo(metric)} is not one of {', '.join(ALL_METRICS)}")
        return None
    mode = entry.get("mode", ALL_METRICS[metric])
    if mode != ALL_METRICS[metric]:
        problems.append(f"{where}: {key}.mode: {metric} is optimised with mode {ALL_METRICS[metric]}, got {echo(mode)}")
        return None
    return Objective(metric, mode)


def parse_constraints(raw: Any, problems: list[str], where: str) -> tuple[Constraint, ...]:
    """``{metric: {max: x, min: y}}`` -> constraints; bounds are in the metric's units (params_m: millions)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: constraints: expected a mapping like {{params_m: {{max: 15}}}}, got {echo(raw)}")
        return ()
    constraints = []
    for metric, bounds in raw.items():
        key = f"constraints.{metric}"
        if metric not in ALL_METRICS:
            problems.append(f"{where}: {key}: unknown metric (known: {', '.join(ALL_METRICS)})")
            continue
        if not isinstance(bounds, Mapping) or not bounds or any(k not in ("max", "min") for k in bounds):
            problems.append(f"{where}: {key}: expected {{max: VALUE}} and/or {{min: VALUE}}, got {echo(bounds)}")
            continue
        values = {}
        for bound, value in bounds.items():
            try:
                values[bound] = coerce_scalar(float, value)
            except ValueError as exc:
                problems.append(f"{where}: {key}.{bound}: {exc}")
        if len(values) != len(bounds):
            continue
        low, high = METRIC_RANGES[metric]
        outside = [bound for bound, value in values.items() if not low <= value <= high]
        if outside:
            span = f"from {low:g} to {high:g}" if high < float("inf") else f"{low:g} or more"
            problems.append(f"{where}: {key}.{outside[0]}: {values[outside[0]]:g} is outside what {metric} can be "
                            f"({span})")
            continue
        if "max" in values and "min" in values and values["min"] > values["max"]:
            problems.append(f"{where}: {key}: min {values['min']:g} is above max {values['max']:g}")
            continue
        constraints.append(Constraint(metric, max=values.get("max"), min=values.get("min")))
    return tuple(constraints)
