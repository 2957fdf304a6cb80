"""The sweep's MLflow callback logs each trial's best checkpoint and reports as soon as the trial ends; its
writer retries failed writes for as long as the kind of store makes worth it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from hpo_cls.spec import TrialConfig
from hpo_cls.sweep.callbacks import SweepTracker
from hpo_cls.tracking.runs import finalize_trial_op, open_sweep_run, open_trial_run
from hpo_cls.tracking.uri import default_retry_seconds
from hpo_cls.tracking.writer import MlflowWriter
from hpo_cls.train.checkpoint import (
    EVALUATION_FILE,
    MODEL_FILE,
    load_checkpoint,
    save_checkpoint,
    save_trial_checkpoint,
)
from hpo_cls.train.engine import per_class_report
from hpo_cls.train.val_predictions import load_val_predictions, save_val_predictions

CLASSES = ["cat", "dog"]


def tracker_for(tmp_path, mode: str) -> SweepTracker:
    tracker = SweepTracker(f"sqlite:///{tmp_path}/mlflow.db", "tracker-test", "s-1", "s", fixed=TrialConfig(),
                           epochs=3, metric="val_loss" if mode == "min" else "val_acc", mode=mode, parent_tags={},
                           parent_params={})
    tracker.start()
    return tracker


def report_epochs(tracker: SweepTracker, trial, tmp_path, scores: list[float], save=save_trial_checkpoint,
                  predictions: bool = False) -> None:
    """What Tune does for a trial reporting a checkpoint every epoch (``save``: as trials write them;
    ``predictions``: with the epoch's validation predictions, as the trainable writes them)."""
    for epoch, score in enumerate(scores, start=1):
        trial.last_result = {"epoch": epoch, tracker.metric: score}
        tracker.on_trial_result(0, [], trial, trial.last_result)
        directory = tmp_path / trial.trial_id / f"checkpoint_{epoch:06d}"
        save({"model": {"w": torch.full((3,), float(epoch))}, "epoch": epoch, "optimizer": {"step": epoch},
              "class_to_idx": {c: i for i, c in enumerate(CLASSES)}}, directory)
        confusion = [[epoch, 1], [0, 2]]
        (directory / EVALUATION_FILE).write_text(json.dumps(
            {"confusion": confusion, "per_class": per_class_report(torch.tensor(confusion), CLASSES)}))
        if predictions:
            save_val_predictions(directory, [[0.9, 0.1], [0.2, 0.8]], ["cat/1.png", "dog/1.png"], [0, 1], CLASSES,
                                 epoch)
        tracker.on_checkpoint(0, [], trial, SimpleNamespace(path=str(directory)))


def finished_trial(tmp_path, mode: str, scores: list[float], save=save_trial_checkpoint) -> SweepTracker:
    """Trial ``t1`` reported ``scores`` with a checkpoint each epoch and completed; its writer has closed."""
    tracker = tracker_for(tmp_path, mode)
    trial = SimpleNamespace(trial_id="t1", config={}, last_result=None)
    report_epochs(tracker, trial, tmp_path, scores, save=save)
    tracker.on_trial_complete(0, [], trial)
    tracker.writer.close()
    return tracker


@pytest.mark.parametrize("mode, scores, best_epoch", [("max", [0.3, 0.5, 0.4], 2), ("min", [0.9, 0.7, 0.8], 2)])
def test_a_finished_trial_gets_its_best_checkpoint_and_reports(tmp_path, mode, scores, best_epoch):
    tracker = finished_trial(tmp_path, mode, scores)

    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(tracker.writer.run_ids["t1"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["hpo_cls.status"] == "completed" and run.data.tags["hpo_cls.finalized"] == "1"
    assert run.data.tags["hpo_cls.epochs_run"] == "3"
    bundle = client.download_artifacts(run.info.run_id, f"checkpoint/{MODEL_FILE}", str(tmp_path / "down"))
    assert load_checkpoint(bundle)["epoch"] == best_epoch
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert logged == {"evaluation/confusion_matrix.png", "evaluation/per_class_report.csv"}


def test_the_best_model_file_is_logged_as_the_trial_wrote_it(tmp_path):
    tracker = finished_trial(tmp_path, "max", [0.3, 0.5, 0.4])

    client = MlflowClient(tracker.tracking_uri)
    logged = client.download_artifacts(tracker.writer.run_ids["t1"], f"checkpoint/{MODEL_FILE}", str(tmp_path / "down"))
    written = tmp_path / "t1" / "checkpoint_000002" / MODEL_FILE
    assert open(logged, "rb").read() == written.read_bytes()
    assert "optimizer" not in load_checkpoint(logged), "the logged bundle leaves the training state out"


def test_a_one_file_checkpoint_from_an_older_sweep_is_logged_as_its_model_bundle(tmp_path):
    """A sweep begun before trial checkpoints were split, resumed: its best checkpoint is one file."""
    tracker = finished_trial(tmp_path, "max", [0.3, 0.5, 0.4], save=save_checkpoint)

    client = MlflowClient(tracker.tracking_uri)
    logged = client.download_artifacts(tracker.writer.run_ids["t1"], f"checkpoint/{MODEL_FILE}", str(tmp_path / "down"))
    bundle = load_checkpoint(logged)
    assert bundle["epoch"] == 2 and "optimizer" not in bundle


FINALIZE_WITHOUT_TORCH = """
import sys
from pathlib import Path
from hpo_cls.tracking.runs import finalize_trial_op, open_sweep_run, open_trial_run
from hpo_cls.tracking.writer import MlflowWriter
uri, checkpoint = sys.argv[1:]
writer = MlflowWriter(uri, "tracker-test")
open_sweep_run(writer, "s-1")
open_trial_run(writer, "s-1", "t1", {}, resume=False)
writer.call("t1", finalize_trial_op("completed", None, checkpoint))
writer.close()
assert writer.failed_ops == 0
print("torch imported:", "torch" in sys.modules)
"""


def test_finalizing_a_trial_does_not_import_torch_in_the_driver(tmp_path):
    """The driver shares the CPU with the trials still training: seconds of torch import (and a load and
    save of the checkpoint) at the first trial's end would slow them."""
    tracker = tracker_for(tmp_path, "max")
    trial = SimpleNamespace(trial_id="t1", config={}, last_result=None)
    report_epochs(tracker, trial, tmp_path, [0.3])
    tracker.writer.close()

    result = subprocess.run([sys.executable, "-c", FINALIZE_WITHOUT_TORCH, tracker.tracking_uri,
                             str(tmp_path / "t1" / "checkpoint_000001")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch imported: False" in result.stdout
    run = MlflowClient(tracker.tracking_uri).get_run(tracker.writer.run_ids["t1"])
    assert run.data.tags["hpo_cls.finalized"] == "1"
    assert {a.path for a in MlflowClient(tracker.tracking_uri).list_artifacts(run.info.run_id, "checkpoint")} == {
        f"checkpoint/{MODEL_FILE}", f"checkpoint/{EVALUATION_FILE}"}


def test_an_early_stopped_trial_keeps_the_predictions_of_its_kept_checkpoint_apart_from_it(tmp_path):
    tracker = tracker_for(tmp_path, "max")  # a budget of 3 epochs
    trial = SimpleNamespace(trial_id="t1", config={}, last_result=None)
    report_epochs(tracker, trial, tmp_path, [0.3, 0.5], predictions=True)  # stopped after 2
    tracker.on_trial_complete(0, [], trial)
    tracker.writer.close()

    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(tracker.writer.run_ids["t1"])
    assert run.data.tags["hpo_cls.status"] == "early_stopped"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "predictions")} == {
        "predictions/val_predictions.npz"}
    path = client.download_artifacts(run.info.run_id, "predictions/val_predictions.npz", str(tmp_path / "down"))
    assert load_val_predictions(path).epoch == 2 and load_val_predictions(path).classes == CLASSES


def test_a_trial_without_a_checkpoint_is_closed_for_the_summary_to_finish(tmp_path):
    tracker = tracker_for(tmp_path, "max")
    trial = SimpleNamespace(trial_id="t1", config={}, last_result={"epoch": 1, "val_acc": 0.2})
    tracker.on_trial_result(0, [], trial, trial.last_result)
    tracker.on_trial_complete(0, [], trial)
    tracker.writer.close()

    run = MlflowClient(tracker.tracking_uri).get_run(tracker.writer.run_ids["t1"])
    assert run.data.tags["hpo_cls.status"] == "early_stopped"
    assert "hpo_cls.finalized" not in run.data.tags  # the sweep's summary still logs what Tune kept


def test_the_sweep_summary_leaves_a_finalized_run_finished(tmp_path):
    """The summary binds every trial's run again to finalize what is left; runs done at trial end stay done."""
    tracker = finished_trial(tmp_path, "max", [0.3, 0.5, 0.4])

    summary = MlflowWriter(tracker.tracking_uri, tracker.experiment)
    open_sweep_run(summary, "s-1")
    open_trial_run(summary, "s-1", "t1", {}, resume=False)
    summary.call("t1", finalize_trial_op("completed", None, None))
    summary.close()
    run = MlflowClient(tracker.tracking_uri).get_run(tracker.writer.run_ids["t1"])
    assert run.info.status == "FINISHED" and run.data.tags["hpo_cls.finalized"] == "1"
    assert {a.path for a in MlflowClient(tracker.tracking_uri).list_artifacts(run.info.run_id)} == {
        "checkpoint", "evaluation"}

    # A trial that runs again (a resumed sweep retrying it) reopens its run, to be finalized anew.
    resumed = MlflowWriter(tracker.tracking_uri, tracker.experiment)
    open_sweep_run(resumed, "s-1")
    open_trial_run(resumed, "s-1", "t1", {})
    resumed.close()
    run = MlflowClient(tracker.tracking_uri).get_run(run.info.run_id)
    assert run.info.status == "RUNNING" and "hpo_cls.finalized" not in run.data.tags


@pytest.mark.parametrize("uri, seconds", [
    ("sqlite:///mlflow.db", 30), ("file:///tmp/mlruns", 30), ("./mlruns", 30),
    ("http://127.0.0.1:5000", 600), ("https://mlflow.example.org", 600), ("databricks", 600),
    ("postgresql://db/mlflow", 600),
])
def test_writes_to_a_server_are_retried_longer_than_writes_to_a_local_store(uri, seconds):
    assert default_retry_seconds(uri) == seconds


def test_a_write_that_keeps_failing_is_given_up_with_a_warning_not_waited_for_forever(tmp_path):
    warnings = []
    writer = MlflowWriter(f"sqlite:///{tmp_path}/mlflow.db", "give-up", retry_for_s=1.0, warn=warnings.append)

    def disk_full(client, run_id):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer.call(None, disk_full)
    assert writer.flush(timeout=30), "the writer still retries a write it should have given up"
    assert writer.failed_ops == 1
    assert "No space left on device" in warnings[0] and "gave up" in warnings[-1]
    writer.close()


def test_a_pickled_tracker_holds_no_password_and_a_resuming_driver_gives_it_back():
    import pickle

    from hpo_cls.sweep.callbacks import restoring_tracker

    uri = "postgresql://user:pa/ss#w@rd@db.example:5432/mlflow"
    tracker = SweepTracker(uri, "exp", "s-1", "s", fixed=TrialConfig(), epochs=3, metric="val_acc", mode="max",
                           parent_tags={}, parent_params={})
    pickled = pickle.dumps(tracker)
    assert b"pa/ss" not in pickled and b"rd@db" not in pickled
    assert "pa/ss" not in pickle.loads(pickled).tracking_uri  # an ordinary unpickle keeps it redacted
    with restoring_tracker("s-2", "postgresql://other"):  # another sweep's resume gives this one nothing
        assert "pa/ss" not in pickle.loads(pickled).tracking_uri
    with restoring_tracker("s-1", uri):
        assert pickle.loads(pickled).tracking_uri == uri


def test_the_writer_logs_new_metrics_at_a_written_step_and_drops_repeated_ones(tmp_path):
    """Promote logs its val figures, then its test figures, both at step 0; a retried trial reports epochs again."""
    writer = MlflowWriter(f"sqlite:///{tmp_path}/mlflow.db", "steps")
    writer.open_run("r", {"hpo_cls.test": "steps"}, "r")
    writer.log_metrics("r", {"val_acc": 0.5}, step=0)
    assert writer.flush(timeout=60)  # written before the next batch is queued: no coalescing
    writer.log_metrics("r", {"test_acc": 0.4}, step=0)
    writer.log_metrics("r", {"val_acc": 0.9}, step=0)  # the same metric and step again: dropped
    assert writer.flush(timeout=60)
    run = writer.client.get_run(writer.run_ids["r"])
    writer.close()
    assert run.data.metrics == {"val_acc": 0.5, "test_acc": 0.4}
    assert [m.value for m in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(run.info.run_id, "val_acc")] == [0.5]


def test_costs_are_logged_once_rounded_and_only_the_keys_that_act_as_params(tmp_path):
    """A model's costs do not change over epochs: one point each, not a flat per-epoch chart; and a key the
    configuration does not use (attention_placement without attention) is not a param."""
    tracker = tracker_for(tmp_path, "max")
    tracker.image_size = 32
    trial = SimpleNamespace(trial_id="t1", config={"lr": 0.01, "attention": "none"}, last_result=None)
    for epoch in (1, 2, 3):
        trial.last_result = {"epoch": epoch, "val_acc": 0.1 * epoch, "params_m": 11.1739621, "latency_ms": 0.123456}
        tracker.on_trial_result(0, [], trial, trial.last_result)
    tracker.writer.flush()
    client = MlflowClient(tracker.tracking_uri)
    run_id = tracker.writer.run_ids["t1"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "params_m")] == [(0, 11.174)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "latency_ms")] == [(0, 0.1235)]
    assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [1, 2, 3]
    params = client.get_run(run_id).data.params
    assert params["lr"] == "0.01" and not {"attention_placement", "mixup_alpha", "crop_scale"} & set(params)
    tracker.writer.close()
