"""Reading sweeps back from an MLflow store: a sweep's parent run, its trial runs (page by page), and every
sweep of an experiment with what became of it. MLflow only, never Ray's files, so it works from any machine
that sees the tracking server. ``promote``, ``report``, ``sweeps``, ``ui`` and warm start all read through
:func:`read_trial_runs`; :class:`MlflowStore` is the MLflow implementation of
:class:`~hpo_cls.tracking.backend.TrackingStore`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from hpo_cls.errors import TrackingError, echo
from hpo_cls.tracking.backend import SweepRecord, TrialRun
from hpo_cls.tracking.runs import ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG, TRIAL_ID_TAG
from hpo_cls.tracking.uri import redact_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["SweepRecord", "TrialRun", "SweepListing", "MlflowStore", "experiment_id_of", "sweep_records",
           "find_sweep", "sweep_by_id", "read_trial_runs", "metric_history", "list_sweeps", "sweeps_table", "sweep_models",
           "discard_unknown_trial_runs"]

_PAGE = 1000
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass(frozen=True)
class SweepListing:
    """One line of ``hpo-cls sweeps``."""

    record: SweepRecord
    spec_file: str
    statuses: dict[str, int]  # trial status -> count ("running" for trials without a final status)
    best_score: float | None  # by the sweep's own rule (record.rule)
    promotions: int
    duration_s: float | None = None  # start to end of the parent run; None while it runs
    best_trial: str | None = None  # "<trial id> <backbone>" of the best trial
    models: tuple[str, ...] = ()  # "<registered model> v<version>" of each promotion that registered one


def _tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _search(client: MlflowClient, experiment_id: str, tags: Mapping[str, str], order_by: Sequence[str] = (),
            limit: int | None = None) -> Iterator:
    """The runs carrying ``tags``, page after page (at most ``limit``)."""
    token, seen = None, 0
    while True:
        page = client.search_runs([experiment_id], filter_string=_tag_filter(tags), order_by=list(order_by),
                                  max_results=min(_PAGE, limit or _PAGE), page_token=token)
        for run in page:
            yield run
            seen += 1
            if limit is not None and seen >= limit:
                return
        token = page.token
        if not token:
            return


def experiment_id_of(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(f"no MLflow experiment {echo(experiment)} at {redact_uri(client.tracking_uri)} "
                            f"(experiments: {', '.join(names) or 'none'}); pass {{experiment}} or {{tracking_uri}}")
    return found.experiment_id


def _record(run) -> SweepRecord:
    tags = run.data.tags
    return SweepRecord(run.info.run_id, tags.get(SWEEP_ID_TAG, run.info.run_id),
                       tags.get(SWEEP_NAME_TAG, tags.get(SWEEP_ID_TAG, "sweep")), run.info.experiment_id,
                       run.info.start_time or 0, dict(run.data.params))


def _trial_run(run) -> TrialRun:
    tags = run.data.tags
    return TrialRun(run.info.run_id, tags.get(TRIAL_ID_TAG, run.info.run_id[:8]), tags.get(SWEEP_ID_TAG, ""),
                    run.info.experiment_id, run.info.run_name or "", tags.get(STATUS_TAG, "running"),
                    run.info.start_time or 0, dict(run.data.params), dict(run.data.metrics), dict(tags))


def _parent_runs(client: MlflowClient, experiment_id: str, limit: int | None = None) -> list:
    return list(_search(client, experiment_id, {ROLE_TAG: "sweep"}, ["attributes.start_time DESC"], limit))


def sweep_records(client: MlflowClient, experiment_id: str, limit: int | None = None) -> list[SweepRecord]:
    """The experiment's sweeps, newest first."""
    return [_record(run) for run in _parent_runs(client, experiment_id, limit)]


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None) -> SweepRecord:
    """The sweep's parent run: by sweep id, else the newest sweep of that spec name; without ``sweep``
    the newest sweep of the experiment."""
    records = sweep_records(client, experiment_id_of(client, experiment))
    if not records:
        raise TrackingError(f"experiment {echo(experiment)} holds no sweeps; run `hpo-cls sweep` first")
    if sweep is None:
        return records[0]
    match = next((r for r in records if r.sweep_id == sweep), None)
    match = match or next((r for r in records if r.name == sweep), None)
    if match is None:
        listed = [f"{r.sweep_id} ({r.name})" for r in records[:20]]
        more = f" and {len(records) - 20} more" if len(records) > 20 else ""
        raise TrackingError(f"no sweep {echo(sweep)} in experiment {echo(experiment)}; sweeps there (newest first): "
                            f"{', '.join(listed)}{more}")
    return match


def sweep_by_id(client: MlflowClient, experiment_id: str, sweep_id: str) -> SweepRecord | None:
    """The parent run of sweep ``sweep_id`` in an experiment, or None."""
    found = list(_search(client, experiment_id, {SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep"}, limit=1))
    return _record(found[0]) if found else None


def read_trial_runs(client: MlflowClient, experiment_id: str, sweep_id: str | None = None, *,
                    statuses: Sequence[str] | None = None) -> list[TrialRun]:
    """The trial runs of sweep ``sweep_id`` (of every sweep of the experiment when None), oldest first, read
    page by page; only those whose status is in ``statuses`` when given. The one reader of trial runs."""
    tags = {ROLE_TAG: "trial", **({SWEEP_ID_TAG: sweep_id} if sweep_id is not None else {})}
    runs = (_trial_run(run) for run in _search(client, experiment_id, tags, ["attributes.start_time ASC"]))
    return [run for run in runs if statuses is None or run.status in statuses]


def metric_history(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float, int]]:
    """``(step, value, timestamp ms)`` of every value of ``metric`` the run logged, in step order."""
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, metric))


def list_sweeps(client: MlflowClient, experiment: str) -> list[SweepListing]:
    """Every sweep of the experiment, newest first, with its trials by status, best score (by the sweep's own
    metric and mode) and promotions (three searches, whatever the number of sweeps)."""
    experiment_id = experiment_id_of(client, experiment)
    trials: dict[str, list[TrialRun]] = {}
    for run in read_trial_runs(client, experiment_id):
        trials.setdefault(run.sweep_id, []).append(run)
    promotions: dict[str, int] = {}
    models: dict[str, list[str]] = {}
    for run in _search(client, experiment_id, {ROLE_TAG: "promote"}, ["attributes.start_time ASC"]):
        sweep_id = run.data.tags.get(SWEEP_ID_TAG, "")
        promotions[sweep_id] = promotions.get(sweep_id, 0) + 1
        models.setdefault(sweep_id, []).extend(f"{name} v{version}" for name, version in
                                               _registered_versions(client, run.info.run_id))
    listings = []
    for parent in _parent_runs(client, experiment_id):
        record = _record(parent)
        rule, runs = record.rule, trials.get(record.sweep_id, [])
        statuses: dict[str, int] = {}
        for run in runs:
            statuses[run.status] = statuses.get(run.status, 0) + 1
        scored = [(rule.score(r.metrics), r) for r in runs if r.status != "failed"]
        scored = [(score, r) for score, r in scored if score is not None]
        best_run = min(scored, key=lambda sr: rule.key(sr[0]))[1] if scored else None
        best = rule.score(parent.data.metrics)  # the sweep's summary, once it ended
        if best is None and best_run is not None:
            best = rule.score(best_run.metrics)
        end = parent.info.end_time if parent.info.status != "RUNNING" else None
        listings.append(SweepListing(
            record, parent.data.tags.get("hpo_cls.spec_file", ""), statuses, best, promotions.get(record.sweep_id, 0),
            (end - record.start_time) / 1000 if end and record.start_time else None,
            _best_trial(parent.data.tags.get("hpo_cls.best_trial_id"), best_run, runs),
            tuple(models.get(record.sweep_id, ()))))
    return listings


def _best_trial(recorded: str | None, best_run: TrialRun | None, runs: list[TrialRun]) -> str | None:
    """``<trial id> <backbone>``: the trial the sweep's summary named, else the best-scored one so far."""
    run = next((r for r in runs if r.trial_id == recorded), None) if recorded else best_run
    if run is None:
        return recorded
    return " ".join(part for part in (run.trial_id, run.params.get("backbone")) if part)


def _registered_versions(client: MlflowClient, run_id: str) -> list[tuple[str, str]]:
    """``(name, version)`` of the model versions registered from a promote run."""
    return [(v.name, str(v.version)) for v in client.search_model_versions(f"run_id = '{run_id}'")]


def sweep_models(client: MlflowClient, experiment_id: str, sweep_id: str) -> list[tuple[str, str]]:
    """``(name, version)`` of every model version the sweep's promotions registered, oldest first."""
    runs = _search(client, experiment_id, {SWEEP_ID_TAG: sweep_id, ROLE_TAG: "promote"}, ["attributes.start_time ASC"])
    return [found for run in runs for found in _registered_versions(client, run.info.run_id)]


def _duration(seconds: float | None) -> str:
    """``42s``, ``17m``, ``3h05m``; ``running`` while the parent run has no end."""
    if seconds is None:
        return "running"
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def sweeps_table(listings: list[SweepListing]) -> str:
    """``hpo-cls sweeps``: one row per sweep, newest first, each scored by its own metric and mode."""
    from hpo_cls.console import format_table

    order = ("completed", "early_stopped", "failed", "running")
    rows = []
    for item in listings:
        statuses = sorted(item.statuses.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 9, kv[0]))
        trials = ", ".join(f"{n} {s}" for s, n in statuses) or "none"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.record.start_time / 1000))
        promoted = ", ".join(item.models) or (f"yes ({item.promotions})" if item.promotions else "no")
        rows.append([item.record.sweep_id, item.spec_file or item.record.name, started, _duration(item.duration_s),
                     f"{sum(item.statuses.values())}: {trials}", str(item.record.rule),
                     f"{item.best_score:.4f}" if item.best_score is not None else "-", item.best_trial or "-",
                     item.record.run_id, promoted])
    return format_table(["sweep", "spec", "started", "duration", "trials", "metric", "best", "best trial",
                         "parent run", "promoted"], rows)


def discard_unknown_trial_runs(tracking_uri: str, experiment: str, sweep_id: str, known: set[str]) -> int:
    """Delete the sweep's trial runs whose trial Tune does not know after a restore (it started after the
    last experiment snapshot), so the sweep keeps exactly one MLflow run per trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return 0
    unknown = [r for r in read_trial_runs(client, found.experiment_id, sweep_id) if r.tags.get(TRIAL_ID_TAG) not in known]
    for run in unknown:
        client.delete_run(run.run_id)
    return len(unknown)


class MlflowStore:
    """:class:`~hpo_cls.tracking.backend.TrackingStore` on an MLflow tracking store and model registry."""

    def __init__(self, uri: str, client: MlflowClient | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = client or MlflowClient(uri)

    def find_sweep(self, experiment: str, sweep: str | None = None) -> SweepRecord:
        return find_sweep(self.client, experiment, sweep)

    def sweep_by_id(self, experiment_id: str, sweep_id: str) -> SweepRecord | None:
        return sweep_by_id(self.client, experiment_id, sweep_id)

    def trial_runs(self, sweep: SweepRecord, statuses: Sequence[str] | None = None) -> list[TrialRun]:
        return read_trial_runs(self.client, sweep.experiment_id, sweep.sweep_id, statuses=statuses)

    def trial_run(self, run_id: str) -> TrialRun | None:
        from mlflow.exceptions import MlflowException

        try:
            return _trial_run(self.client.get_run(run_id))
        except MlflowException:
            return None

    def metric_history(self, run_id: str, metric: str) -> list[tuple[int, float, int]]:
        return metric_history(self.client, run_id, metric)

    def download_artifact(self, run_id: str, path: str, dst: Path) -> Path | None:
        folder = path.rsplit("/", 1)[0] if "/" in path else None
        if not any(a.path == path for a in self.client.list_artifacts(run_id, folder)):
            return None
        Path(dst).mkdir(parents=True, exist_ok=True)
        previous = os.environ.get(_PROGRESS_BAR_ENV)
        os.environ[_PROGRESS_BAR_ENV] = "false"  # small files: MLflow's progress bar would only clutter stderr
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        finally:
            if previous is None:
                os.environ.pop(_PROGRESS_BAR_ENV, None)
            else:
                os.environ[_PROGRESS_BAR_ENV] = previous
