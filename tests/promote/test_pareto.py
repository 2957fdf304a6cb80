"""promote --pareto: members from the sweep's Pareto front within a parameter or latency budget, read
from a real MLflow store the way a sweep records it."""

from __future__ import annotations

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from hpo_cls.cli import flag, main
from hpo_cls.errors import PromoteError
from hpo_cls.promote.pareto import select_pareto
from hpo_cls.promote.select import load_candidates
from hpo_cls.spec import TrialConfig, flatten_trial_config
from hpo_cls.tracking.runs import (
    PARENT_TAG,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    SWEEP_NAME_TAG,
    TRIAL_ID_TAG,
    param_value,
)
from hpo_cls.tracking.store import MlflowStore

# trial id, status, best val_acc, params_m, latency_ms
TRIALS = [
    ("big", "completed", 0.90, 21.3, 4.0),
    ("mid", "completed", 0.85, 11.2, 2.0),
    ("dominated", "completed", 0.80, 11.3, 2.5),  # worse and larger than "mid"
    ("tiny", "completed", 0.70, 2.7, 1.0),
    ("early", "early_stopped", 0.95, 2.0, 0.5),  # only with --include-early-stopped
]


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("pareto", artifact_location=(tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment_id, run_name="s1",
                               tags={SWEEP_ID_TAG: "s1", ROLE_TAG: "sweep", SWEEP_NAME_TAG: "s"}).info.run_id
    client.log_batch(parent, params=[Param("objectives", "val_acc:max,params_m:min"), Param("epochs", "2"),
                                     Param("searched", "lr")])
    for i, (trial_id, status, acc, params_m, latency) in enumerate(TRIALS):
        run_id = client.create_run(experiment_id, start_time=1000 + i, tags={
            SWEEP_ID_TAG: "s1", TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial", PARENT_TAG: parent, STATUS_TAG: status,
        }).info.run_id
        config = flatten_trial_config(TrialConfig(lr=0.01 * (i + 1)))
        client.log_batch(run_id, params=[Param(k, param_value(v)) for k, v in config.items()], metrics=[
            Metric(name, value, 0, 1) for name, value in
            (("val_acc", acc), ("best_val_acc", acc), ("params_m", params_m), ("latency_ms", latency))])
    return uri, client


def pick(client, top, **budget):
    store = MlflowStore(client.tracking_uri, client)
    sweep = store.find_sweep("pareto", "s1")
    return [c.trial_id for c in select_pareto(sweep, load_candidates(store, sweep), top, **budget)]


def test_the_front_is_ranked_by_accuracy_and_never_holds_a_dominated_run(store):
    _, client = store
    assert pick(client, 3) == ["big", "mid", "tiny"]
    assert pick(client, 1, include_early_stopped=True) == ["early"]


def test_a_parameter_budget_keeps_only_members_under_it(store):
    _, client = store
    assert pick(client, 2, max_params=15e6) == ["mid", "tiny"]
    assert pick(client, 1, max_params=5e6) == ["tiny"]


def test_a_latency_budget_adds_latency_to_the_front(store):
    _, client = store
    assert pick(client, 1, max_latency_ms=2.2) == ["mid"]


def test_too_small_a_front_is_a_clear_error(store):
    _, client = store
    with pytest.raises(PromoteError) as info:
        pick(client, 3, max_params=15e6)
    message = info.value.render(flag)
    assert "has 2 member(s)" in message and "lower --top or relax --max-params / --max-latency-ms" in message


def test_cli_latency_budget_without_pareto_is_one_error_line(store, capsys):
    """--max-params alone is the ensemble's budget; a latency budget only means something on the front or for a
    greedy ensemble."""
    uri, _ = store
    assert main(["promote", "--top", "1", "--max-latency-ms", "5", "--tracking-uri", uri,
                 "--experiment", "pareto"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --max-latency-ms bounds members from the Pareto front or a greedy ensemble: add "
                           "--pareto or --select greedy")
