"""What Optuna is told about each trial: the known pitfall of Ray's OptunaSearch, and the parameter budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpo_cls.errors import SweepError
from hpo_cls.search.samplers import build_sampler
from hpo_cls.search.searcher import StudySearcher
from hpo_cls.search.space import DefineByRun
from hpo_cls.spec import Objective, Param, SearchConfig, TrialConfig
from hpo_cls.sweep.preflight import ParameterBudget

SPACE = (
    Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),
    Param("backbone", "choice", choices=("resnet18", "wide_resnet101_2")),
)


def make_searcher(param_count=lambda config: 1_000, max_params=10_000, sampler="random"):
    return StudySearcher(
        DefineByRun(SPACE, TrialConfig()), objectives=[Objective("val_acc", "max")],
        sampler=build_sampler(SearchConfig(sampler=sampler, seed=0, space=SPACE), num_samples=8),
        max_epochs=4, param_count=param_count, max_params=max_params,
    )


def run_trial(searcher, trial_id: str, scores: list[float], **complete) -> dict:
    config = searcher.suggest(trial_id)
    for epoch, score in enumerate(scores, start=1):
        searcher.on_trial_result(trial_id, {"val_acc": score, "epoch": epoch, "training_iteration": epoch})
    searcher.on_trial_complete(trial_id, {"val_acc": scores[-1], "epoch": len(scores), **complete.get("extra", {})},
                               error=complete.get("error", False))
    return config


def states(searcher) -> list[TrialState]:
    return [t.state for t in searcher.study.trials]


def test_trial_stopped_early_by_asha_is_pruned_not_complete():
    searcher = make_searcher()
    run_trial(searcher, "a", [0.1])  # stopped after 1 of 4 epochs
    run_trial(searcher, "b", [0.1, 0.2, 0.3, 0.4])
    study = searcher.study
    assert states(searcher) == [TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[0].intermediate_values == {1: 0.1}, "TPE can still rank it by its last score"
    assert study.best_trial.number == 1 and study.best_value == 0.4


def test_failed_trials_are_told_fail():
    searcher = make_searcher()
    run_trial(searcher, "nan", [0.0], extra={"failure": "training loss became nan"})
    run_trial(searcher, "crash", [0.1, 0.2, 0.3, 0.4], error=True)
    assert states(searcher) == [TrialState.FAIL, TrialState.FAIL]


def test_configs_over_the_parameter_budget_are_never_proposed():
    counts = {"resnet18": 11_000_000, "wide_resnet101_2": 126_000_000}
    searcher = make_searcher(param_count=lambda config: counts[config.get("backbone", "resnet18")],
                             max_params=100_000_000)
    proposed = [searcher.suggest(f"t{i}")["backbone"] for i in range(6)]
    assert proposed == ["resnet18"] * 6
    assert searcher.rejected_over_budget > 0
    rejected = [t for t in searcher.study.trials if t.state == TrialState.FAIL]
    assert rejected and all(t.params["backbone"] == "wide_resnet101_2" for t in rejected)


def test_an_impossible_budget_is_a_clear_error():
    searcher = make_searcher(param_count=lambda config: 10**9, max_params=10)
    with pytest.raises(SweepError, match="over max_params"):
        searcher.suggest("t0")


def test_conditional_parameters_only_exist_when_active():
    space = (Param("mix", "choice", choices=("none", "cutmix")),
             Param("cutmix_alpha", "uniform", low=0.5, high=2.0, when={"mix": ("cutmix",)}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    define = DefineByRun(space, TrialConfig())
    for _ in range(12):
        trial = study.ask()
        define(trial)
        assert ("cutmix_alpha" in trial.params) == (trial.params["mix"] == "cutmix")
        study.tell(trial, 0.5)


def test_searcher_survives_a_save_and_restore(tmp_path):
    """Tune pickles the searcher into the experiment state; --resume restores it with its history."""
    budget = ParameterBudget(TrialConfig(), num_classes=10)  # what a sweep passes: picklable, unlike a lambda
    searcher = make_searcher(param_count=budget, max_params=100_000_000, sampler="tpe")
    run_trial(searcher, "a", [0.1, 0.2, 0.3, 0.4])
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = make_searcher(sampler="tpe")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert len(restored.study.trials) == 1
    assert restored.suggest("b") is not None


def test_alternatives_reach_tune_under_their_trial_config_key():
    space = (Param("optimizer", "choice", choices=("adamw", "sgd")),
             Param("lr", "loguniform", low=1e-4, high=1e-2, log=True, when={"optimizer": ("adamw",)},
                   label="lr|optimizer=adamw"),
             Param("lr", "loguniform", low=0.01, high=0.2, log=True, when={"optimizer": ("sgd",)},
                   label="lr|optimizer=sgd"))
    searcher = StudySearcher(
        DefineByRun(space, TrialConfig()), metric="val_acc", mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=4, param_count=lambda config: 1, max_params=10)
    configs = [searcher.suggest(f"t{i}") for i in range(10)]
    assert all(set(c) == {"optimizer", "lr"} for c in configs), "Tune and the trainable see config keys only"
    assert all((c["lr"] >= 0.01) == (c["optimizer"] == "sgd") for c in configs), "each from its own range"
    assert {t.params.keys() - {"optimizer"} == {f"lr|optimizer={t.params['optimizer']}"} for t in searcher.study.trials} == {True}
