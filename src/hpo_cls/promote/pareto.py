"""``promote --pareto``: the members come from the sweep's Pareto front, within a parameter or latency budget.

The front is taken over the objectives the sweep recorded (``val_acc`` and ``params_m``, say); a sweep of a
single objective is read as that objective against size (and latency, when ``max_latency_ms`` is given).
Only runs within the budget compete, so the front is "the best trade-offs you can afford"; the ``top`` best
of its members by the sweep's own metric are promoted.
"""

from __future__ import annotations

from typing import Callable, Sequence, TextIO

from hpo_cls.console import format_table, say
from hpo_cls.errors import PromoteError
from hpo_cls.promote.select import SELECTABLE, Candidate, SweepRecord, common_rule, load_candidates
from hpo_cls.promote.sources import Selection
from hpo_cls.search.objective_values import objective_values, pareto_front
from hpo_cls.spec import Objective
from hpo_cls.tracking.backend import TrackingStore
from hpo_cls.tracking.runs import objectives_from_param
from hpo_cls.tracking.score import ScoreRule

__all__ = ["front_objectives", "select_pareto", "pareto_selection"]


def front_objectives(recorded: Sequence[Objective], max_latency_ms: float | None,
                     rule: ScoreRule = ScoreRule()) -> tuple[Objective, ...]:
    """The sweep's objectives; for a single-objective sweep, its metric (``rule``) against size (and latency)."""
    if len(recorded) > 1:
        return tuple(recorded)
    extra = (Objective("latency_ms", "min"),) if max_latency_ms is not None else ()
    return (Objective(rule.metric, rule.mode), Objective("params_m", "min"), *extra)


def select_pareto(sweep: SweepRecord, candidates: Sequence[Candidate], top: int, *,
                  max_params: float | None = None, max_latency_ms: float | None = None,
                  include_early_stopped: bool = False, warn: Callable[[str], None] = print,
                  out: TextIO | None = None) -> list[Candidate]:
    """The ``top`` best members (by the sweep's metric) of the Pareto front of the runs within the budget."""
    if top < 1:
        raise PromoteError(f"{{top}} must be >= 1, got {top}")
    rule = common_rule(candidates) if candidates else sweep.rule
    objectives = front_objectives(objectives_from_param(sweep.params.get("objectives")), max_latency_ms, rule)
    budget = {"params_m": None if max_params is None else max_params / 1e6, "latency_ms": max_latency_ms}
    statuses = SELECTABLE if include_early_stopped else ("completed",)
    pool, points, costs = [], [], {}
    for c in (c for c in candidates if c.status in statuses):
        metrics = {**c.metrics, rule.metric: c.score}  # the run's best value of the sweep's metric
        values = objective_values(metrics, objectives)
        needed = [m for m, bound in budget.items() if bound is not None and m not in metrics]
        if values is None or needed:
            missing = [o.metric for o in objectives if o.metric not in metrics] + needed
            warn(f"skipping run {c.run_id}: it records no {', '.join(dict.fromkeys(missing))}")
            continue
        if all(bound is None or metrics[m] <= bound for m, bound in budget.items()):
            pool.append(c)
            points.append(values)
            costs[c.run_id] = metrics
    front = sorted((pool[i] for i in pareto_front(points, [o.mode for o in objectives])),
                   key=lambda c: c.rank_key)
    _print_front(front, objectives, costs, budget, out)
    if len(front) < top:
        raise PromoteError(f"{{top}} {top}: the Pareto front of the {len(pool)} run(s) within the budget has "
                           f"{len(front)} member(s); lower {{top}} or relax {{max_params}} / {{max_latency_ms}}")
    return front[:top]


def _print_front(front, objectives, costs, budget, out) -> None:
    limits = ", ".join(f"{m} <= {bound:g}" for m, bound in budget.items() if bound is not None) or "no budget"
    say(f"Pareto front of {', '.join(o.metric for o in objectives)} within {limits}: {len(front)} member(s)", out)
    columns = list(dict.fromkeys([o.metric for o in objectives] + ["params_m", "latency_ms"]))
    rows = [[c.trial_id, *[f"{costs[c.run_id][m]:.4g}" if m in costs[c.run_id] else "-" for m in columns], c.run_id]
            for c in front]
    print(format_table(["trial", *columns, "mlflow run"], rows), file=out, flush=True)


def pareto_selection(store: TrackingStore, experiment: str, sweep: str | None, top: int, *,
                     max_params: float | None = None, max_latency_ms: float | None = None,
                     include_early_stopped: bool = False, warn: Callable[[str], None] = print,
                     out: TextIO | None = None) -> Selection:
    """:func:`select_pareto` over the runs of one sweep (an id or spec name; None: the newest)."""
    record = store.find_sweep(experiment, sweep)
    candidates = load_candidates(store, record, warn)
    selected = select_pareto(record, candidates, top, max_params=max_params, max_latency_ms=max_latency_ms,
                             include_early_stopped=include_early_stopped, warn=warn, out=out)
    return Selection([record], len(candidates), selected)
