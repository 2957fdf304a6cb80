"""Fault injection on loopback, each bounded in time: nothing a user tracked may be lost or duplicated.

Faults are triggered by progress (epochs in Tune's result.json files), never after a sleep; each adds a
``faults:`` figure line to pytest's summary (see conftest.fault_figure and docs/reliability.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from processes import kill_tree, trial_workers
from ray_nodes import RayNode, node_env
from sweep_helpers import (
    epochs_reported,
    free_port,
    hpo_cls,
    make_images,
    metric_points,
    start_sweep,
    sweep_output,
    sweep_runs,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.ray


def _check_runs(client, children, num_samples: int, epochs: int, ledger) -> None:
    """Exactly one run per trial, and each val_acc history is 1..epochs without gaps or duplicates."""
    trial_ids = [r.data.tags["hpo_cls.trial_id"] for r in children]
    ledger["trials"] += num_samples
    ledger["runs_lost"] += max(0, num_samples - len(set(trial_ids)))
    ledger["duplicates"] += len(trial_ids) - len(set(trial_ids))
    assert len(children) == num_samples and len(set(trial_ids)) == num_samples
    for run in children:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        ledger["duplicates"] += len(steps) - len(set(steps))
        assert steps == list(range(1, epochs + 1)), f"{run.data.tags['hpo_cls.trial_id']}: {steps}"
        assert run.data.tags["hpo_cls.status"] == "completed"




def _results_by_trial(results: Path) -> dict[str, list[dict]]:
    """Each trial's lines of Tune's result.json: one per epoch Tune recorded."""
    return {p.parent.name: [json.loads(line) for line in p.read_text().splitlines()]
            for p in results.glob("*/result.json")}


def test_killed_trial_process_is_retried_from_its_checkpoint_in_the_same_run(tmp_path, ledger, fault_figure):
    data = make_images(tmp_path / "data", train=48, size=32)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 4, "num_samples": 2, "max_concurrent": 1},
                      data={"image_size": 32})
    driver = start_sweep(spec, "killed-worker", tmp_path)
    try:
        wait_for(lambda: epochs_reported(tmp_path, "killed-worker") >= 1, 240, "a trial to report its first epoch")
        workers = trial_workers(driver.pid)  # among the processes of the Ray this test's sweep started
        assert len(workers) == 1, "one trial runs at a time"
        workers[0].kill()
        ledger["faults_injected"] += 1
        output = sweep_output(driver, tmp_path, "killed-worker", timeout=400)
    finally:
        kill_tree(driver)
    assert driver.returncode == 0, output[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, _, children = sweep_runs(uri, "tests")
    _check_runs(client, children, num_samples=2, epochs=4, ledger=ledger)
    total, lost = metric_points(uri, "tests", tmp_path / "ray_results" / "killed-worker")
    fault_figure("trial process killed (SIGKILL)", total, lost)
    assert lost == 0


@pytest.mark.postgres
def test_worker_node_killed_mid_sweep_loses_nothing_beyond_its_last_checkpoint(tmp_path, mlflow_on_postgres, ledger,
                                                                               fault_figure):
    """The production shape on loopback: `ray start --head` + a second `ray start` node and an MLflow server
    on PostgreSQL with proxied artifacts; the second node dies whole (every process of it) mid-sweep."""
    uri = mlflow_on_postgres.uri
    data = make_images(tmp_path / "data", train=32, size=32)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 4, "num_samples": 2, "max_concurrent": 2},
                      data={"image_size": 32}, tracking={"uri": uri, "experiment": "node-killed"})
    results = tmp_path / "ray_results" / "node-killed"

    def one_checkpoint_each_and_a_trial_on_the_second_node() -> bool:
        epochs = [len(lines) for lines in _results_by_trial(results).values()]
        return len(epochs) == 2 and min(epochs) >= 1 and bool(trial_workers(worker.process.pid))

    head = RayNode(num_cpus=1)
    try:
        worker = RayNode(address=head.address, num_cpus=1)
        driver = start_sweep(spec, "node-killed", tmp_path, "--address", head.address, env=node_env())
        try:
            wait_for(one_checkpoint_each_and_a_trial_on_the_second_node, 300,
                     "both trials to checkpoint an epoch, one of them on the second node")
            worker.kill()
            ledger["faults_injected"] += 1
            output = sweep_output(driver, tmp_path, "node-killed", timeout=500)
        finally:
            kill_tree(driver)
            worker.stop()
    finally:
        head.stop()
    assert driver.returncode == 0, output[-3000:]
    client, parents, children = sweep_runs(uri, "node-killed")
    assert len(parents) == 1
    _check_runs(client, children, num_samples=2, epochs=4, ledger=ledger)
    by_trial = _results_by_trial(results)
    for trial_id, lines in by_trial.items():
        # The retried trial went on from its last checkpoint Tune had registered: at most the epoch whose
        # checkpoint was still being registered when the node died is trained again (and logged once).
        epochs = [r["epoch"] for r in lines]
        redone = len(epochs) - len(set(epochs))
        assert sorted(set(epochs)) == [1, 2, 3, 4] and redone <= 1 and epochs == sorted(epochs), (trial_id, epochs)
    nodes = [[r["node_id"] for r in lines] for lines in by_trial.values()]
    assert len({n[0] for n in nodes}) == 2, "the trials started on both nodes"
    assert sum(len(set(n)) == 2 for n in nodes) == 1, "the killed node's trial finished on the surviving node"
    for run in children:
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
        assert "checkpoint/model.pt" in artifacts, "artifacts went through the server"
    total, lost = metric_points(uri, "node-killed", results)
    fault_figure("Ray worker node killed (every process of it)", total, lost)
    assert lost == 0


def test_corrupt_images_are_refused_before_any_training(tmp_path):
    data = make_images(tmp_path / "data", train=4, val=2)
    (data / "train" / "0" / "truncated.jpg").write_bytes((data / "train" / "0" / "0.png").read_bytes()[:40])
    (data / "train" / "1" / "empty.jpg").write_bytes(b"")
    (data / "val" / "2" / "notes.jpg").write_text("not an image")
    spec = write_spec(tmp_path / "spec.yaml", data)
    result = hpo_cls("sweep", str(spec), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    for name in ("truncated.jpg", "empty.jpg", "notes.jpg"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ray_results").exists(), "nothing started"


def test_unreachable_tracking_server_is_refused_up_front(tmp_path):
    data = make_images(tmp_path / "data", train=4, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data)
    result = hpo_cls("sweep", str(spec), "--tracking-uri", f"http://127.0.0.1:{free_port()}", cwd=tmp_path,
                     timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("error:") == 1 and "tracking.uri: cannot reach" in result.stderr
    assert "Traceback" not in result.stderr
