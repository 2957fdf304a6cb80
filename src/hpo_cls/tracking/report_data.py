"""What a sweep report shows, read from MLflow only: the sweep's trials with their searched values, scores,
per-epoch histories and (for the best few) per-class F1 — so a report can be made on any machine that sees
the tracking server, long after Ray's files are gone."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo_cls.spec import COST_METRICS, Objective
from hpo_cls.tracking.runs import BASELINE_TAG, objectives_from_param, typed_params
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.store import SweepRecord, TrialRun, metric_history, read_trial_runs

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ["TrialData", "SweepData", "load_sweep_data", "EVALUATION_ARTIFACT"]

EVALUATION_ARTIFACT = "checkpoint/evaluation.json"  # per-class report of a trial's best epoch


@dataclass
class TrialData:
    run_id: str
    trial_id: str
    name: str
    status: str  # completed | early_stopped | failed | running
    epochs_run: int
    best: float | None  # by the sweep's rule: its metric's best value
    params: dict[str, Any]  # searched values, typed
    history: list[tuple[int, float, int]] = field(default_factory=list)  # (epoch, metric, timestamp ms)
    per_class: list[dict] | None = None  # [{"class", "precision", "recall", "f1", "support"}] of its best epoch
    baseline: bool = False  # trial 0: the spec's fixed configuration
    values: dict[str, float] = field(default_factory=dict)  # its costs and other objectives, as logged


@dataclass
class SweepData:
    sweep: SweepRecord
    experiment: str
    metric: str  # the sweep's metric: the curves, and what trials are ranked by
    epochs: int
    searched: list[str]
    trials: list[TrialData]
    mode: str = "max"
    objectives: tuple[Objective, ...] = ()  # a multi-objective sweep's, as its parent run records them

    @property
    def rule(self) -> ScoreRule:
        return ScoreRule(self.metric, self.mode)

    def ranked(self) -> list[TrialData]:
        """Trials with a score, best first by the sweep's rule (failed ones never rank)."""
        scored = [t for t in self.trials if t.best is not None and t.status != "failed"]
        return sorted(scored, key=lambda t: self.rule.key(t.best))


def _trial(client: MlflowClient, run: TrialRun, rule: ScoreRule, searched: list[str],
           extra_metrics: frozenset[str] = frozenset()) -> TrialData:
    history = metric_history(client, run.run_id, rule.metric)
    best = rule.score(run.metrics, lambda: [value for _, value, _ in history])
    epochs_run = int(run.tags.get("hpo_cls.epochs_run", max((step for step, _, _ in history), default=0)))
    params = {name: value for name, value in typed_params(run.params).items() if name in searched}
    values = {name: value for name, value in run.metrics.items() if name in COST_METRICS or name in extra_metrics}
    return TrialData(run.run_id, run.trial_id, run.name, run.status, epochs_run, best, params, history,
                     baseline=run.tags.get(BASELINE_TAG) == "true", values=values)


def _per_class(client: MlflowClient, run_id: str) -> list[dict] | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, EVALUATION_ARTIFACT, tmp)
        except Exception:  # noqa: BLE001 - a trial without the artifact (failed early, older store) has no F1
            return None
        return json.loads(Path(local).read_text()).get("per_class")


def load_sweep_data(client: MlflowClient, sweep: SweepRecord, experiment: str, per_class_top: int = 3) -> SweepData:
    """The sweep's trials from its MLflow runs; per-class F1 of the ``per_class_top`` best."""
    rule, searched = sweep.rule, sweep.searched
    objectives = objectives_from_param(sweep.params.get("objectives"))
    extra = frozenset(o.metric for o in objectives[1:])
    trials = [_trial(client, run, rule, searched, extra)
              for run in read_trial_runs(client, sweep.experiment_id, sweep.sweep_id)]
    data = SweepData(sweep, experiment, rule.metric, int(float(sweep.params.get("epochs", 0) or 0)), searched, trials,
                     rule.mode, objectives)
    for trial in data.ranked()[:per_class_top]:
        trial.per_class = _per_class(client, trial.run_id)
    return data
