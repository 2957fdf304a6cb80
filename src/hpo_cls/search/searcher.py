"""Optuna search for Tune, fixed where Ray's ``OptunaSearch`` misleads TPE.

Ray's ``OptunaSearch.on_trial_complete`` tells Optuna that a trial stopped early by ASHA is COMPLETE
with its early (e.g. 1-epoch) score, so TPE learns from short trials as if they were final. Here such
trials are told PRUNED (Optuna then ranks them by their last intermediate value, below finished ones),
trials that ended with a failure are told FAIL, and configurations over the parameter budget are
rejected before Tune ever starts them.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from hpo_cls.console import warn
from hpo_cls.errors import SweepError
from hpo_cls.search.space import DefineByRun

__all__ = ["BudgetAwareOptunaSearch"]


def _drop_grid_exhausted_notice(record: logging.LogRecord) -> bool:
    # Optuna's GridSampler calls study.stop() when the grid is used up; outside study.optimize that
    # raises after the trial is already recorded, and Ray logs the harmless exception as a warning.
    return "Study.stop" not in record.getMessage()


class BudgetAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` over a :class:`DefineByRun` space that tells Optuna the truth about each trial.

    ``param_count(config) -> int`` counts the parameters of the model a config would build;
    configurations over ``max_params`` are told FAIL and proposed again (at most ``max_rejections``).
    """

    def __init__(
        self,
        space: DefineByRun,
        *,
        metric: str,
        mode: str,
        sampler: optuna.samplers.BaseSampler,
        max_epochs: int,
        param_count: Callable[[dict[str, Any]], int],
        max_params: int,
        max_rejections: int = 100,
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("ray.tune.search.optuna.optuna_search").addFilter(_drop_grid_exhausted_notice)
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler)
        self._define_by_run = space
        self._max_epochs = max_epochs
        self._param_count = param_count
        self._max_params = max_params
        self._max_rejections = max_rejections
        self.rejected_over_budget = 0
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
            if count <= self._max_params:
                return config
            self.rejected_over_budget += 1
            warn(f"skipped a configuration with {count:,} parameters (max_params {self._max_params:,}): {config}")
            self._ot_study.tell(self._ot_trials.pop(trial_id), state=TrialState.FAIL)
        raise SweepError(
            f"{self._max_rejections} proposals in a row were over max_params={self._max_params:,}; "
            "shrink the search space (backbone, head_hidden) or raise max_params"
        )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        stopped_early = bool(result) and result.get("epoch", self._max_epochs) < self._max_epochs
        failed = error or bool(result and result.get("failure"))
        if not failed and not stopped_early:
            return super().on_trial_complete(trial_id, result, error)
        state = TrialState.FAIL if failed else TrialState.PRUNED
        try:
            self._ot_study.tell(self._ot_trials[trial_id], state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never stop the sweep
            warn(f"could not tell Optuna about trial {trial_id}: {exc}")
        self._completed_trials.add(trial_id)
