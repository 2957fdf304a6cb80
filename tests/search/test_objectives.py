"""Several objectives and constraints: the Pareto front, and what a multi-objective study is told."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState

from hpo_cls.search.objective_values import (
    dominates,
    objective_values,
    pareto_front,
    violations,
)
from hpo_cls.search.samplers import build_sampler
from hpo_cls.search.searcher import StudySearcher
from hpo_cls.search.optuna_space import DefineByRun
from hpo_cls.spec import Constraint, Objective, Param, SearchConfig, TrialConfig

ACC_AND_SIZE = [Objective("val_acc", "max"), Objective("params_m", "min")]
SPACE = (
    Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),
    Param("backbone", "choice", choices=("resnet18", "wide_resnet101_2")),
)
COUNTS = {"resnet18": 11_000_000, "wide_resnet101_2": 126_000_000}


def test_pareto_front_keeps_the_non_dominated_points_and_ties():
    points = [(0.9, 20.0), (0.8, 11.0), (0.7, 11.0), (0.9, 25.0), (0.8, 11.0)]
    assert pareto_front(points, ["max", "min"]) == [0, 1, 4]
    assert dominates((0.9, 20.0), (0.9, 25.0), ["max", "min"]) and not dominates((0.8, 11.0), (0.8, 11.0), ["max", "min"])


def test_values_and_violations_skip_what_is_missing_or_not_finite():
    assert objective_values({"val_acc": 0.5, "params_m": 11}, ACC_AND_SIZE) == [0.5, 11.0]
    assert objective_values({"val_acc": 0.5, "params_m": float("nan")}, ACC_AND_SIZE) is None
    assert violations({"params_m": 20, "latency_ms": None},
                      [Constraint("params_m", max=15), Constraint("latency_ms", max=5)]) == {"params_m": 5.0}


def make_searcher(sampler="random", constraints=(), objectives=ACC_AND_SIZE, num_samples=8):
    return StudySearcher(
        DefineByRun(SPACE, TrialConfig()), objectives=objectives,
        sampler=build_sampler(SearchConfig(sampler=sampler, seed=0, space=SPACE), num_samples=num_samples),
        max_epochs=4, param_count=lambda config: COUNTS[config["backbone"]], max_params=10**9,
        constraints=constraints,
    )


def finish(searcher, trial_id: str, epochs: int, **metrics) -> dict:
    config = searcher.suggest(trial_id)
    result = {"val_acc": 0.5, "params_m": COUNTS[config["backbone"]] / 1e6, "latency_ms": 1.0, **metrics}
    for epoch in range(1, epochs + 1):
        searcher.on_trial_result(trial_id, {**result, "epoch": epoch, "training_iteration": epoch})
    searcher.on_trial_complete(trial_id, {**result, "epoch": epochs})
    return config


def test_multi_objective_study_is_told_every_value_and_pruned_trials_without_values():
    searcher = make_searcher()
    finish(searcher, "full", 4, val_acc=0.7)
    finish(searcher, "stopped", 1, val_acc=0.2)  # ASHA stopped it after 1 of 4 epochs
    first, second = searcher.study.trials
    assert len(searcher.study.directions) == 2
    assert (first.state, first.values[0]) == (TrialState.COMPLETE, 0.7) and first.values[1] in (11.0, 126.0)
    assert (second.state, second.values) == (TrialState.PRUNED, None)


def test_a_trial_without_an_objective_metric_is_told_fail(capsys):
    searcher = make_searcher()
    config = searcher.suggest("a")
    searcher.on_trial_complete("a", {"val_acc": 0.5, "epoch": 4})
    assert config and searcher.study.trials[0].state == TrialState.FAIL
    assert "did not report val_acc, params_m" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_each_sampler_runs_a_multi_objective_sweep(sampler):
    searcher = make_searcher(sampler)
    for i in range(12):
        finish(searcher, f"t{i}", 4 if i % 3 else 1, val_acc=0.1 * (i % 7))
    assert sum(t.state == TrialState.COMPLETE for t in searcher.study.trials) == 8


def test_configurations_outside_a_static_constraint_are_learned_not_trained():
    """params_m is known at the proposal: violating configs are PRUNED with their violation, never returned."""
    searcher = make_searcher("tpe", constraints=[Constraint("params_m", max=50)], num_samples=40)
    proposed = [finish(searcher, f"t{i}", 4, val_acc=0.5 + 0.01 * i)["backbone"] for i in range(30)]
    assert set(proposed) == {"resnet18"}
    infeasible = [t for t in searcher.study.trials if t.state == TrialState.PRUNED]
    assert infeasible and len(infeasible) == searcher.rejected_infeasible
    assert all(t.params["backbone"] == "wide_resnet101_2" and t.constraints == {"params_m": 76.0} for t in infeasible)
    assert all(t.constraints["params_m"] < 0 for t in searcher.study.trials if t.state == TrialState.COMPLETE)
    # TPE reads the violations: after its 10 random start-up trials it proposes the infeasible model less often.
    numbers = [t.number for t in infeasible]
    early = sum(n < 15 for n in numbers) / 15
    late = sum(n >= 15 for n in numbers) / max(1, len(searcher.study.trials) - 15)
    assert late < early, (early, late)


def test_measured_constraints_are_set_when_the_trial_ends():
    searcher = make_searcher(constraints=[Constraint("latency_ms", max=5), Constraint("params_m", max=500)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a constraint is set twice: each is set once
        finish(searcher, "slow", 4, latency_ms=9.0)
    (trial,) = searcher.study.trials
    assert trial.state == TrialState.COMPLETE and trial.constraints["latency_ms"] == 4.0
    assert trial.constraints["params_m"] < 0 and trial.user_attrs["params_m"] in (11.0, 126.0)


def test_single_objective_keeps_intermediate_values_for_pruned_trials():
    searcher = make_searcher(objectives=[Objective("val_acc", "max")])
    finish(searcher, "a", 1, val_acc=0.3)
    assert searcher.study.trials[0].state == TrialState.PRUNED
    assert searcher.study.trials[0].value == 0.3, "Optuna ranks it by its last intermediate value"
    assert isinstance(searcher.study, optuna.Study) and len(searcher.study.directions) == 1
