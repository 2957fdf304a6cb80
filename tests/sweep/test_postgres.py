"""MLflow on PostgreSQL, as the docker stack runs it: an `mlflow server` on a throw-away PostgreSQL cluster
with proxied artifacts (conftest.mlflow_on_postgres, shared by the session; each test its own experiment).
Faults are triggered by progress (epochs in Tune's result.json files) and add a ``faults:`` figure line."""

from __future__ import annotations

import shutil

import pytest
from processes import kill_tree
from sweep_helpers import (
    epochs_reported,
    hpo_cls,
    make_images,
    metric_points,
    start_sweep,
    sweep_output,
    sweep_runs,
    wait_for,
    write_spec,
)

from hpo_cls.spec import COST_METRICS
from hpo_cls.sweep.callbacks import METRIC_KEYS

pytestmark = [pytest.mark.ray, pytest.mark.postgres]


def _spec(tmp_path, uri: str, experiment: str, **budget):
    data = make_images(tmp_path / "data", train=16, val=4)
    return write_spec(tmp_path / "spec.yaml", data, tracking={"uri": uri, "experiment": experiment},
                      budget={"epochs": 4, "num_samples": 2, "max_concurrent": 2, **budget})


def _points(epochs: int) -> int:
    """A trial's metric points: each per-epoch metric every epoch, each cost once."""
    return epochs * (len(METRIC_KEYS) - len(COST_METRICS)) + len(COST_METRICS)


def _one_run_per_trial(uri: str, experiment: str, trials: int):
    client, parents, children = sweep_runs(uri, experiment)
    assert len(parents) == 1
    trial_ids = [r.data.tags["hpo_cls.trial_id"] for r in children]
    assert len(trial_ids) == trials and len(set(trial_ids)) == trials, trial_ids
    assert all(r.data.tags["hpo_cls.status"] == "completed" for r in children)
    return client, children


def test_sweep_promote_and_predict_through_mlflow_on_postgresql(tmp_path, mlflow_on_postgres):
    uri = mlflow_on_postgres.uri
    spec = _spec(tmp_path, uri, "pg-e2e", epochs=2, num_samples=4)
    sweep = hpo_cls("sweep", str(spec), "--name", "pg-e2e", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-3000:]
    client, children = _one_run_per_trial(uri, "pg-e2e", trials=4)
    total, lost = metric_points(uri, "pg-e2e", tmp_path / "ray_results" / "pg-e2e")
    assert total > 0 and lost == 0
    for run in children:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts go through the server"
        assert "checkpoint/model.pt" in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert list(mlflow_on_postgres.artifacts.rglob("model.pt")), "the server stored them in its destination"

    images = tmp_path / "to-predict"
    shutil.copytree(tmp_path / "data" / "val" / "0", images)
    promote = hpo_cls("promote", "--top", "2", "--epochs", "1", "--sweep", "pg-e2e", "--experiment", "pg-e2e",
                      "--tracking-uri", uri, "--register-as", "pg-e2e", "--predict", str(images),
                      "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "promote.csv"), cwd=tmp_path)
    assert promote.returncode == 0, promote.stdout[-2000:] + promote.stderr[-3000:]
    assert "registered pg-e2e version 1 with alias @champion" in promote.stdout
    # The registered model loads from the server (weights through the proxied artifact store).
    predict = hpo_cls("predict", "models:/pg-e2e@champion", str(images), "--tracking-uri", uri,
                      "--out", str(tmp_path / "predict.csv"), cwd=tmp_path, timeout=300)
    assert predict.returncode == 0, predict.stdout[-2000:] + predict.stderr[-3000:]
    assert (tmp_path / "predict.csv").read_text() == (tmp_path / "promote.csv").read_text()
    assert len((tmp_path / "predict.csv").read_text().splitlines()) == 1 + 4


def test_postgresql_restarted_mid_sweep_loses_no_metric(tmp_path, mlflow_on_postgres, ledger, fault_figure):
    uri = mlflow_on_postgres.uri
    spec = _spec(tmp_path, uri, "pg-restart")
    driver = start_sweep(spec, "pg-restart", tmp_path)
    try:
        wait_for(lambda: epochs_reported(tmp_path, "pg-restart") >= 2, 300, "two epochs reported")
        mlflow_on_postgres.cluster.restart()  # pg_ctl restart -m fast: every connection of the server is cut
        ledger["faults_injected"] += 1
        output = sweep_output(driver, tmp_path, "pg-restart", timeout=500)
    finally:
        kill_tree(driver)
    assert driver.returncode == 0, output[-3000:]
    _one_run_per_trial(uri, "pg-restart", trials=2)
    ledger["trials"] += 2
    total, lost = metric_points(uri, "pg-restart", tmp_path / "ray_results" / "pg-restart")
    fault_figure("PostgreSQL restarted mid-sweep (pg_ctl restart -m fast)", total, lost)
    assert total == 2 * _points(epochs=4) and lost == 0  # every metric of every epoch of both trials


def test_mlflow_server_killed_and_restarted_mid_sweep_loses_no_metric(tmp_path, mlflow_on_postgres, ledger,
                                                                      fault_figure):
    uri = mlflow_on_postgres.uri
    spec = _spec(tmp_path, uri, "server-killed", epochs=8)  # tiny epochs: enough of them left after the kill
    driver = start_sweep(spec, "server-killed", tmp_path)
    try:
        wait_for(lambda: epochs_reported(tmp_path, "server-killed") >= 1, 300, "the first epoch")
        assert driver.poll() is None, "the sweep ended before the server was killed"
        mlflow_on_postgres.kill()
        ledger["faults_injected"] += 1
        down_at = epochs_reported(tmp_path, "server-killed")
        # Trials go on training while the server is down; their metrics wait in the driver's queue.
        wait_for(lambda: epochs_reported(tmp_path, "server-killed") >= down_at + 2, 300, "two epochs while it is down")
        mlflow_on_postgres.start()
        output = sweep_output(driver, tmp_path, "server-killed", timeout=600)
    finally:
        kill_tree(driver)
    assert driver.returncode == 0, output[-3000:]
    _one_run_per_trial(uri, "server-killed", trials=2)
    ledger["trials"] += 2
    total, lost = metric_points(uri, "server-killed", tmp_path / "ray_results" / "server-killed")
    fault_figure("MLflow server killed (SIGKILL) and restarted mid-sweep", total, lost)
    assert total == 2 * _points(epochs=8) and lost == 0
