"""Optuna search for Tune, fixed where Ray's ``OptunaSearch`` misleads TPE, with several objectives.

Ray's ``OptunaSearch.on_trial_complete`` tells Optuna that a trial stopped early by ASHA is COMPLETE
with its early (e.g. 1-epoch) score, so TPE learns from short trials as if they were final. Here such
trials are told PRUNED (Optuna then ranks them by their last intermediate value, below finished ones;
a multi-objective study takes no intermediate values, so there they are PRUNED without values), trials
that ended with a failure are told FAIL, and configurations over the parameter budget are rejected
before Tune ever starts them.

Constraints are Optuna trial constraints (``Trial.set_constraint``, which replaced the sampler's
``constraints_func`` in Optuna 5): a constraint on a cost the config determines (``params_m``,
``flops_g``) is set when the configuration is proposed, and a violating one is told PRUNED with its
violation instead of being trained, so TPE learns where the infeasible region is; constraints on
measured metrics (latency, accuracy) are set from the trial's last result when it ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from hpo_cls.console import warn
from hpo_cls.errors import SweepError
from hpo_cls.search.objective_values import objective_values, violations
from hpo_cls.search.optuna_space import DefineByRun
from hpo_cls.spec import Constraint, Objective

__all__ = ["BudgetAwareOptunaSearch"]


def _drop_grid_exhausted_notice(record: logging.LogRecord) -> bool:
    # Optuna's GridSampler calls study.stop() when the grid is used up; outside study.optimize that
    # raises after the trial is already recorded, and Ray logs the harmless exception as a warning.
    return "Study.stop" not in record.getMessage()


class BudgetAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` over a :class:`DefineByRun` space that tells Optuna the truth about each trial.

    ``objectives``: one (a single-objective study) or more (multi-objective, Optuna's sampler chooses
    how). ``param_count(config) -> int`` counts the parameters of the model a config would build;
    configurations over ``max_params`` are told FAIL and proposed again (at most ``max_rejections``).
    ``static_costs(config) -> {metric: value}`` adds config-determined costs besides ``params_m``
    (``flops_g``) for the constraints that need them.
    ``baseline``: parameters of a first trial to enqueue (Optuna ``enqueue_trial``, as Ray's
    ``points_to_evaluate`` does it), e.g. the spec's fixed configuration.
    """

    def __init__(
        self,
        space: DefineByRun,
        *,
        objectives: Sequence[Objective] = (),
        sampler: optuna.samplers.BaseSampler,
        max_epochs: int,
        param_count: Callable[[dict[str, Any]], int],
        max_params: int,
        constraints: Sequence[Constraint] = (),
        static_costs: Callable[[dict[str, Any]], dict[str, float]] | None = None,
        max_rejections: int = 100,
        baseline: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
    ):
        if not objectives:  # the single-objective shorthand
            objectives = (Objective(metric or "val_acc", mode or "max"),)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune.search.optuna.optuna_search").addFilter(_drop_grid_exhausted_notice)
        metrics, modes = [o.metric for o in objectives], [o.mode for o in objectives]
        if len(objectives) == 1:
            metrics, modes = metrics[0], modes[0]
        super().__init__(space=space, metric=metrics, mode=modes, sampler=sampler,
                         points_to_evaluate=[baseline] if baseline else None)
        self._objectives = tuple(objectives)
        self._constraints = tuple(constraints)
        self._static_costs = static_costs
        self._define_by_run = space
        self._max_epochs = max_epochs
        self._param_count = param_count
        self._max_params = max_params
        self._max_rejections = max_rejections
        self.rejected_over_budget = 0
        self.rejected_infeasible = 0
        self.suggest_seconds = 0.0  # time spent proposing (Optuna + parameter counting), for the summary
        self.suggestions = 0

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | None:
        start = time.perf_counter()
        try:
            return self._suggest_within_budget(trial_id)
        finally:
            self.suggest_seconds += time.perf_counter() - start
            self.suggestions += 1

    def _suggest_within_budget(self, trial_id: str) -> dict | None:
        for _ in range(self._max_rejections):
            config = super().suggest(trial_id)
            if isinstance(config, dict):  # not Searcher.FINISHED: Optuna names back to trial-config keys
                config = self._define_by_run.config_keys(config)
            count = self._param_count(config)
            if count > self._max_params:
                self.rejected_over_budget += 1
                warn(f"skipped a configuration with {count:,} parameters (max_params {self._max_params:,}): {config}")
                self._ot_study.tell(self._ot_trials.pop(trial_id), state=TrialState.FAIL)
                continue
            trial = self._ot_trials[trial_id]
            costs = {"params_m": count / 1e6, **(self._static_costs(config) if self._static_costs else {})}
            for name, value in costs.items():
                trial.set_user_attr(name, value)
            violated = {k: v for k, v in self._set_constraints(trial, costs).items() if v > 0}
            if not violated:
                return config
            self.rejected_infeasible += 1
            warn(f"skipped a configuration outside the constraints ({_describe(violated, costs)}): {config}")
            self._ot_study.tell(self._ot_trials.pop(trial_id), state=TrialState.PRUNED)
        raise SweepError(
            f"{self._max_rejections} proposals in a row were over max_params={self._max_params:,} or outside the "
            "constraints; shrink the search space (backbone, head_hidden) or relax max_params and the constraints"
        )

    def _set_constraints(self, trial: optuna.Trial, values: dict[str, Any]) -> dict[str, float]:
        """Set the constraints whose metric ``values`` holds; return their violations."""
        found = violations(values, self._constraints)
        for metric, violation in found.items():
            trial.set_constraint(metric, violation)
        return found

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        trial = self._ot_trials[trial_id]
        stopped_early = bool(result) and result.get("epoch", self._max_epochs) < self._max_epochs
        failed = error or bool(result and result.get("failure"))
        values = objective_values(result or {}, self._objectives)
        if not failed:  # the costs known at the proposal were constrained then
            known = trial.user_attrs
            self._set_constraints(trial, {k: v for k, v in (result or {}).items() if k not in known})
        if not failed and not stopped_early and values is None:
            warn(f"trial {trial_id} did not report {', '.join(o.metric for o in self._objectives)}; told Optuna "
                 "it failed")
            failed = True
        state = TrialState.FAIL if failed else TrialState.PRUNED if stopped_early else TrialState.COMPLETE
        try:
            self._ot_study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never stop the sweep
            if "Study.stop" not in str(exc):  # the grid sampler, used up, stops the study: the trial is recorded
                warn(f"could not tell Optuna about trial {trial_id}: {exc}")
        self._completed_trials.add(trial_id)


def _describe(violated: dict[str, float], values: dict[str, Any]) -> str:
    return ", ".join(f"{metric} {values[metric]:.4g} misses its bound by {v:.4g}" for metric, v in violated.items())
