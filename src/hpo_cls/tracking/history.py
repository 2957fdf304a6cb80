"""Earlier sweeps read back from MLflow for warm start: the finished trials of a sweep, as they were logged."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpo_cls.errors import SweepError
from hpo_cls.tracking.store import metric_history, read_trial_runs, sweep_by_id
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
    if found is None or sweep_by_id(client, found.experiment_id, sweep_id) is None:
        raise SweepError(f"{{warm_start}} {sweep_id}: no such sweep in experiment {experiment!r} at "
                         f"{redact_uri(tracking_uri)}")
    trials = []
    for run in read_trial_runs(client, found.experiment_id, sweep_id, statuses=FINISHED):
        history = {}
        if history_metric and run.status == "early_stopped":
            history = {step: value for step, value, _ in metric_history(client, run.run_id, history_metric)}
        trials.append(RecordedTrial(sweep_id, run.trial_id, run.status, run.params, run.metrics, history))
    return trials
