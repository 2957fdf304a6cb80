"""Warm start: an earlier sweep's finished trials, read back from a real MLflow store (written the way a
sweep writes it), are in the new study before its first proposal; those outside the new space are not."""

from __future__ import annotations

import dataclasses
import io

import mlflow  # noqa: F401 - imported here first, not by the writer's thread and this one at once
import pytest
from optuna.trial import TrialState

from hpo_cls.cli import flag
from hpo_cls.console import say
from hpo_cls.errors import SweepError
from hpo_cls.search.warm_start import OTHER_SETUP, OUTSIDE_SPACE, warm_start_trials
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
)
from hpo_cls.sweep.tuner import _searcher, _warm_start
from hpo_cls.tracking.history import load_finished_trials
from hpo_cls.tracking.runs import end_run_op, open_sweep_run, open_trial_run
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
    ("c", "early_stopped", dict(backbone="resnet34", lr=0.05), [0.2], 21.3),
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


def test_the_study_holds_the_earlier_trials_before_its_first_proposal(store):
    spec = spec_for(store)
    searcher = _searcher(spec, num_classes=10, sweep_id="new-1", report=lambda message: None)
    out = io.StringIO()
    assert _warm_start(spec, searcher, ["old-1"], lambda message: say(message, out)) == 3  # as run_sweep reports
    assert "warm start from old-1: 3 trial(s) (2 skipped: 1 outside the search space, 1 other fixed values" \
        in out.getvalue()
    # (trial 0, the enqueued fixed configuration, waits in the study until Tune asks for it)
    trials = [t for t in searcher.study.trials if t.state != TrialState.WAITING]
    assert [t.user_attrs["trial_id"] for t in trials] == ["a", "b", "c"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[0].params == {"backbone": "resnet18", "mix": "none", "lr": 0.01}
    assert trials[1].params["mixup_alpha"] == 0.2 and trials[1].value == 0.7
    assert trials[2].intermediate_values == {1: 0.2} and trials[2].value == 0.2

    config = searcher.suggest("first")  # the new sweep's first proposal comes after them
    assert config is not None and searcher.study.trials[-1].number == 3


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
