"""What Optuna is told about each trial (early stops PRUNED, not COMPLETE with an early score; failures FAIL),
the parameter budget, and the study across Tune's save and restore, in memory and in an RDB."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hpo_cls.errors import SweepError
from hpo_cls.search.samplers import build_sampler
from hpo_cls.search.searcher import StudySearcher
from hpo_cls.search.optuna_space import DefineByRun
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
    config = searcher.suggest("b")
    searcher.on_trial_result("b", {"val_acc": 0.2, "epoch": 1})
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = make_searcher(sampler="tpe")
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert [t.number for t in restored.study.trials] == [t.number for t in searcher.study.trials]
    restored.on_trial_result("b", {"val_acc": 0.3, "epoch": 2})  # a running trial goes on as the same trial
    restored.on_trial_complete("b", {"val_acc": 0.5, "epoch": 4})
    (b,) = [t for t in restored.study.trials if t.user_attrs.get("tune_trial_id") == "b"]
    assert b.params["lr"] == config["lr"] and b.intermediate_values == {1: 0.2, 2: 0.3} and b.value == 0.5
    assert restored.suggest("c") is not None


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


def test_a_pruned_trial_carries_every_epoch_it_reported():
    searcher = make_searcher()
    run_trial(searcher, "a", [0.1, 0.3])  # ASHA stopped it after 2 of 4 epochs
    (trial,) = searcher.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.1, 2: 0.3}


def make_rdb_searcher(tmp_path, sampler="random"):
    return StudySearcher(
        DefineByRun(SPACE, TrialConfig()), objectives=[Objective("val_acc", "max")],
        sampler=build_sampler(SearchConfig(sampler=sampler, seed=0, space=SPACE), num_samples=8),
        max_epochs=4, param_count=ParameterBudget(TrialConfig(), num_classes=10), max_params=10**12,  # none rejected
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="sweep-1")


def restored_from(path):
    """What Tune does on --resume: unpickle the searcher of the experiment, then restore its last state."""
    restored = make_searcher()
    restored.restore(str(path))
    return restored


def test_a_study_in_an_rdb_is_reloaded_not_unpickled_and_every_trial_stays_once(tmp_path):
    searcher = make_rdb_searcher(tmp_path)
    run_trial(searcher, "done", [0.1, 0.2, 0.3, 0.4])
    resumed_config = searcher.suggest("resumed")
    searcher.on_trial_result("resumed", {"val_acc": 0.2, "epoch": 1})
    told_config = searcher.suggest("told")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last snapshot
    # After the snapshot, before the crash: "told" ends, and "lost" is asked but Tune never records it.
    searcher.on_trial_result("told", {"val_acc": 0.5, "epoch": 1})
    searcher.on_trial_complete("told", {"val_acc": 0.6, "epoch": 4})
    lost_config = searcher.suggest("lost")
    assert len(searcher.study.trials) == 4

    restored = restored_from(tmp_path / "searcher.pkl")
    assert restored.study is not searcher.study and len(restored.study.trials) == 4, "read from the database"
    # Tune resumes "resumed" and "told" from their checkpoints; "lost" is proposed again as a new Tune trial.
    restored.on_trial_result("resumed", {"val_acc": 0.2, "epoch": 1})  # an epoch repeated from its checkpoint
    restored.on_trial_result("resumed", {"val_acc": 0.35, "epoch": 2})
    restored.on_trial_complete("resumed", {"val_acc": 0.45, "epoch": 4})
    restored.on_trial_complete("told", {"val_acc": 0.9, "epoch": 4})
    assert restored.suggest("lost-again") == lost_config, "the same Optuna trial, handed out again"
    restored.on_trial_complete("lost-again", {"val_acc": 0.5, "epoch": 4})

    study = optuna.load_study(study_name="sweep-1", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = study.trials
    assert [t.user_attrs["tune_trial_id"] for t in trials] == ["done", "resumed", "told", "lost-again"]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[1].params == {"lr": resumed_config["lr"], "backbone": resumed_config["backbone"]}
    assert trials[1].intermediate_values == {1: 0.2, 2: 0.35} and trials[1].value == 0.45
    assert trials[2].params["lr"] == told_config["lr"] and trials[2].value == 0.6, "the first result stays"
    assert restored.suggest("next") is not None and len(study.trials) == 5


def test_a_new_sweep_never_takes_over_a_study_of_the_same_name(tmp_path):
    make_rdb_searcher(tmp_path)
    with pytest.raises(SweepError, match="already holds a study named 'sweep-1'"):
        make_rdb_searcher(tmp_path)


def test_a_used_up_grid_stops_nothing_and_every_trial_is_told(capsys):
    """Optuna's GridSampler calls Study.stop() once every point is done, which raises outside optimize()."""
    space = (Param("backbone", "choice", choices=("resnet18", "resnet34")),)
    searcher = StudySearcher(DefineByRun(space, TrialConfig()), metric="val_acc", mode="max",
                             sampler=build_sampler(SearchConfig(sampler="grid", space=space), num_samples=2),
                             max_epochs=1, param_count=lambda config: 1, max_params=10)
    for i in range(3):  # one more than the grid: Tune's num_samples decides when the sweep ends
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.5, "epoch": 1})
    assert states(searcher) == [TrialState.COMPLETE] * 3
    assert {t.params["backbone"] for t in searcher.study.trials[:2]} == {"resnet18", "resnet34"}
    assert "could not tell Optuna" not in capsys.readouterr().err
