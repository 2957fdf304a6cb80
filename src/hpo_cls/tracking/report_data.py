"""What a sweep report shows, read from MLflow only: the sweep's trials with their searched values, scores,
per-epoch histories and (for the best few) per-class F1 — so a report can be made on any machine that sees
the tracking server, long after Ray's files are gone."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo_cls.tracking.runs import STATUS_TAG, TRIAL_ID_TAG
from hpo_cls.tracking.store import SCORE_METRIC, SweepRecord, trial_runs

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["TrialData", "SweepData", "load_sweep_data", "typed_value", "EVALUATION_ARTIFACT", "HISTORY_METRIC"]

EVALUATION_ARTIFACT = "checkpoint/evaluation.json"  # per-class report of a trial's best epoch
HISTORY_METRIC = "val_acc"  # the curves; trials are ranked by its best, SCORE_METRIC


@dataclass
class TrialData:
    run_id: str
    trial_id: str
    name: str
    status: str  # completed | early_stopped | failed | running
    epochs_run: int
    best: float | None
    params: dict[str, Any]  # searched values, typed
    history: list[tuple[int, float, int]] = field(default_factory=list)  # (epoch, metric, timestamp ms)
    per_class: list[dict] | None = None  # [{"class", "precision", "recall", "f1", "support"}] of its best epoch


@dataclass
class SweepData:
    sweep: SweepRecord
    experiment: str
    metric: str
    epochs: int
    searched: list[str]
    trials: list[TrialData]

    def ranked(self) -> list[TrialData]:
        """Trials with a score, best first (failed ones never rank)."""
        scored = [t for t in self.trials if t.best is not None and t.status != "failed"]
        return sorted(scored, key=lambda t: -t.best)


def typed_value(text: str) -> Any:
    """An MLflow param string as the number it spells, else the string."""
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _trial(client: MlflowClient, run, metric: str, searched: list[str]) -> TrialData:
    tags, metrics = run.data.tags, run.data.metrics
    history = sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run.info.run_id, metric))
    best = metrics.get(SCORE_METRIC)
    if best is None and history:
        best = max(value for _, value, _ in history)
    status = tags.get(STATUS_TAG, "running")
    epochs_run = int(tags.get("hpo_cls.epochs_run", max((step for step, _, _ in history), default=0)))
    params = {name: typed_value(run.data.params[name]) for name in searched if name in run.data.params}
    return TrialData(run.info.run_id, tags.get(TRIAL_ID_TAG, run.info.run_id[:8]), run.info.run_name or "",
                     status, epochs_run, best, params, history)


def _per_class(client: MlflowClient, run_id: str) -> list[dict] | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, EVALUATION_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - a trial without the artifact (failed early, older store) has no F1
            return None
        return json.loads(Path(local).read_text()).get("per_class")


def load_sweep_data(client: MlflowClient, sweep: SweepRecord, experiment: str, per_class_top: int = 3) -> SweepData:
    """The sweep's trials from its MLflow runs; per-class F1 of the ``per_class_top`` best."""
    metric = HISTORY_METRIC
    searched = [name for name in sweep.params.get("searched", "").split(",") if name]
    trials = [_trial(client, run, metric, searched) for run in trial_runs(client, sweep)]
    data = SweepData(sweep, experiment, metric, int(float(sweep.params.get("epochs", 0) or 0)), searched, trials)
    for trial in data.ranked()[:per_class_top]:
        trial.per_class = _per_class(client, trial.run_id)
    return data
