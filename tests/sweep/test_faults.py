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


# issue 36, classes 4 and 10: one pre-flight for stores, addresses and resources, each one line in seconds
def _store(kind: str, tmp_path) -> tuple[str, object]:
    """A tracking URI of ``kind`` and what keeps it so (a connection holding the write lock)."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    if kind == "not-a-database":
        db.write_text("<html>a report written over the store</html>")
    elif kind == "locked":
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("create table t (x)")
        holder.execute("BEGIN IMMEDIATE")  # held until the test ends
        return f"sqlite:///{db}", holder
    elif kind == "missing-folder":
        return f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}", None
    elif kind == "file-store":
        return (tmp_path / "mlruns").as_uri(), None
    elif kind == "bare-folder":
        return str(tmp_path / "mlruns"), None
    elif kind == "postgres-down":
        return f"postgresql://u:pw@127.0.0.1:{free_port()}/mlflow", None
    return f"sqlite:///{db}", None


STORES = ["not-a-database", "locked", "missing-folder", "file-store", "bare-folder", "postgres-down"]


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("command", ["validate", "sweep", "sweeps"])
def test_a_bad_tracking_store_is_one_line_before_anything_starts(tmp_path, kind, command):
    data = make_images(tmp_path / "data", train=4, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data)
    uri, holder = _store(kind, tmp_path)
    # (Not read while the lock is held: closing any descriptor of the file drops this process's POSIX locks.)
    before = (tmp_path / "mlflow.db").read_bytes() if holder is None and (tmp_path / "mlflow.db").exists() else None
    try:
        args = {"validate": ["validate", str(spec), "--no-scan", "--set", f"tracking.uri={uri}"],
                "sweep": ["sweep", str(spec), "--tracking-uri", uri], "sweeps": ["sweeps", "--tracking-uri", uri]}
        result = hpo_cls(*args[command], cwd=tmp_path, timeout=120)  # a hang guard, not a measurement
    finally:
        if holder is not None:
            holder.close()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout[:3000] + result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and "tracking.uri" in line, line
    assert not (tmp_path / "ray_results").exists(), "nothing started"
    if before is not None:
        assert (tmp_path / "mlflow.db").read_bytes() == before


def test_an_address_where_nothing_answers_is_one_line(tmp_path):
    data = make_images(tmp_path / "data", train=4, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data)
    result = hpo_cls("sweep", str(spec), "--address", f"127.0.0.1:{free_port()}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "nothing answers" in lines[0]


@pytest.mark.parametrize("resources", [{"cpu": 1, "gpu": 0.3}, {"cpu": 64}], ids=["gpu-on-no-gpu", "more-cpus"])
def test_resources_no_node_has_fail_fast_instead_of_waiting(tmp_path, resources):
    data = make_images(tmp_path / "data", train=4, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data, resources=resources)
    result = hpo_cls("sweep", str(spec), "--no-estimate", cwd=tmp_path, timeout=180)  # a hang guard
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no node of the Ray cluster" in lines[0], lines
