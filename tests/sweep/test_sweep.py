"""End-to-end sweeps with real Ray and a real MLflow store: what a user sees after `hpo-cls sweep`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from processes import kill_tree
from sweep_helpers import (
    REPO,
    free_port,
    hpo_cls,
    make_images,
    start_mlflow_server,
    stop_server,
    sweep_runs,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.ray


def test_quickstart_sweep_records_every_trial_in_mlflow(tmp_path):
    """The issue's bar: quickstart with 6 trials in an empty folder; 1 parent + 6 nested children."""
    result = hpo_cls("sweep", str(REPO / "sweeps" / "quickstart.yaml"), "--set", "budget.num_samples=6",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Tune logs (and survives) errors raised in callbacks: the driver's output must show none. (Lines Ray
    # forwards from its other processes, "(raylet) ..." or "(pid=...) ...", say what the machine does.)
    driver_lines = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("(")]
    assert not [line for line in driver_lines if "Traceback" in line or "ERROR" in line], result.stderr[-3000:]
    assert "hpo-cls ui" in result.stdout  # the summary tells the user how to look at the runs
    assert "live dashboard: hpo-cls dashboard quickstart-" in result.stdout, "its study is stored (search.storage)"
    assert (tmp_path / "mlflow-optuna.db").is_file()

    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "hpo-cls")
    assert len(parents) == 1
    assert len(children) == 6
    parent_id = parents[0].info.run_id
    statuses = []
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        for key in ("backbone", "attention", "dropout", "label_smoothing", "lr"):
            assert key in run.data.params, key
        # Only the keys that acted: MixUp's alpha where MixUp ran, never its default where it did not.
        assert ("mixup_alpha" in run.data.params) == (run.data.params["mix"] == "mixup"), run.data.params
        float(run.data.params["lr"])  # numeric params stay numbers for the parallel-coordinates view
        history = client.get_metric_history(run.info.run_id, "val_acc")
        steps = sorted(m.step for m in history)
        epochs_run = int(run.data.tags["hpo_cls.epochs_run"])
        assert steps == list(range(1, epochs_run + 1)), "one val_acc point per epoch run"
        status = run.data.tags["hpo_cls.status"]
        statuses.append((status, epochs_run))
        assert run.info.status == ("FAILED" if status == "failed" else "FINISHED")
        if status != "failed":
            assert any(a.path == "checkpoint" for a in client.list_artifacts(run.info.run_id))
            # completed or stopped early: its validation predictions, for promote --select
            assert [a.path for a in client.list_artifacts(run.info.run_id, "predictions")] == [
                "predictions/val_predictions.npz"]
        if status == "completed":
            assert any(a.path == "evaluation" for a in client.list_artifacts(run.info.run_id))
    # Which trials ASHA stops depends on which of the two running at once reaches a rung first: only what
    # always holds is asserted here (tests/sweep/test_reuse.py asserts its decisions in a fixed order).
    quickstart = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    epochs, asha = quickstart["budget"]["epochs"], quickstart["scheduler"]
    rungs = {asha["grace_period"] * asha["reduction_factor"] ** k for k in range(epochs)
             if asha["grace_period"] * asha["reduction_factor"] ** k < epochs}  # ASHA's milestones below max_t
    assert {s for s, _ in statuses} <= {"completed", "early_stopped"}
    assert all(n == epochs for s, n in statuses if s == "completed")
    assert all(n in rungs for s, n in statuses if s == "early_stopped"), f"stopped at a rung {sorted(rungs)}"

    parent_artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"trials.csv", "spec.yaml"} <= parent_artifacts
    assert parents[0].data.tags["hpo_cls.best_run_id"] in {r.info.run_id for r in children}

    # Checkpoints beyond fault_tolerance.keep_checkpoints (2) are deleted from Tune's trial folders.
    kept = [len(list(trial.glob("checkpoint_*"))) for trial in (tmp_path / "ray_results").glob("*/*") if trial.is_dir()]
    assert max(kept) == 2
    # MLflow holds the best checkpoints of tracking.keep_checkpoints (2) trials, ranked as promote ranks.
    from hpo_cls.tracking.score import ScoreRule

    rule, logged = ScoreRule(), {}
    for run in children:
        logged[run.info.run_id] = "checkpoint/model.pt" in {a.path for a in client.list_artifacts(run.info.run_id,
                                                                                                   "checkpoint")}
        assert run.data.tags["hpo_cls.checkpoint"] == ("kept" if logged[run.info.run_id] else "dropped")
    best_first = sorted(children, key=lambda r: rule.keep_key(r.data.tags["hpo_cls.status"],
                                                              r.data.metrics.get("best_val_acc"),
                                                              r.info.start_time, r.info.run_id))
    assert [logged[r.info.run_id] for r in best_first] == [True, True, False, False, False, False]
    assert quickstart["tracking"]["keep_checkpoints"] == 2


def test_resume_after_driver_is_killed_keeps_one_run_per_trial(tmp_path, ledger):
    data = make_images(tmp_path / "data")
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 4, "num_samples": 4, "max_concurrent": 1})
    results = tmp_path / "ray_results" / "resumable"
    driver = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "sweep", str(spec), "--name", "resumable"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        # Kill once a trial has finished and the next one has checkpointed at least one epoch.
        def progressed() -> bool:
            finished = [p for p in results.glob("*/result.json") if len(p.read_text().splitlines()) >= 4]
            started = list(results.glob("*/checkpoint_*"))
            return len(finished) >= 1 and len({p.parent for p in started}) >= 2

        wait_for(progressed, 300, "the first trial to finish")
    finally:
        kill_tree(driver)  # the driver and the local Ray it started, by their PIDs
        ledger["faults_injected"] += 1

    result = hpo_cls("sweep", str(spec), "--name", "resumable", "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    ledger["trials"] += 4
    ledger["runs_lost"] += max(0, 4 - len({r.data.tags["hpo_cls.trial_id"] for r in children}))
    ledger["duplicates"] += max(0, len(children) - 4)
    assert len(parents) == 1, "the resumed sweep reuses its parent run"
    assert len(children) == 4, "one run per trial: none lost, none duplicated"
    assert len({r.data.tags["hpo_cls.trial_id"] for r in children}) == 4
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, 5)), f"metric history without gaps or duplicates: {steps}"
        assert run.data.tags["hpo_cls.status"] == "completed"


def test_bad_resume_and_bad_address_are_clear_errors(tmp_path):
    data = make_images(tmp_path / "data", train=4, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data)
    result = hpo_cls("sweep", str(spec), "--resume", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "no sweep of 'tiny' to resume" in result.stderr
    assert "Traceback" not in result.stderr


def test_nan_loss_fails_the_trial_and_the_sweep_goes_on(tmp_path, ledger):
    data = make_images(tmp_path / "data", train=8, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 2, "num_samples": 2, "max_concurrent": 2},
                      search={"sampler": "grid", "space": {"lr": {"choice": [0.01, 1.0e30]}}},
                      fixed={"backbone": "resnet18", "batch_size": 8, "optimizer": "sgd"})
    result = hpo_cls("sweep", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    ledger["faults_injected"] += 1
    ledger["trials"] += 2
    by_lr = {float(r.data.params["lr"]): r for r in children}
    assert by_lr[1e30].data.tags["hpo_cls.status"] == "failed"
    assert "loss became" in by_lr[1e30].data.tags["hpo_cls.error"]
    assert by_lr[0.01].data.tags["hpo_cls.status"] == "completed"


def test_trials_csv_and_summary_name_the_runs(tmp_path):
    """trials.csv (pandas) lists every trial with its status and MLflow run id."""
    data = make_images(tmp_path / "data", train=8, val=2)
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 1, "num_samples": 2, "max_concurrent": 2})
    result = hpo_cls("sweep", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    local = client.download_artifacts(parents[0].info.run_id, "trials.csv", str(tmp_path))
    import pandas as pd

    frame = pd.read_csv(local)
    assert sorted(frame["mlflow_run_id"]) == sorted(r.info.run_id for r in children)
    assert set(frame["status"]) == {"completed"}
    for run in children:
        assert run.info.run_id in result.stdout
    json.dumps(frame.to_dict())  # plain data


def test_a_store_password_is_in_no_file_the_sweep_writes(tmp_path):
    """Issue 36, class 14: Tune pickles the MLflow callback into tuner.pkl; the password (with / # @ % in it,
    percent-encoded as a URI needs) reaches neither that nor any other file under ray_results, nor the output."""
    pieces = ("Kpieceone", "Kpiecetwo")
    port = free_port()
    server = start_mlflow_server(tmp_path, port)  # no auth: it ignores the credentials, the client sends them
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health"), 180, "the MLflow server to answer")
        uri = f"http://alice:{pieces[0]}%2F%23%40%25{pieces[1]}@127.0.0.1:{port}"
        data = make_images(tmp_path / "data", train=4, val=2)
        spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 1, "num_samples": 2, "max_concurrent": 1},
                          tracking={"uri": uri})
        result = hpo_cls("sweep", str(spec), "--name", "secret", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        _, parents, children = sweep_runs(f"http://127.0.0.1:{port}", "tests")
        assert len(parents) == 1 and len(children) == 2, "the sweep reached the store"
        shown = [line for line in (result.stdout + result.stderr).splitlines() if any(p in line for p in pieces)]
        assert not shown, shown
        written = [p for p in (tmp_path / "ray_results").rglob("*") if p.is_file()]
        assert any(p.name == "tuner.pkl" for p in written)
        leaking = [str(p) for p in written if any(piece.encode() in p.read_bytes() for piece in pieces)]
        assert not leaking, leaking
    finally:
        stop_server(server)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
