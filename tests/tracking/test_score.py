"""hpo_cls.tracking.score: every reader ranks a sweep's trials by the sweep's own metric and mode. A
``metric: val_loss, mode: min`` sweep, logged in a real MLflow store the way its trials log it, is
promoted, listed by ``hpo-cls sweeps`` and reported lowest loss first."""

from __future__ import annotations

import dataclasses

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from hpo_cls.errors import PromoteError
from hpo_cls.promote.select import load_candidates, select_top_runs
from hpo_cls.promote.sources import select_runs
from hpo_cls.spec import Objective, TrialConfig, flatten_trial_config
from hpo_cls.tracking.report import render_report
from hpo_cls.tracking.report_data import load_sweep_data
from hpo_cls.tracking.runs import (
    PARENT_TAG,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    SWEEP_NAME_TAG,
    TRIAL_ID_TAG,
    objectives_param,
    param_value,
)
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.store import MlflowStore, find_sweep, list_sweeps, sweeps_table

T0 = 1_700_000_000_000

# trial id, status, per-epoch (val_loss, val_acc), whether it logged best_val_loss (runs from before it was
# logged are scored from their val_loss history). Accuracy and loss disagree on purpose: by best_val_acc
# the order would be acc-first, high-loss, low-loss.
LOSS_TRIALS = [
    ("high-loss", "completed", [(1.9, 0.50), (1.2, 0.60)], True),
    ("acc-first", "completed", [(2.0, 0.70), (1.5, 0.80)], True),
    ("low-loss", "completed", [(1.0, 0.40), (0.4, 0.45)], True),
    ("old-run", "completed", [(0.9, 0.30), (0.6, 0.35), (0.7, 0.30)], False),  # best loss 0.6, from history
    ("stopped", "early_stopped", [(0.1, 0.20)], True),
    ("broken", "failed", [(0.05, 0.10)], True),
]


def _log_loss_sweep(client: MlflowClient, experiment_id: str, sweep_id: str = "loss-1") -> dict[str, str]:
    """A parent run and trial runs tagged, parametrised and logged as a ``val_loss``/``min`` sweep logs them."""
    parent = client.create_run(experiment_id, start_time=T0, run_name=sweep_id,
                               tags={SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep", SWEEP_NAME_TAG: "loss"}).info.run_id
    params = {"metric": "val_loss", "objectives": objectives_param((Objective("val_loss", "min"),)),
              "epochs": 2, "searched": "lr", "data_root": "/nowhere", "image_size": 16}
    client.log_batch(parent, params=[Param(k, param_value(v)) for k, v in params.items()])
    ids = {}
    for i, (trial_id, status, epochs, with_best) in enumerate(LOSS_TRIALS, 1):
        run_id = client.create_run(experiment_id, start_time=T0 + i, run_name=trial_id, tags={
            SWEEP_ID_TAG: sweep_id, TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial", PARENT_TAG: parent,
            STATUS_TAG: status}).info.run_id
        config = {**flatten_trial_config(TrialConfig(lr=0.01 * i)), "epochs_budget": 2}
        metrics = []
        for step, (loss, acc) in enumerate(epochs, 1):
            metrics += [Metric("val_loss", loss, T0 + i, step), Metric("val_acc", acc, T0 + i, step),
                        Metric("best_val_acc", max(a for _, a in epochs[:step]), T0 + i, step)]
            if with_best:
                metrics.append(Metric("best_val_loss", min(v for v, _ in epochs[:step]), T0 + i, step))
        client.log_batch(run_id, metrics=metrics, params=[Param(k, param_value(v)) for k, v in config.items()])
        ids[trial_id] = run_id
    return ids


@pytest.fixture
def loss_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("loss", artifact_location=(tmp_path / "mlruns").as_uri())
    return uri, client, _log_loss_sweep(client, experiment_id)


def test_a_val_loss_sweep_promotes_its_lowest_loss_runs(loss_store):
    uri, client, ids = loss_store
    selection = select_runs(MlflowStore(uri, client), experiment="loss", sweeps=["loss-1"], top=2)
    assert [(c.trial_id, c.score) for c in selection.selected] == [("low-loss", 0.4), ("old-run", 0.6)]
    assert selection.selected[0].run_id == ids["low-loss"]
    with_early = select_runs(MlflowStore(uri, client), experiment="loss", sweeps=["loss-1"], top=1,
                             include_early_stopped=True)
    assert [c.trial_id for c in with_early.selected] == ["stopped"], "a failed run never qualifies"


def test_sweeps_lists_a_val_loss_sweep_by_its_lowest_loss(loss_store, capsys):
    uri, client, _ = loss_store
    (listing,) = list_sweeps(client, "loss")
    assert listing.best_score == pytest.approx(0.1), "the early-stopped trial's loss counts, the failed one's not"
    header, _, row = sweeps_table([listing]).splitlines()
    assert header.split() == ["sweep", "spec", "started", "duration", "trials", "metric", "best", "best", "trial",
                              "parent", "run", "promoted"]
    assert "val_loss:min" in row and "0.1000" in row


def test_the_report_ranks_a_val_loss_sweep_lowest_loss_first(loss_store):
    uri, client, _ = loss_store
    data = load_sweep_data(client, find_sweep(client, "loss", "loss-1"), "loss", per_class_top=0)
    assert data.metric == "val_loss" and data.mode == "min"
    assert [t.trial_id for t in data.ranked()] == ["stopped", "low-loss", "old-run", "high-loss", "acc-first"]
    assert [t.best for t in data.ranked()][:3] == [0.1, 0.4, 0.6]
    assert "best val_loss (min) <b>0.1000</b>" in render_report(data, uri)


def test_the_rule_is_the_sweeps_first_objective_or_its_metric():
    assert ScoreRule.of_sweep({"objectives": "val_loss:min,params_m:min"}) == ScoreRule("val_loss", "min")
    assert ScoreRule.of_sweep({"metric": "val_loss"}) == ScoreRule("val_loss", "min")
    assert ScoreRule.of_sweep({}) == ScoreRule("val_acc", "max"), "sweeps from before metric was logged"


def test_a_run_is_scored_by_its_logged_best_else_its_history():
    rule = ScoreRule("val_loss", "min")
    assert rule.score({"best_val_loss": 0.3}, lambda: pytest.fail("history read though best is logged")) == 0.3
    assert rule.score({"val_loss": 0.9}, lambda: [0.9, 0.5, float("nan"), 0.7]) == 0.5
    assert rule.score({}) is None
    assert sorted([0.2, 0.9, 0.5], key=rule.key) == [0.2, 0.5, 0.9]
    assert sorted([0.2, 0.9, 0.5], key=ScoreRule().key) == [0.9, 0.5, 0.2]


def test_candidates_of_sweeps_ranked_by_different_metrics_are_not_pooled(loss_store):
    uri, client, _ = loss_store
    store = MlflowStore(uri, client)
    loss = load_candidates(store, store.find_sweep("loss", "loss-1"))
    accuracy = dataclasses.replace(loss[0], rule=ScoreRule(), sweep_id="acc-1")
    with pytest.raises(PromoteError, match="rank their runs by different metrics"):
        select_top_runs([*loss, accuracy], 1)


@pytest.mark.parametrize("mode, order", [("max", ["c-best", "c-old", "c-new", "e-best", "e-low", "failed"]),
                                         ("min", ["c-old", "c-new", "c-best", "e-low", "e-best", "failed"])])
def test_checkpoints_are_kept_in_promotes_order_completed_trials_first(mode, order):
    """(status, score, start time) per run: completed runs by score, the earlier first on a tie; then
    early-stopped ones, however well they scored; then runs without a score."""
    runs = {"e-best": ("early_stopped", 0.9, 1), "c-old": ("completed", 0.5, 1), "c-new": ("completed", 0.5, 2),
            "c-best": ("completed", 0.7, 3), "e-low": ("early_stopped", 0.1, 4), "failed": ("failed", None, 0)}
    rule = ScoreRule("val_acc", mode)
    ranked = sorted(runs, key=lambda r: rule.keep_key(runs[r][0], runs[r][1], runs[r][2], r))
    assert ranked == order
