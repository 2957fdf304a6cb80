"""What a sweep produced: each trial's status and best score, ranked, and the summary printed at the end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_cls.console import format_cell, format_table, say
from hpo_cls.errors import SpecError
from hpo_cls.spec import SweepSpec, TrialConfig, trial_config_from_dict
from hpo_cls.tracking.uri import redact_uri

__all__ = ["TrialOutcome", "SweepOutcome", "trial_status", "error_text", "trial_id_of", "sampled", "status_counts",
           "ranked", "find_baseline", "gain_over", "print_summary"]

STATUSES = ("completed", "early_stopped", "failed")


@dataclass
class TrialOutcome:
    trial_id: str
    status: str
    epochs_run: int
    best_score: float | None
    config: dict[str, Any]
    run_id: str | None


@dataclass
class SweepOutcome:
    sweep_id: str
    parent_run_id: str | None
    experiment_path: str
    trials: list[TrialOutcome]


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


def ranked(trials: list[TrialOutcome], mode: str) -> list[TrialOutcome]:
    scored = [t for t in trials if t.best_score is not None]
    return sorted(scored, key=lambda t: t.best_score, reverse=(mode == "max"))


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
    best_first = ranked(outcome.trials, spec.mode)
    baseline = find_baseline(spec, outcome.trials)
    counts = status_counts(outcome.trials)
    print(file=out)
    say(f"sweep {outcome.sweep_id} finished: " + ", ".join(f"{v} {k}" for k, v in counts.items()), out)
    names = [p.name for p in spec.search.space][:6]
    rows = [
        [str(i + 1), t.trial_id + (" (baseline)" if t is baseline else ""), t.status, str(t.epochs_run),
         f"{t.best_score:.4f}",
         *[format_cell(t.config.get(n, "·")) for n in names], t.run_id or "-"]
        for i, t in enumerate(best_first[:5])
    ]
    print(format_table(["#", "trial", "status", "epochs", f"best {spec.metric}", *names, "mlflow run"], rows), file=out)
    for line in _baseline_lines(spec, baseline, best_first):
        print(line, file=out)
    uri = redact_uri(spec.tracking.uri)
    print(f"\nMLflow parent run: {outcome.parent_run_id} (experiment {spec.tracking.experiment!r})", file=out)
    print(f"Open the UI:   hpo-cls ui --tracking-uri {uri}", file=out)
    print(f"Promote:       hpo-cls promote --top 2 --sweep {outcome.sweep_id} --tracking-uri {uri}", file=out, flush=True)
