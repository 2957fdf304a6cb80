"""What a sweep produced: each trial's status and best score, ranked, and the summary printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo_cls.console import format_cell, format_table, say
from hpo_cls.errors import SpecError
from hpo_cls.search.objective_values import objective_values, pareto_front
from hpo_cls.spec import COST_METRICS, METRIC_MODES, SweepSpec, TrialConfig, trial_config_from_dict
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.ui import is_local_store, run_url, runs_view_url, ui_base_url
from hpo_cls.tracking.uri import redact_uri

__all__ = ["TrialOutcome", "SweepOutcome", "trial_status", "error_text", "trial_id_of", "sampled", "status_counts",
           "ranked", "trial_values", "pareto_members", "find_baseline", "gain_over", "print_summary"]

STATUSES = ("completed", "early_stopped", "failed")


@dataclass
class TrialOutcome:
    trial_id: str
    status: str
    epochs_run: int
    best_score: float | None
    config: dict[str, Any]
    run_id: str | None
    values: dict[str, float] = field(default_factory=dict)  # objectives (best over epochs) and costs


@dataclass
class SweepOutcome:
    sweep_id: str
    parent_run_id: str | None
    experiment_path: str
    trials: list[TrialOutcome]
    experiment_id: str | None = None  # the MLflow experiment's
    report: bool = False  # report.html is logged on the parent run


def trial_status(last_result: dict | None, epochs: int, errored: bool) -> tuple[str, str | None]:
    """``(status, reason)`` of a finished trial: completed | early_stopped | failed."""
    if errored:
        return "failed", None
    if last_result and last_result.get("failure"):
        return "failed", str(last_result["failure"])
    if not last_result or last_result.get("epoch", 0) < epochs:
        return "early_stopped", None
    return "completed", None


def error_text(trial) -> str:
    try:
        with open(trial.error_file) as f:
            lines = [line for line in f.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else "trial raised an error"
    except (OSError, TypeError):
        return "trial raised an error"


def trial_id_of(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def sampled(config: dict) -> dict:
    """The trial's sampled hyperparameters (Tune may add keys of its own)."""
    fields = TrialConfig.__dataclass_fields__
    return {k: v for k, v in (config or {}).items() if k in fields}


def status_counts(trials: list[TrialOutcome]) -> dict[str, int]:
    return {s: sum(t.status == s for t in trials) for s in STATUSES}


def ranked(trials: list[TrialOutcome], rule: ScoreRule) -> list[TrialOutcome]:
    """Trials with a score, best first by the sweep's rule."""
    scored = [t for t in trials if t.best_score is not None]
    return sorted(scored, key=lambda t: rule.key(t.best_score))


def trial_values(history, last_result: dict | None, spec: SweepSpec) -> dict[str, float]:
    """Each training objective's best value over the trial's epochs (``history``: a frame of its results)
    and the cost metrics of its last result."""
    values = {}
    for objective in spec.objectives:
        if objective.metric in METRIC_MODES and history is not None and objective.metric in history:
            best = ScoreRule(objective.metric, objective.mode).best(history[objective.metric].dropna())
            if best is not None:
                values[objective.metric] = best
    for metric in COST_METRICS:
        if isinstance((last_result or {}).get(metric), (int, float)):
            values[metric] = float(last_result[metric])
    return values


def pareto_members(spec: SweepSpec, trials: list[TrialOutcome]) -> list[TrialOutcome]:
    """The completed trials on the Pareto front of the spec's objectives, best first objective first."""
    scored = [(t, objective_values(t.values, spec.objectives)) for t in trials if t.status == "completed"]
    scored = [(t, v) for t, v in scored if v is not None]
    front = [scored[i][0] for i in pareto_front([v for _, v in scored], [o.mode for o in spec.objectives])]
    first = spec.objectives[0]
    return sorted(front, key=lambda t: t.values[first.metric], reverse=first.mode == "max")


def _print_pareto(spec: SweepSpec, trials: list[TrialOutcome], out) -> None:
    front = pareto_members(spec, trials)
    metrics = [o.metric for o in spec.objectives]
    print(f"\nPareto front of {', '.join(f'{o.metric} ({o.mode})' for o in spec.objectives)}: {len(front)} of "
          f"{sum(t.status == 'completed' for t in trials)} completed trial(s)", file=out)
    rows = [[str(i + 1), t.trial_id, *[f"{t.values[m]:.4g}" for m in metrics],
             *[format_cell(t.config.get(p.name, "·")) for p in spec.search.space][:4], t.run_id or "-"]
            for i, t in enumerate(front)]
    print(format_table(["#", "trial", *metrics, *[p.name for p in spec.search.space][:4], "mlflow run"], rows), file=out)


def find_baseline(spec: SweepSpec, trials: list[TrialOutcome]) -> TrialOutcome | None:
    """Trial 0 of a baseline-first sweep: the first trial (in creation order) that trained exactly the
    spec's fixed configuration; None when the sweep has no baseline or it never ran."""
    if not (spec.search.baseline_first and spec.search.space):
        return None
    for trial in trials:
        try:
            if trial_config_from_dict(trial.config, base=spec.fixed) == spec.fixed:
                return trial
        except SpecError:
            continue
    return None


def gain_over(baseline: TrialOutcome, best: TrialOutcome, mode: str) -> float:
    """How much better ``best`` scored than ``baseline`` (positive = better, for either mode)."""
    difference = best.best_score - baseline.best_score
    return difference if mode == "max" else -difference


def _baseline_lines(spec: SweepSpec, baseline: TrialOutcome | None, best_first: list[TrialOutcome]) -> list[str]:
    if not (spec.search.baseline_first and spec.search.space):
        return []
    if baseline is None:
        return ["baseline: trial 0 (the spec's fixed configuration) is not among the ended trials"]
    head = f"baseline: trial {baseline.trial_id} = trial 0, the spec's fixed configuration ({baseline.status}"
    if baseline.best_score is None or baseline.status == "failed":
        return [head + "): no score, so no gain over it"]
    lines = [head + f", {baseline.epochs_run} epochs): best {spec.metric} {baseline.best_score:.4f}"]
    best = best_first[0]
    if best is baseline or gain_over(baseline, best, spec.mode) <= 0:
        lines.append("best trial: the baseline; no searched configuration beat the spec's fixed configuration")
    else:
        gain = gain_over(baseline, best, spec.mode)
        better = "higher" if spec.mode == "max" else "lower"
        lines.append(f"best trial {best.trial_id}: {spec.metric} {best.best_score:.4f}, gain over the baseline "
                     f"{gain:+.4f} ({better} {spec.metric})")
    return lines


def print_summary(spec: SweepSpec, outcome: SweepOutcome, out) -> None:
    best_first = ranked(outcome.trials, ScoreRule(spec.metric, spec.mode))
    baseline = find_baseline(spec, outcome.trials)
    counts = status_counts(outcome.trials)
    print(file=out)
    say(f"sweep {outcome.sweep_id} finished: " + ", ".join(f"{v} {k}" for k, v in counts.items()), out)
    names = list(spec.search.names)[:6]
    rows = [
        [str(i + 1), t.trial_id + (" (baseline)" if t is baseline else ""), t.status, str(t.epochs_run),
         f"{t.best_score:.4f}",
         *[format_cell(t.config.get(n, "·")) for n in names], t.run_id or "-"]
        for i, t in enumerate(best_first[:5])
    ]
    print(format_table(["#", "trial", "status", "epochs", f"best {spec.metric}", *names, "mlflow run"], rows), file=out)
    for line in _baseline_lines(spec, baseline, best_first):
        print(line, file=out)
    if spec.multi_objective:
        _print_pareto(spec, outcome.trials, out)
    uri = redact_uri(spec.tracking.uri)
    experiment = f" --experiment {spec.tracking.experiment}" if spec.tracking.experiment != "hpo-cls" else ""
    print(f"\nMLflow parent run: {outcome.parent_run_id} (experiment {spec.tracking.experiment!r})", file=out)
    if outcome.report:
        print(f"Report:        report.html on the parent run; or hpo-cls report {outcome.sweep_id}{experiment} "
              f"--tracking-uri {uri} --out report.html", file=out)
    print(f"Promote:       hpo-cls promote --top 2 --sweep {outcome.sweep_id}{experiment} --tracking-uri {uri}", file=out)
    if spec.multi_objective:
        print(f"From the front: hpo-cls promote --pareto --top 1 --max-params N --sweep {outcome.sweep_id}{experiment} "
              f"--tracking-uri {uri}", file=out)
    base = ui_base_url(spec.tracking.uri)
    if is_local_store(spec.tracking.uri):
        print(f"Open the UI:   hpo-cls ui --tracking-uri {uri}{experiment}   then:", file=out)
    if outcome.experiment_id is not None:
        print(f"Runs view:     {runs_view_url(base, outcome.experiment_id, outcome.sweep_id)}", file=out)
        if outcome.parent_run_id:
            print(f"Parent run:    {run_url(base, outcome.experiment_id, outcome.parent_run_id)}", file=out)
    out.flush()
