"""Warm start: the finished trials of earlier sweeps become trials of the new Optuna study before its first
proposal, and the best of them are trained again first.

- The study holds them as its own trials (``Study.add_trials``), so TPE starts informed: its random start-up
  counts finished trials of the study, earlier ones included, and is skipped once they are enough.
- The best completed configurations (:func:`first_points`, ranked by :class:`ScoreRule`) are enqueued as the
  sweep's first trials (``Study.enqueue_trial``): ASHA's first rungs then hold strong trials, so the weak
  proposals after them stop at the grace period, and the new sweep has its own checkpoint of the best
  configuration known, for ``promote``.

A recorded trial is a point of the new sweep when its active parameters (walked in the new space's order,
``when`` conditions included) lie in the new distributions, every other configuration key has the new
``fixed`` value (the seed aside: it is not a hyperparameter), and it ran for the same epoch budget.
Completed trials become COMPLETE with their objective values, early-stopped ones PRUNED (with their
per-epoch scores in a single-objective study, as the live searcher reports them); constraints are
recorded on them as on live trials.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo_cls.search.objective_values import STATIC_METRICS, objective_values, violations
from hpo_cls.search.optuna_space import distribution_of, is_active
from hpo_cls.spec import Constraint, Objective, Param, TrialConfig, format_value
from hpo_cls.tracking.runs import param_value, typed_params  # how a config value was logged, and read back
from hpo_cls.tracking.score import ScoreRule

if TYPE_CHECKING:  # read from MLflow by hpo_cls.tracking.history
    from hpo_cls.tracking.history import RecordedTrial

__all__ = ["WarmStart", "warm_start_trials", "first_points", "rerun_count", "OUTSIDE_SPACE", "OTHER_SETUP",
           "NO_OBJECTIVES"]

OUTSIDE_SPACE = "outside the search space"
OTHER_SETUP = "other fixed values or epoch budget"
NO_OBJECTIVES = "without the objectives' metrics"
_NOT_COMPARED = {"seed"}


@dataclass
class WarmStart:
    trials: list[FrozenTrial] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    scores: list[float | None] = field(default_factory=list)  # each trial's score (ScoreRule), None: not ranked

    def describe(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
        return f"{len(self.trials)} trial(s)" + (f" ({sum(self.skipped.values())} skipped: {reasons})" if reasons else "")


def warm_start_trials(recorded: Iterable[RecordedTrial], space: Sequence[Param], fixed: TrialConfig,
                      objectives: Sequence[Objective], constraints: Sequence[Constraint], epochs: int) -> WarmStart:
    """The recorded trials that are points of the new sweep, as Optuna trials; the rest counted by reason."""
    result = WarmStart()
    rule = ScoreRule(objectives[0].metric, objectives[0].mode)
    for trial in recorded:
        if trial.params.get("epochs_budget", str(epochs)) != str(epochs) or not _same_fixed(trial, space, fixed):
            result.skipped[OTHER_SETUP] += 1
            continue
        values = objective_values(trial.metrics, objectives)
        if trial.status == "completed" and values is None:
            result.skipped[NO_OBJECTIVES] += 1
            continue
        try:
            params = _searched_params(trial.params, space, fixed)
            frozen = _frozen(trial, params, space, values, constraints, len(objectives) == 1)
        except ValueError:  # a value the new space cannot take (Optuna checks it against the distribution)
            result.skipped[OUTSIDE_SPACE] += 1
            continue
        result.trials.append(frozen)
        feasible = all(v <= 0 for v in frozen.constraints.values())
        ranked = trial.status == "completed" and feasible
        result.scores.append(rule.score(trial.metrics, lambda: [trial.metrics.get(rule.metric)]) if ranked else None)
    return result


def rerun_count(num_samples: int, max_concurrent: int) -> int:
    """How many of the earlier best configurations a warm-started sweep trains first: its first wave of
    concurrent trials, at most an eighth of the sweep (at least one), so the sampler proposes the rest."""
    return max(1, min(max_concurrent, num_samples // 8))


def first_points(starts: Iterable[WarmStart], rule: ScoreRule, count: int) -> list[dict[str, Any]]:
    """Parameters (for ``Study.enqueue_trial``) of the ``count`` best distinct completed, feasible trials of
    ``starts``, best first."""
    ranked = sorted(((score, trial.params) for start in starts for trial, score in zip(start.trials, start.scores)
                     if score is not None), key=lambda pair: rule.key(pair[0]))
    points: list[dict[str, Any]] = []
    for _, params in ranked:
        if params not in points and len(points) < count:
            points.append(dict(params))
    return points


def _parse(param: Param, text: str | None) -> Any:
    """A logged value in the form Optuna holds it for ``param``; ValueError when it cannot be one."""
    if param.kind == "choice":
        for choice in param.choices:
            if param_value(choice) == text:
                return format_value(choice)
        raise ValueError(f"{param.name}={text} is not one of the choices")
    number = typed_params({param.name: text or "nan"}).get(param.name, text)
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"{param.name}={text} is not a number")
    if param.kind == "int" and not float(number).is_integer():
        raise ValueError(f"{param.name}={text} is not an integer")
    return int(number) if param.kind == "int" else float(number)


def _searched_params(logged: dict[str, str], space: Sequence[Param], fixed: TrialConfig) -> dict[str, Any]:
    """The trial's active parameters of the new space (walked like :class:`DefineByRun`), as Optuna values."""
    values = {name: getattr(fixed, name) for name in TrialConfig.__dataclass_fields__}
    params = {}
    for param in space:
        if is_active(param, values):
            value = params[param.optuna_name] = _parse(param, logged.get(param.name))
            values[param.name] = (next(c for c in param.choices if format_value(c) == value)
                                  if param.kind == "choice" else value)
    return params


def _same_fixed(trial: RecordedTrial, space: Sequence[Param], fixed: TrialConfig) -> bool:
    """Every configuration key the new space cannot set has the new fixed value (a key the old run did
    not log, from an older version, is taken to have its default)."""
    searched = {p.name for p in space}
    return all(trial.params.get(name, param_value(getattr(fixed, name))) == param_value(getattr(fixed, name))
               for name in TrialConfig.__dataclass_fields__ if name not in searched and name not in _NOT_COMPARED)


def _frozen(trial: RecordedTrial, params: dict[str, Any], space: Sequence[Param], values: list[float] | None,
            constraints: Sequence[Constraint], single_objective: bool) -> FrozenTrial:
    """An Optuna trial; raises ValueError when a value lies outside its distribution."""
    common = dict(
        params=params, distributions={p.optuna_name: distribution_of(p) for p in space if p.optuna_name in params},
        constraints=violations(trial.metrics, constraints),
        user_attrs={"warm_start_from": trial.sweep_id, "trial_id": trial.trial_id,
                    **{k: v for k, v in trial.metrics.items() if k in STATIC_METRICS}},
    )
    if trial.status == "completed":
        return optuna.trial.create_trial(state=TrialState.COMPLETE, values=values, **common)
    # Like a live early stop: a single-objective study keeps the epoch scores and ranks by the last one.
    history = trial.history if single_objective else {}
    last = history[max(history)] if history else None
    return optuna.trial.create_trial(state=TrialState.PRUNED, value=last, intermediate_values=history or None,
                                     **common)
