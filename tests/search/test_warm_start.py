"""Warm start: an earlier sweep's finished trials, read back from a real MLflow store (written the way a
sweep writes it), are in the new study before its first proposal (early-stopped ones PRUNED with their
epoch scores); those outside the new space are not. The best of them are the sweep's first trials, and TPE
skips its random start-up when they are enough."""

from __future__ import annotations

import dataclasses
import io
import math

import mlflow  # noqa: F401 - imported here first, not by the writer's thread and this one at once
import pytest
from optuna.trial import TrialState

from hpo_cls.cli import flag
from hpo_cls.console import say
from hpo_cls.errors import SweepError
from hpo_cls.search import WARM_START_MEASURED
from hpo_cls.search.samplers import startup_trials
from hpo_cls.search.warm_start import OTHER_SETUP, OUTSIDE_SPACE, first_points, rerun_count, warm_start_trials
from hpo_cls.spec import (
    BudgetConfig,
    Constraint,
    Objective,
    Param,
    SearchConfig,
    SweepSpec,
    TrackingConfig,
    TrialConfig,
    flatten_trial_config,
    parse_spec,
)
from hpo_cls.sweep.tuner import _searcher, _warm_start
from hpo_cls.tracking.history import RecordedTrial, load_finished_trials
from hpo_cls.tracking.runs import end_run_op, open_sweep_run, open_trial_run, param_value
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.writer import MlflowWriter

SPACE = (
    Param("backbone", "choice", choices=("resnet18", "resnet34")),
    Param("mix", "choice", choices=("none", "mixup")),
    Param("mixup_alpha", "uniform", low=0.1, high=0.4, when={"mix": ("mixup",)}),
    Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),
)
FIXED = TrialConfig(batch_size=32, optimizer="sgd")
EPOCHS = 4

# trial id, status, config changes, val_acc per epoch, params_m
OLD_TRIALS = [
    ("a", "completed", dict(backbone="resnet18", lr=0.01), [0.3, 0.4, 0.5, 0.6], 11.2),
    ("b", "completed", dict(backbone="resnet34", mix="mixup", mixup_alpha=0.2, lr=0.02), [0.3, 0.5, 0.6, 0.7], 21.3),
    ("c", "early_stopped", dict(backbone="resnet34", lr=0.05), [0.2, 0.25], 21.3),
    ("d", "failed", dict(backbone="resnet18", lr=0.03), [0.1], 11.2),  # not a finished trial: never loaded
    ("e", "completed", dict(backbone="resnet18", lr=0.5), [0.1, 0.1, 0.1, 0.1], 11.2),  # lr outside the new range
    ("f", "completed", dict(backbone="resnet18", lr=0.01, batch_size=64), [0.5] * 4, 11.2),  # another fixed value
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Sweep ``old-1`` logged with the writer and run ops a sweep uses (read only by the tests)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('warm')}/mlflow.db"
    writer = MlflowWriter(uri, "warm")
    open_sweep_run(writer, "old-1")
    for trial_id, status, changes, history, params_m in OLD_TRIALS:
        config = flatten_trial_config(dataclasses.replace(FIXED, seed=7, **changes))  # another seed: still a point
        open_trial_run(writer, "old-1", trial_id, {**config, "epochs_budget": EPOCHS})
        for epoch, acc in enumerate(history, start=1):
            writer.log_metrics(trial_id, {"val_acc": acc, "params_m": params_m, "latency_ms": 2.0}, step=epoch)
        writer.call(trial_id, end_run_op(status))
    writer.close(timeout=60)
    return uri


def spec_for(uri, objectives=(Objective("val_acc", "max"),), **changes) -> SweepSpec:
    return SweepSpec(name="new", metric=objectives[0].metric, mode=objectives[0].mode, objectives=tuple(objectives),
                     search=SearchConfig(sampler="tpe", seed=0, space=SPACE), fixed=FIXED,
                     tracking=TrackingConfig(uri=uri, experiment="warm"), budget=BudgetConfig(epochs=EPOCHS), **changes)


def test_the_study_holds_the_earlier_trials_and_trains_the_best_first(store):
    spec = spec_for(store)
    out = io.StringIO()
    history, first = _warm_start(spec, ["old-1"], lambda message: say(message, out))
    searcher = _searcher(spec, num_classes=10, sweep_id="new-1", report=lambda message: None, history=history,
                         first=first)
    assert len(history) == 3  # as run_sweep records it (warm_start_trials)
    assert "warm start from old-1: 3 trial(s) (2 skipped: 1 outside the search space, 1 other fixed values" \
        in out.getvalue()
    assert "the first 1 trial(s) train the earlier best configuration(s) again" in out.getvalue()
    # bench/README.md: no measurement over 3 seeds has met the target yet, and a warm-started sweep says so
    assert f"warm start: its benefit in epochs is unproven ({WARM_START_MEASURED})" in out.getvalue()
    trials = [t for t in searcher.study.trials if t.state != TrialState.WAITING]
    assert [t.user_attrs["trial_id"] for t in trials] == ["a", "b", "c"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[0].params == {"backbone": "resnet18", "mix": "none", "lr": 0.01}
    assert trials[1].params["mixup_alpha"] == 0.2 and trials[1].value == 0.7
    # an early-stopped trial is PRUNED with each epoch's score, ranked by its last (as a live early stop)
    assert trials[2].intermediate_values == {1: 0.2, 2: 0.25} and trials[2].value == 0.25

    best, baseline, sampled = (searcher.suggest(f"t{i}") for i in range(3))
    assert best == {"backbone": "resnet34", "mix": "mixup", "mixup_alpha": 0.2, "lr": 0.02}, "b scored best"
    assert baseline == {"backbone": "resnet18", "mix": "none", "lr": 0.05}, "the fixed configuration comes next"
    assert sampled is not None and searcher.study.trials[-1].number == 5


def test_the_first_points_are_the_best_distinct_completed_feasible_trials():
    space = (Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),)
    scored = [("low", "completed", "0.01", 0.5, 1.0), ("top", "completed", "0.02", 0.9, 1.0),
              ("again", "completed", "0.02", 0.8, 1.0),  # the same configuration as "top": enqueued once
              ("stopped", "early_stopped", "0.03", 0.95, 1.0),  # never ran to the end: not rerun
              ("heavy", "completed", "0.04", 0.99, 30.0),  # over the params_m constraint
              ("second", "completed", "0.05", 0.7, 1.0)]
    recorded = [RecordedTrial("old", trial_id, status, {"lr": lr, "epochs_budget": str(EPOCHS)},
                              {"val_acc": acc, "best_val_acc": acc, "params_m": params_m}, {1: acc})
                for trial_id, status, lr, acc, params_m in scored]
    start = warm_start_trials(recorded, space, FIXED, [Objective("val_acc", "max")],
                              [Constraint("params_m", max=15.0)], EPOCHS)
    assert len(start.trials) == 6, "every trial informs the sampler; only the ranking leaves some out"
    rule = ScoreRule("val_acc", "max")
    assert first_points([start], rule, 2) == [{"lr": 0.02}, {"lr": 0.05}]
    assert first_points([start], rule, 5) == [{"lr": 0.02}, {"lr": 0.05}, {"lr": 0.01}]
    assert first_points([start], ScoreRule("val_acc", "min"), 1) == [{"lr": 0.01}]


def test_alternatives_of_one_key_take_the_names_the_live_searcher_suggests():
    spec = parse_spec({"name": "t", "search": {"sampler": "tpe", "space": {
        "optimizer": {"choice": ["sgd", "adamw"]},
        "lr": [{"loguniform": [1.0e-2, 0.3], "when": {"optimizer": "sgd"}},
               {"loguniform": [1.0e-4, 1.0e-2], "when": {"optimizer": "adamw"}}]}}})
    recorded = [RecordedTrial("old", "0", "completed", {"optimizer": "adamw", "lr": "0.001",
                                                        "epochs_budget": str(spec.budget.epochs)}, {"val_acc": 0.5})]
    start = warm_start_trials(recorded, spec.search.space, spec.fixed, spec.objectives, (), spec.budget.epochs)
    assert start.trials[0].params == {"optimizer": "adamw", "lr|optimizer=adamw": 0.001}
    searcher = _searcher(spec, num_classes=10, sweep_id="new-1", report=lambda message: None, history=start.trials,
                         first=first_points([start], ScoreRule(), 1))
    assert searcher.suggest("first") == {"optimizer": "adamw", "lr": 0.001}


@pytest.mark.parametrize(("num_samples", "max_concurrent", "count"), [(16, 2, 2), (50, 4, 4), (8, 4, 1), (1, 1, 1),
                                                                       (64, 16, 8)])
def test_a_warm_start_reruns_the_first_wave_at_most_an_eighth_of_the_sweep(num_samples, max_concurrent, count):
    assert rerun_count(num_samples, max_concurrent) == count


def test_with_enough_earlier_trials_tpe_skips_its_random_start_up():
    """12 earlier trials over lr, only those near 0.01 good: the first proposals of a warm-started TPE study
    are modelled on them (a random draw lands within 2x of 0.01 with probability 0.3; five in a row, 0.24%).
    With fewer earlier trials than its start-up, TPE still draws at random: the draws of a cold study."""
    space = (Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),)
    lrs = [1e-3 * 10 ** (i / 5.5) for i in range(12)]  # 0.001 .. 0.1, evenly on the log scale
    recorded = [RecordedTrial("old", str(i), "completed", {"lr": param_value(lr), "epochs_budget": str(EPOCHS)},
                              {"val_acc": 1.0 - abs(math.log10(lr) + 2)}) for i, lr in enumerate(lrs)]
    search = SearchConfig(sampler="tpe", seed=0, space=space)
    assert startup_trials(search, num_samples=40) == 10 <= len(recorded)
    start = warm_start_trials(recorded, space, FIXED, [Objective("val_acc", "max")], (), EPOCHS)

    def first_proposals(history) -> list[float]:
        proposals = []
        for seed in range(5):
            spec = SweepSpec(name="new", search=dataclasses.replace(search, seed=seed, baseline_first=False),
                             fixed=FIXED, budget=BudgetConfig(epochs=EPOCHS, num_samples=40))
            searcher = _searcher(spec, num_classes=10, sweep_id=f"new-{seed}", report=lambda message: None,
                                 history=history)
            proposals.append(searcher.suggest("first")["lr"])
        return proposals

    warm = first_proposals(start.trials)
    assert all(0.005 <= lr <= 0.02 for lr in warm), warm
    assert first_proposals(start.trials[:5]) == first_proposals(())


def test_multi_objective_warm_start_takes_every_objective_and_constraint(store):
    spec = spec_for(store, objectives=(Objective("val_acc", "max"), Objective("params_m", "min")))
    spec = dataclasses.replace(spec, constraints=(Constraint("params_m", max=15.0),))
    recorded = load_finished_trials(store, "warm", "old-1")
    loaded = warm_start_trials(recorded, SPACE, FIXED, spec.objectives, spec.constraints, EPOCHS)
    a, b, c = loaded.trials
    assert a.values == [0.6, 11.2] and b.values == [0.7, 21.3] and c.values is None
    assert a.constraints["params_m"] < 0 < b.constraints["params_m"]


def test_a_narrower_space_or_another_budget_skips_trials_with_a_count(store):
    narrow = (*SPACE[:3], Param("lr", "loguniform", low=1.5e-2, high=1e-1, log=True))
    recorded = load_finished_trials(store, "warm", "old-1")
    loaded = warm_start_trials(recorded, narrow, FIXED, [Objective("val_acc", "max")], (), EPOCHS)
    assert [t.user_attrs["trial_id"] for t in loaded.trials] == ["b", "c"]
    assert loaded.skipped == {OUTSIDE_SPACE: 2, OTHER_SETUP: 1}
    other_budget = warm_start_trials(recorded, SPACE, FIXED, [Objective("val_acc", "max")], (), EPOCHS + 1)
    assert other_budget.trials == [] and other_budget.skipped == {OTHER_SETUP: 5}


def test_an_unknown_sweep_is_a_clear_error(store):
    with pytest.raises(SweepError) as info:
        load_finished_trials(store, "warm", "no-such-sweep")
    assert info.value.render(flag).startswith("--warm-start no-such-sweep: no such sweep in experiment 'warm'")
