"""Bounded disk: a sweep keeps the checkpoints of its ``tracking.keep_checkpoints`` best trials in MLflow (ranked
as promote ranks), whatever order the trials end in; ``hpo-cls gc`` deletes those no registered model uses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient
from sweep_helpers import hpo_cls

from hpo_cls.spec import TrialConfig
from hpo_cls.sweep.callbacks import SweepTracker
from hpo_cls.tracking.checkpoints import CHECKPOINT_ARTIFACT, CHECKPOINT_TAG, CheckpointPolicy
from hpo_cls.tracking.runs import open_sweep_run
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.writer import MlflowWriter
from hpo_cls.train.checkpoint import save_trial_checkpoint

EPOCHS = 3
# trial id -> (its val_acc per epoch, ended: completed when it ran every epoch, else early-stopped)
TRIALS = {
    "a": [0.30, 0.40, 0.50],
    "b": [0.35],               # early-stopped, scores below every completed trial
    "c": [0.30, 0.50, 0.60],
    "d": [0.70],               # early-stopped, scores above every completed trial: still ranks after them
    "e": [0.20, 0.30, 0.45],
}


def run_sweep_trials(tmp_path, keep: int, order=tuple(TRIALS)) -> SweepTracker:
    """The sweep's MLflow callback, as Tune drives it, over the trials of TRIALS ending in ``order``."""
    tracker = SweepTracker(f"sqlite:///{tmp_path}/mlflow.db", "tests", "s-1", "s", fixed=TrialConfig(),
                           epochs=EPOCHS, metric="val_acc", mode="max", parent_tags={}, parent_params={},
                           keep_checkpoints=keep)
    tracker.start()
    for trial_id in order:
        trial = SimpleNamespace(trial_id=trial_id, config={}, last_result=None)
        tracker.on_trial_start(0, [], trial)
    for trial_id in order:
        trial = SimpleNamespace(trial_id=trial_id, config={}, last_result=None)
        for epoch, score in enumerate(TRIALS[trial_id], start=1):
            trial.last_result = {"epoch": epoch, "val_acc": score}
            tracker.on_trial_result(0, [], trial, trial.last_result)
            directory = tmp_path / trial_id / f"checkpoint_{epoch:06d}"
            save_trial_checkpoint({"model": {"w": torch.zeros(50_000)}, "epoch": epoch, "optimizer": {},
                                   "class_to_idx": {"x": 0}}, directory)
            tracker.on_checkpoint(0, [], trial, SimpleNamespace(path=str(directory)))
        tracker.on_trial_complete(0, [], trial)
    tracker.writer.close()
    return tracker


def checkpoints_in_mlflow(tracker: SweepTracker) -> dict[str, tuple[bool, str | None]]:
    """trial id -> (its run holds checkpoint/model.pt, its checkpoint tag)."""
    client = MlflowClient(tracker.tracking_uri)
    found = {}
    for trial_id, run_id in tracker.writer.run_ids.items():
        if trial_id == "parent":
            continue
        logged = {a.path for a in client.list_artifacts(run_id, "checkpoint")}
        found[trial_id] = (CHECKPOINT_ARTIFACT in logged, client.get_run(run_id).data.tags.get(CHECKPOINT_TAG))
    return found


@pytest.mark.parametrize("order", [tuple(TRIALS), tuple(reversed(TRIALS)), ("d", "b", "e", "a", "c")])
def test_the_two_best_completed_trials_keep_their_checkpoints_whatever_order_trials_end_in(tmp_path, order):
    found = checkpoints_in_mlflow(run_sweep_trials(tmp_path, keep=2, order=order))
    assert found == {"c": (True, "kept"), "a": (True, "kept"), "e": (False, "dropped"),
                     "d": (False, "dropped"), "b": (False, "dropped")}


def test_early_stopped_trials_fill_the_places_completed_ones_leave(tmp_path):
    found = checkpoints_in_mlflow(run_sweep_trials(tmp_path, keep=4))
    kept = {trial for trial, (logged, _) in found.items() if logged}
    assert kept == {"a", "c", "e", "d"}, "completed a, c, e first, then the best early-stopped trial"


def test_keep_zero_logs_no_checkpoint_and_keeps_every_metric(tmp_path):
    tracker = run_sweep_trials(tmp_path, keep=0)
    assert not any(logged for logged, _ in checkpoints_in_mlflow(tracker).values())
    client = MlflowClient(tracker.tracking_uri)
    run_id = tracker.writer.run_ids["c"]
    assert [m.value for m in client.get_metric_history(run_id, "val_acc")] == TRIALS["c"]
    assert client.get_run(run_id).data.metrics["best_val_acc"] == 0.60


def test_a_smaller_keep_at_the_end_drops_the_checkpoints_beyond_it(tmp_path):
    """The sweep's summary runs the policy once more: a resume with a smaller keep applies it (idempotent)."""
    tracker = run_sweep_trials(tmp_path, keep=3)
    writer = MlflowWriter(tracker.tracking_uri, "tests")
    open_sweep_run(writer, "s-1")
    policy = CheckpointPolicy("s-1", ScoreRule("val_acc", "max"), keep=1)
    writer.call("parent", policy.prune_op())
    writer.call("parent", policy.prune_op())
    writer.close()
    found = checkpoints_in_mlflow(tracker)
    assert {trial for trial, (logged, _) in found.items() if logged} == {"c"}
    assert found["a"] == (False, "dropped") and found["e"] == (False, "dropped")


def register_from(client: MlflowClient, run_ids: list[str]) -> None:
    """A registered model version built from ``run_ids``, tagged as promote tags its versions."""
    client.create_registered_model("m")
    client.create_model_version("m", "file:///nonexistent", tags={"hpo_cls.source_run_ids": ",".join(run_ids)})


def test_gc_deletes_the_checkpoints_no_registered_model_was_built_from(tmp_path):
    tracker = run_sweep_trials(tmp_path, keep=5)
    client = MlflowClient(tracker.tracking_uri)
    register_from(client, [tracker.writer.run_ids["c"]])
    args = ["gc", "s-1", "--tracking-uri", tracker.tracking_uri, "--experiment", "tests"]

    dry = hpo_cls(*args, "--dry-run", cwd=tmp_path, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 4 trial checkpoint(s), 0.8 MB; 1 kept: registered models were built from them" in dry.stdout
    for trial in ("a", "b", "d", "e"):
        assert f" {trial} " in dry.stdout and tracker.writer.run_ids[trial] in dry.stdout
    assert all(logged for logged, _ in checkpoints_in_mlflow(tracker).values()), "a dry run deletes nothing"

    done = hpo_cls(*args, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "deleted 4 trial checkpoint(s), 0.8 MB" in done.stdout
    found = checkpoints_in_mlflow(tracker)
    assert found["c"] == (True, "kept") and all(found[t] == (False, "dropped") for t in "abde")
    again = hpo_cls(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "deleted 0 trial checkpoint(s), 0.0 MB" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["gc", "nope"], "error: no sweep 'nope' in experiment 'tests'"),
    (["gc", "--experiment", "missing"], "error: "),
])
def test_gc_bad_input_is_one_error_line(tmp_path, args, message):
    tracker = run_sweep_trials(tmp_path, keep=1, order=("a",))
    result = hpo_cls(*[*args, "--tracking-uri", tracker.tracking_uri, *(["--experiment", "tests"]
                                                                       if "--experiment" not in args else [])],
                     cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert checkpoints_in_mlflow(tracker)["a"] == (True, "kept"), "nothing was deleted"

