"""Fault injection on loopback, each bounded in time: nothing a user tracked may be lost or duplicated."""

from __future__ import annotations

import signal
import time

import psutil
import pytest
from sweep_helpers import (
    epochs_reported,
    free_port,
    hpo_cls,
    make_images,
    start_mlflow_server,
    start_sweep,
    stop_server,
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


def test_killed_worker_is_retried_from_its_checkpoint_in_the_same_run(tmp_path, ledger):
    data = make_images(tmp_path / "data", train=48, size=32)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 4, "num_samples": 2, "max_concurrent": 1},
                      data={"image_size": 32})
    driver = start_sweep(spec, "killed-worker", tmp_path)
    try:
        wait_for(lambda: epochs_reported(tmp_path, "killed-worker") >= 1, 240, "a trial to report its first epoch")
        workers = [p for p in psutil.process_iter(["cmdline"]) if "ray::ImplicitFunc" in " ".join(p.info["cmdline"] or [])]
        assert workers, "a trial worker process is running"
        workers[0].send_signal(signal.SIGKILL)
        ledger["faults_injected"] += 1
        output, _ = driver.communicate(timeout=400)
    finally:
        driver.kill()
    assert driver.returncode == 0, output[-3000:]
    client, _, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    _check_runs(client, children, num_samples=2, epochs=4, ledger=ledger)


def test_mlflow_server_outage_loses_no_metric(tmp_path, ledger):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    data = make_images(tmp_path / "data", train=48, size=32)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 5, "num_samples": 2, "max_concurrent": 2},
                      data={"image_size": 32}, tracking={"uri": uri, "experiment": "tests"})
    server = start_mlflow_server(tmp_path, port)
    driver = start_sweep(spec, "outage", tmp_path)
    try:
        wait_for(lambda: epochs_reported(tmp_path, "outage") >= 1, 240, "the first epoch")
        epochs_before = epochs_reported(tmp_path, "outage")
        outage_started = time.monotonic()
        stop_server(server)
        ledger["faults_injected"] += 1
        time.sleep(10)
        epochs_during_outage = epochs_reported(tmp_path, "outage") - epochs_before
        server = start_mlflow_server(tmp_path, port)
        output, _ = driver.communicate(timeout=400)
    finally:
        driver.kill()
        stop_server(server)
    assert driver.returncode == 0, output[-3000:]
    assert time.monotonic() - outage_started > 10
    assert epochs_during_outage >= 1, "trials kept training while the tracking server was down"
    server = start_mlflow_server(tmp_path, port)
    try:
        client, parents, children = sweep_runs(uri, "tests")
        assert len(parents) == 1
        _check_runs(client, children, num_samples=2, epochs=5, ledger=ledger)
    finally:
        stop_server(server)


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
