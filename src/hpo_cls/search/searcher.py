"""The sweep's searcher: Tune's public ``Searcher`` API over an Optuna study it owns (``ask`` / ``tell``).

What Optuna is told about each trial:

- a trial ASHA stopped early is PRUNED, never COMPLETE with its early (e.g. 1-epoch) score, so TPE does
  not learn from short trials as if they were final; each epoch's value was reported to it
  (``Trial.report``), so Optuna ranks it by its last one. A multi-objective study takes no intermediate
  values: there such trials are PRUNED without values;
- a trial that failed (an error, or a ``failure`` in its last result) is FAIL;
- a configuration over the parameter budget is FAIL and proposed again, before Tune ever starts it.

Constraints are Optuna trial constraints (``Trial.set_constraint``): a constraint on a cost the config
determines (``params_m``, ``flops_g``) is set when the configuration is proposed, and a violating one is
told PRUNED with its violation instead of being trained, so TPE learns where the infeasible region is;
constraints on measured metrics (latency, accuracy) are set from the trial's last result when it ends.

The study lives in memory (pickled with the searcher into Tune's experiment state) or in an RDB
(``search.storage``, :mod:`hpo_cls.search.storage`). With an RDB the pickled searcher holds only where
the study is and which Tune trial is which Optuna trial; unpickled, it loads the study again. Optuna's
cached RDB storage would pickle its cache of trials, which is stale by the time Tune restores it.
Restored from Tune's last snapshot after a driver crash, the study holds every trial once:

- a trial Tune resumes goes on as the same Optuna trial (its handle is made again from its number);
  if it was told after the snapshot, the study keeps that result and the repeated end is ignored;
- a trial asked after the snapshot and still RUNNING (Tune forgot it, or never started it) is handed
  out again by the next proposals instead of a new ``ask``: the same Optuna trial, the same parameters;
- a trial told after the snapshot that Tune forgot keeps its result (it was trained); Tune proposes
  another trial in its place.
"""

from __future__ import annotations

import math
import pickle
import time
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpo_cls.console import warn
from hpo_cls.errors import SweepError
from hpo_cls.search.objective_values import objective_values, violations
from hpo_cls.search.optuna_space import DefineByRun
from hpo_cls.spec import Constraint, Objective

__all__ = ["StudySearcher", "TUNE_TRIAL_ID"]

TUNE_TRIAL_ID = "tune_trial_id"  # the user attribute naming a study trial's Tune trial (optuna-dashboard shows it)


class StudySearcher(Searcher):
    """Proposes Tune trials from an Optuna study over a :class:`DefineByRun` space.

    ``objectives``: one (a single-objective study) or more (multi-objective, Optuna's sampler chooses
    how); ``metric``/``mode`` are the one-objective shorthand. ``param_count(config) -> int`` counts the
    parameters of the model a config would build; configurations over ``max_params`` are told FAIL and
    proposed again (at most ``max_rejections`` in a row). ``static_costs(config) -> {metric: value}`` adds
    config-determined costs besides ``params_m`` (``flops_g``) for the constraints that need them.
    ``history``: finished trials of earlier sweeps the study holds before its first proposal (warm start);
    ``first``: parameters of the first trials to enqueue (``Study.enqueue_trial``), e.g. the best of them;
    ``baseline``: parameters of a trial enqueued after those (unless one of them), e.g. the spec's fixed
    configuration. ``storage``: an RDB URL, or None for a study in memory; ``study_name`` names the study
    in it (created here, never taken over: a sweep resumes through :meth:`restore`).
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
        history: Sequence[optuna.trial.FrozenTrial] = (),
        first: Sequence[dict[str, Any]] = (),
        metric: str | None = None,
        mode: str | None = None,
        storage: str | None = None,
        study_name: str | None = None,
    ):
        if not objectives:  # the single-objective shorthand
            objectives = (Objective(metric or "val_acc", mode or "max"),)
        if storage is not None and not study_name:
            raise ValueError("a study in an RDB storage needs a study_name")  # a bug of the caller
        metrics, modes = [o.metric for o in objectives], [o.mode for o in objectives]
        single = len(objectives) == 1
        super().__init__(metric=metrics[0] if single else metrics, mode=modes[0] if single else modes)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._objectives = tuple(objectives)
        self._constraints = tuple(constraints)
        self._static_costs = static_costs
        self._space = space
        self._max_epochs = max_epochs
        self._param_count = param_count
        self._max_params = max_params
        self._max_rejections = max_rejections
        self._sampler = sampler
        self._storage_url = storage
        self.rejected_over_budget = 0
        self.rejected_infeasible = 0
        self.suggest_seconds = 0.0  # time spent proposing (Optuna + parameter counting), for the summary
        self.suggestions = 0
        self._storage = optuna.storages.RDBStorage(storage) if storage else optuna.storages.InMemoryStorage()
        try:
            self._study = optuna.create_study(
                storage=self._storage, sampler=sampler, pruner=optuna.pruners.NopPruner(), study_name=study_name,
                directions=["maximize" if o.mode == "max" else "minimize" for o in objectives])
        except optuna.exceptions.DuplicatedStudyError:
            raise SweepError(f"search.storage already holds a study named {study_name!r}; name the sweep "
                             "differently ({name}) or resume it ({resume})") from None
        self._study_name = self._study.study_name
        self._study.add_trials(history)
        for params in [*first, *([baseline] if baseline and baseline not in first else [])]:
            self._study.enqueue_trial(params)
        self._live: dict[str, optuna.Trial] = {}  # Tune trial id -> the Optuna trial it trains, until told
        self._reported: dict[str, int] = {}  # Tune trial id -> the last epoch reported to its Optuna trial
        self._reclaimable: list[int] = []  # numbers of RUNNING trials no Tune trial has (after a restore)

    @property
    def study(self) -> optuna.Study:
        return self._study

    # -- Tune's Searcher API ------------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | None:
        start = time.perf_counter()
        try:
            return self._suggest_within_budget(trial_id)
        finally:
            self.suggest_seconds += time.perf_counter() - start
            self.suggestions += 1

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self._live.get(trial_id)
        if trial is None or len(self._objectives) > 1:  # Optuna refuses intermediate values of several objectives
            return
        value, epoch = result.get(self._objectives[0].metric), result.get("epoch")
        if epoch is None or not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            return
        if int(epoch) > self._reported.get(trial_id, 0):  # a trial resumed from a checkpoint repeats epochs
            trial.report(float(value), step=int(epoch))
            self._reported[trial_id] = int(epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self._live.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        if trial is None:  # told already (or before a restore)
            return
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
        self._tell(trial, values if state == TrialState.COMPLETE else None, state, trial_id)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            restored = pickle.load(file)
        self.__dict__.update(restored.__dict__)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_live", "_reported", "_storage", "_study", "_reclaimable")}
        state["_live_numbers"] = {trial_id: trial.number for trial_id, trial in self._live.items()}
        if self._storage_url is None:  # the study is the pickle's to keep
            state["_storage"], state["_study"] = self._storage, self._study
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        live_numbers = state.pop("_live_numbers")
        self.__dict__.update(state)
        if self._storage_url is not None:
            self._storage = optuna.storages.RDBStorage(self._storage_url)
            self._study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                            sampler=self._sampler, pruner=optuna.pruners.NopPruner())
        self._reattach(live_numbers)

    # -- proposing ------------------------------------------------------------------------------------

    def _suggest_within_budget(self, trial_id: str) -> dict | None:
        for _ in range(self._max_rejections):
            trial = self._next_trial()
            self._space(trial)
            config = self._space.config_keys(trial.params)  # Optuna names back to trial-config keys
            count = self._param_count(config)
            if count > self._max_params:
                self.rejected_over_budget += 1
                warn(f"skipped a configuration with {count:,} parameters (max_params {self._max_params:,}): {config}")
                self._tell(trial, None, TrialState.FAIL, trial_id)
                continue
            costs = {"params_m": count / 1e6, **(self._static_costs(config) if self._static_costs else {})}
            for name, value in costs.items():
                trial.set_user_attr(name, value)
            violated = {k: v for k, v in self._set_constraints(trial, costs).items() if v > 0}
            if violated:
                self.rejected_infeasible += 1
                warn(f"skipped a configuration outside the constraints ({_describe(violated, costs)}): {config}")
                self._tell(trial, None, TrialState.PRUNED, trial_id)
                continue
            trial.set_user_attr(TUNE_TRIAL_ID, trial_id)
            self._live[trial_id] = trial
            return config
        raise SweepError(
            f"{self._max_rejections} proposals in a row were over max_params={self._max_params:,} or outside the "
            "constraints; shrink the search space (backbone, head_hidden) or relax max_params and the constraints"
        )

    def _next_trial(self) -> optuna.Trial:
        """A RUNNING trial a restore found without a Tune trial (its parameters, suggested again, stay
        what they were), else a new one."""
        while self._reclaimable:
            number = self._reclaimable.pop(0)
            if self._study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
                return self._handle(number)
        return self._study.ask()

    def _set_constraints(self, trial: optuna.Trial, values: dict[str, Any]) -> dict[str, float]:
        """Set the constraints whose metric ``values`` holds; return their violations."""
        found = violations(values, self._constraints)
        for metric, violation in found.items():
            trial.set_constraint(metric, violation)
        return found

    def _tell(self, trial: optuna.Trial, values: list[float] | None, state: TrialState, trial_id: str) -> None:
        try:
            self._study.tell(trial, values, state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna refuses e.g. a second tell; never stop the sweep
            # Optuna's GridSampler calls Study.stop() when the grid is used up, which raises outside
            # Study.optimize after the trial is recorded: nothing is lost then.
            if "Study.stop" not in str(exc):
                warn(f"could not tell Optuna about trial {trial_id}: {exc}")

    # -- after unpickling -----------------------------------------------------------------------------

    def _reattach(self, live_numbers: dict[str, int]) -> None:
        """Handles for the Tune trials still running at the snapshot; RUNNING trials none of them has
        are handed out again by :meth:`_next_trial`. Reads the study, changes nothing in it."""
        trials = self._study.get_trials(deepcopy=False)
        self._live = {trial_id: self._handle(number) for trial_id, number in live_numbers.items()
                      if trials[number].state == TrialState.RUNNING}
        self._reported = {trial_id: max(trials[self._live[trial_id].number].intermediate_values, default=0)
                          for trial_id in self._live}
        self._reclaimable = [t.number for t in trials
                             if t.state == TrialState.RUNNING and t.number not in live_numbers.values()]

    def _handle(self, number: int) -> optuna.Trial:
        """The ``optuna.Trial`` of a RUNNING trial of the study, by its number."""
        study_id = self._storage.get_study_id_from_name(self._study_name)
        return optuna.Trial(self._study, self._storage.get_trial_id_from_study_id_trial_number(study_id, number))


def _describe(violated: dict[str, float], values: dict[str, Any]) -> str:
    return ", ".join(f"{metric} {values[metric]:.4g} misses its bound by {v:.4g}" for metric, v in violated.items())
