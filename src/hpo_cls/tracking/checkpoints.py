"""Bounded disk: a sweep keeps the best checkpoint of at most ``tracking.keep_checkpoints`` trials in MLflow.

Each trial run that ends with a checkpoint is tagged :data:`CHECKPOINT_TAG`: ``kept`` (its
``checkpoint/model.pt`` is logged) or ``dropped`` (never logged, or deleted since). A trial's checkpoint is
logged only when fewer than ``keep`` kept ones rank above it, and logging it deletes the checkpoint of
whichever kept trial it pushes out. Trials rank as promote ranks them (:meth:`ScoreRule.keep_key`). The
tags in MLflow are the whole state, so a driver that crashes and resumes (or the sweep's summary, which
runs the same ops) carries on from them; every step is idempotent. Metrics, evaluation reports and
whatever else a trial logs stay. ``hpo-cls gc`` (:func:`collect_garbage`) deletes, after the fact, the
checkpoints no registered model was built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, TextIO

from hpo_cls.tracking.backend import TrialRun
from hpo_cls.tracking.runs import FINALIZED_TAG, STATUS_TAG, finalize_trial_op
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.store import experiment_id_of, find_sweep, read_trial_runs, sweep_records
from hpo_cls.train.checkpoint import MODEL_FILE

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["CHECKPOINT_ARTIFACT", "CHECKPOINT_TAG", "KEPT", "DROPPED", "CheckpointPolicy", "delete_checkpoint",
           "registered_source_runs", "collect_garbage"]

CHECKPOINT_ARTIFACT = f"checkpoint/{MODEL_FILE}"  # the trial's best checkpoint, as promote downloads it
CHECKPOINT_TAG = "hpo_cls.checkpoint"
KEPT, DROPPED = "kept", "dropped"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Which trials of sweep ``sweep_id`` keep their checkpoint: the ``keep`` best by ``rule``."""

    sweep_id: str
    rule: ScoreRule
    keep: int

    def finalize_op(self, status: str, reason: str | None, checkpoint_dir: str | None, score: float | None,
                    tags: dict[str, str] | None = None):
        """:func:`finalize_trial_op` that logs the checkpoint only if it ranks among the ``keep`` best so far,
        then drops the checkpoints this one pushed out. Idempotent, like the op it wraps."""

        def op(client, run_id):
            run = client.get_run(run_id)
            if run.data.tags.get(FINALIZED_TAG) == "1":
                return
            extra = dict(tags or {})
            admitted = False
            if checkpoint_dir is not None:
                admitted = self._admits(client, run, status, score)
                extra[CHECKPOINT_TAG] = KEPT if admitted else DROPPED
            finalize_trial_op(status, reason, checkpoint_dir, extra, log_model=admitted)(client, run_id)
            if admitted:
                self.drop_beyond_keep(client, run.info.experiment_id)

        return op

    def prune_op(self):
        """An op (on any run of the sweep's experiment) that drops every kept checkpoint beyond ``keep``: run
        once at the sweep's end, so a ``--resume`` with a smaller ``keep`` applies it too."""
        return lambda client, run_id: self.drop_beyond_keep(client, client.get_run(run_id).info.experiment_id)

    def drop_beyond_keep(self, client: MlflowClient, experiment_id: str) -> list[str]:
        """Delete the checkpoints of the kept trial runs that rank below the ``keep`` best; their run ids."""
        kept = self._ranked_kept(read_trial_runs(client, experiment_id, self.sweep_id))
        dropped = []
        for run in kept[self.keep:]:
            delete_checkpoint(client, run.run_id)
            dropped.append(run.run_id)
        return dropped

    def _admits(self, client: MlflowClient, run, status: str, score: float | None) -> bool:
        if self.keep <= 0 or score is None or status not in ("completed", "early_stopped"):
            return False
        mine = self.rule.keep_key(status, score, run.info.start_time, run.info.run_id)
        others = [r for r in read_trial_runs(client, run.info.experiment_id, self.sweep_id)
                  if r.run_id != run.info.run_id and r.tags.get(CHECKPOINT_TAG) == KEPT]
        return sum(self._key(r) < mine for r in others) < self.keep

    def _ranked_kept(self, runs: Sequence[TrialRun]) -> list[TrialRun]:
        return sorted((r for r in runs if r.tags.get(CHECKPOINT_TAG) == KEPT), key=self._key)

    def _key(self, run: TrialRun) -> tuple:
        return self.rule.keep_key(run.tags.get(STATUS_TAG, run.status), self.rule.score(run.metrics),
                                  run.start_time, run.run_id)


def delete_checkpoint(client: MlflowClient, run_id: str) -> bool:
    """Delete a trial run's ``checkpoint/model.pt`` through its artifact repository and tag the run
    ``dropped``; False when the store kept the file (an artifact store that cannot delete)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if _checkpoint_file(client, run_id) is not None:
        repository = get_artifact_repository(client.get_run(run_id).info.artifact_uri, client.tracking_uri)
        repository.delete_artifacts(CHECKPOINT_ARTIFACT)
        if _checkpoint_file(client, run_id) is not None:
            return False
    client.set_tag(run_id, CHECKPOINT_TAG, DROPPED)
    return True


def _checkpoint_file(client: MlflowClient, run_id: str):
    """The ``checkpoint/model.pt`` artifact's FileInfo (path, size), or None."""
    return next((a for a in client.list_artifacts(run_id, "checkpoint") if a.path == CHECKPOINT_ARTIFACT), None)


def registered_source_runs(client: MlflowClient) -> set[str]:
    """Run ids that a registered model version was built from: its members' source trial runs and the run
    that logged it."""
    used: set[str] = set()
    token = None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        for version in page:
            tags = version.tags or {}
            used |= {r for r in tags.get("hpo_cls.source_run_ids", "").split(",") if r}
            used |= {v for k, v in tags.items() if k.startswith("hpo_cls.member.") and k.endswith(".source_run_id")}
            if version.run_id:
                used.add(version.run_id)
        token = page.token
        if not token:
            return used


def collect_garbage(client: MlflowClient, experiment: str, sweep: str | None, *, dry_run: bool,
                    out: TextIO | None = None) -> tuple[int, int]:
    """``hpo-cls gc``: delete the trial checkpoints of sweep ``sweep`` (every sweep of the experiment when
    None) that no registered model version was built from; ``(checkpoints, bytes)`` deleted (or, with
    ``dry_run``, that would be)."""
    from hpo_cls.console import Steps, format_table, say

    experiment_id = experiment_id_of(client, experiment)
    sweeps = [find_sweep(client, experiment, sweep)] if sweep else sweep_records(client, experiment_id)
    used = registered_source_runs(client)
    found, spared = [], 0
    for record in sweeps:
        for run in read_trial_runs(client, experiment_id, record.sweep_id):
            info = _checkpoint_file(client, run.run_id)
            if info is None:
                continue
            if run.run_id in used:
                spared += 1
            else:
                found.append((record.sweep_id, run, info.file_size or 0))
    total = sum(size for _, _, size in found)
    what = f"{len(found)} trial checkpoint(s), {total / 1e6:.1f} MB"
    spared_text = f"; {spared} kept: registered models were built from them" if spared else ""
    if dry_run:
        if found:
            rows = [[sweep_id, run.trial_id, run.status, f"{size / 1e6:.1f} MB", run.run_id]
                    for sweep_id, run, size in found]
            print(format_table(["sweep", "trial", "status", "size", "mlflow run"], rows), file=out, flush=True)
        say(f"dry run: would delete {what}{spared_text}", out)
        return len(found), total
    deleted, freed = 0, 0
    with Steps(out, unit="checkpoints", line_every=0.25) as steps:
        steps.add("gc", "deleting checkpoints", len(found))
        for i, (_, run, size) in enumerate(found, 1):
            if delete_checkpoint(client, run.run_id):
                deleted, freed = deleted + 1, freed + size
            steps.update("gc", i)
    say(f"deleted {deleted} trial checkpoint(s), {freed / 1e6:.1f} MB{spared_text}", out)
    kept_by_store = len(found) - deleted
    if kept_by_store:
        from hpo_cls.errors import TrackingError

        raise TrackingError(f"the artifact store kept {kept_by_store} checkpoint(s) it was asked to delete (its "
                            "artifact repository cannot delete); delete them where the store keeps its files")
    return deleted, freed
