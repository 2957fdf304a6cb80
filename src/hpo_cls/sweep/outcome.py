"""What a sweep produced: each trial's status and best score, ranked, and the summary printed at the end."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_cls.console import format_cell, format_table, say
from hpo_cls.spec import SweepSpec, TrialConfig
from hpo_cls.tracking.uri import redact_uri

__all__ = ["TrialOutcome", "SweepOutcome", "trial_status", "error_text", "trial_id_of", "sampled", "status_counts",
           "ranked", "print_summary"]

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


def print_summary(spec: SweepSpec, outcome: SweepOutcome, out) -> None:
    best_first = ranked(outcome.trials, spec.mode)
    counts = status_counts(outcome.trials)
    print(file=out)
    say(f"sweep {outcome.sweep_id} finished: " + ", ".join(f"{v} {k}" for k, v in counts.items()), out)
    names = list(spec.search.names)[:6]
    rows = [
        [str(i + 1), t.trial_id, t.status, str(t.epochs_run), f"{t.best_score:.4f}",
         *[format_cell(t.config.get(n, "·")) for n in names], t.run_id or "-"]
        for i, t in enumerate(best_first[:5])
    ]
    print(format_table(["#", "trial", "status", "epochs", f"best {spec.metric}", *names, "mlflow run"], rows), file=out)
    uri = redact_uri(spec.tracking.uri)
    print(f"\nMLflow parent run: {outcome.parent_run_id} (experiment {spec.tracking.experiment!r})", file=out)
    print(f"Open the UI:   hpo-cls ui --tracking-uri {uri}", file=out)
    print(f"Promote:       hpo-cls promote --top 2 --sweep {outcome.sweep_id} --tracking-uri {uri}", file=out, flush=True)
