"""Reading sweeps back from an MLflow store: find a sweep's parent run, its trial runs, and every sweep of
an experiment with what became of it. MLflow only, never Ray's files, so it works from any machine that
sees the tracking server (``promote``, ``report``, ``sweeps`` and ``ui`` all read through here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from hpo_cls.errors import TrackingError, echo
from hpo_cls.tracking.runs import ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG
from hpo_cls.tracking.uri import redact_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["SCORE_METRIC", "SweepRecord", "SweepListing", "tag_filter", "search_all", "experiment_id_of", "find_sweep",
           "trial_runs", "list_sweeps", "sweeps_table"]

SCORE_METRIC = "best_val_acc"  # every trial run logs it each epoch; sweeps are ranked by it


@dataclass(frozen=True)
class SweepRecord:
    """The parent run of a sweep."""

    run_id: str
    sweep_id: str
    name: str
    experiment_id: str
    start_time: int
    params: dict[str, str]


@dataclass(frozen=True)
class SweepListing:
    """One line of ``hpo-cls sweeps``."""

    record: SweepRecord
    spec_file: str
    statuses: dict[str, int]  # trial status -> count ("running" for trials without a final status)
    best_score: float | None
    promotions: int


def tag_filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str]) -> list:
    """Every run matching ``filter_string``, page after page."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def experiment_id_of(client: MlflowClient, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(f"no MLflow experiment {echo(experiment)} at {redact_uri(client.tracking_uri)} "
                            f"(experiments: {', '.join(names) or 'none'}); pass {{experiment}} or {{tracking_uri}}")
    return found.experiment_id


def _record(run, experiment_id: str) -> SweepRecord:
    tags = run.data.tags
    return SweepRecord(run.info.run_id, tags.get(SWEEP_ID_TAG, run.info.run_id),
                       tags.get(SWEEP_NAME_TAG, tags.get(SWEEP_ID_TAG, "sweep")), experiment_id,
                       run.info.start_time or 0, dict(run.data.params))


def _parents(client: MlflowClient, experiment_id: str) -> list:
    return search_all(client, experiment_id, tag_filter({ROLE_TAG: "sweep"}), ["attributes.start_time DESC"])


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None) -> SweepRecord:
    """The sweep's parent run: by sweep id, else the newest sweep of that spec name; without ``sweep``
    the newest sweep of the experiment."""
    experiment_id = experiment_id_of(client, experiment)
    parents = _parents(client, experiment_id)
    if not parents:
        raise TrackingError(f"experiment {echo(experiment)} holds no sweeps; run `hpo-cls sweep` first")
    if sweep is None:
        match = parents[0]
    else:
        match = next((r for r in parents if r.data.tags.get(SWEEP_ID_TAG) == sweep), None)
        match = match or next((r for r in parents if r.data.tags.get(SWEEP_NAME_TAG) == sweep), None)
    if match is None:
        listed = [f"{r.data.tags.get(SWEEP_ID_TAG)} ({r.data.tags.get(SWEEP_NAME_TAG, '?')})" for r in parents[:20]]
        more = f" and {len(parents) - 20} more" if len(parents) > 20 else ""
        raise TrackingError(f"no sweep {echo(sweep)} in experiment {echo(experiment)}; sweeps there (newest first): "
                            f"{', '.join(listed)}{more}")
    return _record(match, experiment_id)


def trial_runs(client: MlflowClient, sweep: SweepRecord) -> list:
    """The sweep's trial runs, oldest first."""
    return search_all(client, sweep.experiment_id, tag_filter({SWEEP_ID_TAG: sweep.sweep_id, ROLE_TAG: "trial"}),
                      ["attributes.start_time ASC"])


def list_sweeps(client: MlflowClient, experiment: str) -> list[SweepListing]:
    """Every sweep of the experiment, newest first, with its trials by status, best score and promotions
    (three searches, whatever the number of sweeps)."""
    experiment_id = experiment_id_of(client, experiment)
    trials: dict[str, list] = {}
    for run in search_all(client, experiment_id, tag_filter({ROLE_TAG: "trial"}), []):
        trials.setdefault(run.data.tags.get(SWEEP_ID_TAG, ""), []).append(run)
    promotions: dict[str, int] = {}
    for run in search_all(client, experiment_id, tag_filter({ROLE_TAG: "promote"}), []):
        sweep_id = run.data.tags.get(SWEEP_ID_TAG, "")
        promotions[sweep_id] = promotions.get(sweep_id, 0) + 1
    listings = []
    for parent in _parents(client, experiment_id):
        record = _record(parent, experiment_id)
        runs = trials.get(record.sweep_id, [])
        statuses: dict[str, int] = {}
        for run in runs:
            status = run.data.tags.get(STATUS_TAG, "running")
            statuses[status] = statuses.get(status, 0) + 1
        scores = [r.data.metrics[SCORE_METRIC] for r in runs
                  if SCORE_METRIC in r.data.metrics and r.data.tags.get(STATUS_TAG) != "failed"]
        best = parent.data.metrics.get(SCORE_METRIC, max(scores, default=None))
        listings.append(SweepListing(record, parent.data.tags.get("hpo_cls.spec_file", ""), statuses, best,
                                     promotions.get(record.sweep_id, 0)))
    return listings


def sweeps_table(listings: list[SweepListing]) -> str:
    """``hpo-cls sweeps``: one row per sweep, newest first."""
    from hpo_cls.console import format_table

    order = ("completed", "early_stopped", "failed", "running")
    rows = []
    for item in listings:
        statuses = sorted(item.statuses.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 9, kv[0]))
        trials = ", ".join(f"{n} {s}" for s, n in statuses) or "none"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(item.record.start_time / 1000))
        rows.append([item.record.sweep_id, item.spec_file or item.record.name, started,
                     f"{sum(item.statuses.values())}: {trials}",
                     f"{item.best_score:.4f}" if item.best_score is not None else "-",
                     f"yes ({item.promotions})" if item.promotions else "no"])
    return format_table(["sweep", "spec", "started", "trials", SCORE_METRIC, "promoted"], rows)
