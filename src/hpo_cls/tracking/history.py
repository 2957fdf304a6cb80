"""Earlier sweeps read back from MLflow: the finished trials of a sweep, as they were logged."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpo_cls.errors import SweepError
from hpo_cls.tracking.runs import (
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    TRIAL_ID_TAG,
    find_run,
)
from hpo_cls.tracking.uri import redact_uri

__all__ = ["RecordedTrial", "FINISHED", "load_finished_trials"]

FINISHED = ("completed", "early_stopped")


@dataclass(frozen=True)
class RecordedTrial:
    """A finished trial run: params as the strings MLflow holds, each metric's last value, and the
    per-epoch history of one metric (when asked for) of early-stopped trials."""

    sweep_id: str
    trial_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    history: dict[int, float] = field(default_factory=dict)


def load_finished_trials(tracking_uri: str, experiment: str, sweep_id: str,
                         history_metric: str | None = None) -> list[RecordedTrial]:
    """The completed and early-stopped trial runs of sweep ``sweep_id``, oldest first; raises SweepError
    (naming ``{warm_start}``) when the store holds no such sweep."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or find_run(client, found.experiment_id, {SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep"}) is None:
        raise SweepError(f"{{warm_start}} {sweep_id}: no such sweep in experiment {experiment!r} at "
                         f"{redact_uri(tracking_uri)}")
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], max_results=1000, page_token=token,
                                  filter_string=f"tags.`{SWEEP_ID_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'trial'",
                                  order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            break
    trials = []
    for run in runs:
        status = run.data.tags.get(STATUS_TAG)
        if status not in FINISHED:
            continue
        history = {}
        if history_metric and status == "early_stopped":
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, history_metric)}
        trials.append(RecordedTrial(sweep_id, run.data.tags.get(TRIAL_ID_TAG, run.info.run_id), status,
                                    dict(run.data.params), dict(run.data.metrics), history))
    return trials
