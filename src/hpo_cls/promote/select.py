"""Finding a sweep in MLflow and choosing which of its runs to promote.

Selection reads MLflow only, never Ray's result files, so promote works on any machine that sees the
tracking server. Each trial's TrialConfig is rebuilt from its logged params.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import yaml
from mlflow.tracking import MlflowClient

from hpo_cls.errors import PromoteError, SpecError
from hpo_cls.spec import TrialConfig, trial_config_from_dict
from hpo_cls.tracking.runs import STATUS_TAG, SWEEP_ID_TAG, TRIAL_ID_TAG
from hpo_cls.tracking.store import SCORE_METRIC, SweepRecord, find_sweep, trial_runs

__all__ = [
    "PromoteError",
    "SCORE_METRIC",
    "SweepRecord",
    "Candidate",
    "find_sweep",
    "typed_params",
    "load_candidates",
    "candidate_from_run",
    "select_top_runs",
    "near_duplicate_pairs",
    "format_selection",
]

SELECTABLE = ("completed", "early_stopped")
DEDUPE_TOLERANCE = 0.05  # numeric params within 5% (relative) count as the same value


@dataclass(frozen=True)
class Candidate:
    """A trial run of the sweep with its score and the TrialConfig rebuilt from its params."""

    run_id: str
    trial_id: str
    status: str
    score: float
    config: TrialConfig
    start_time: int
    sweep_id: str = ""  # the sweep the run belongs to (promote can mix sweeps)


def _type_of(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of a field annotation, unwrapping ``X | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def typed_params(params: Mapping[str, str]) -> dict[str, Any]:
    """MLflow param strings -> typed values of the TrialConfig fields (others are dropped).

    Types come from the TrialConfig annotations, not from the text, so a string field holding
    ``"1e-3"`` or ``"on"`` stays a string; lists (``"[1024, 512]"``) are read as YAML.
    """
    hints = typing.get_type_hints(TrialConfig)
    typed: dict[str, Any] = {}
    for name, text in params.items():
        if name not in hints:
            continue
        tp, optional = _type_of(hints[name])
        if optional and text == "None":
            typed[name] = None
        elif tp is bool:
            typed[name] = {"true": True, "false": False}.get(text.lower(), text)  # bad text: config reports it
        elif tp is int:
            typed[name] = int(float(text)) if _is_number(text) and float(text).is_integer() else text
        elif tp is float:
            typed[name] = float(text) if _is_number(text) else text
        elif typing.get_origin(tp) is tuple:
            try:
                typed[name] = yaml.safe_load(text)
            except yaml.YAMLError:
                typed[name] = text
        else:
            typed[name] = text
    return typed


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _score(client: MlflowClient, run) -> float | None:
    """The sweep's score of a run: its best_val_acc, or the max of its val_acc history."""
    if SCORE_METRIC in run.data.metrics:
        return run.data.metrics[SCORE_METRIC]
    history = client.get_metric_history(run.info.run_id, "val_acc")
    return max((m.value for m in history), default=None)


def load_candidates(client: MlflowClient, sweep: SweepRecord, warn: Callable[[str], None] = print) -> list[Candidate]:
    """Finished trial runs (completed or early stopped) of the sweep that have a score."""
    candidates = []
    for run in trial_runs(client, sweep):
        if run.data.tags.get(STATUS_TAG) not in SELECTABLE:
            continue
        try:
            candidate = candidate_from_run(client, run)
        except SpecError as exc:
            warn(f"skipping run {run.info.run_id}: its params are not a valid config: {'; '.join(exc.problems)}")
            continue
        if candidate is not None:
            candidates.append(candidate)
    return candidates


def candidate_from_run(client: MlflowClient, run) -> Candidate | None:
    """A trial run as a Candidate (config rebuilt from its params); None without a score. Raises SpecError
    when its params are not a valid config."""
    score = _score(client, run)
    if score is None:
        return None
    cfg = trial_config_from_dict(typed_params(run.data.params))
    tags = run.data.tags
    return Candidate(run.info.run_id, tags.get(TRIAL_ID_TAG, run.info.run_id[:8]), tags.get(STATUS_TAG, ""),
                     float(score), cfg, run.info.start_time or 0, tags.get(SWEEP_ID_TAG, ""))


def _near_duplicate(a: TrialConfig, b: TrialConfig, tolerance: float = DEDUPE_TOLERANCE) -> bool:
    """Same categorical values, numeric values within ``tolerance`` (relative); the seed is ignored."""
    for f in dataclasses.fields(TrialConfig):
        if f.name == "seed":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            if x != y:
                return False
        elif abs(x - y) > tolerance * max(abs(x), abs(y)):
            return False
    return True


def select_top_runs(candidates: Sequence[Candidate], top: int, *, include_early_stopped: bool = False,
                    dedupe: bool = False, diverse: str | None = None) -> list[Candidate]:
    """The ``top`` best candidates by score (ties: earlier run first); raises PromoteError if too few qualify.

    ``diverse``: a TrialConfig key; the best run of each distinct value of it comes first (the best
    ``top`` of them if there are more values), the remaining places go to the next best runs.
    """
    if top < 1:
        raise PromoteError(f"{{top}} must be >= 1, got {top}")
    if diverse is not None and diverse not in TrialConfig.__dataclass_fields__:
        raise PromoteError(f"{{diverse}} {diverse}: not a configuration key (known: "
                           f"{', '.join(TrialConfig.__dataclass_fields__)})")
    statuses = SELECTABLE if include_early_stopped else ("completed",)
    ranked = sorted((c for c in candidates if c.status in statuses), key=lambda c: (-c.score, c.start_time, c.run_id))
    kept: list[Candidate] = []
    for c in ranked:
        if not dedupe or not any(_near_duplicate(c.config, k.config) for k in kept):
            kept.append(c)
    if diverse is not None:
        firsts, seen = [], set()
        for c in kept:  # best first, so the first run of each value is its best
            if getattr(c.config, diverse) not in seen:
                seen.add(getattr(c.config, diverse))
                firsts.append(c)
        rest = [c for c in kept if c not in firsts[:top]]
        kept = sorted(firsts[:top] + rest[: max(0, top - len(firsts))], key=kept.index)
    if len(kept) >= top:
        return kept[:top]
    early = sum(c.status == "early_stopped" for c in candidates)
    what = "completed or early-stopped" if include_early_stopped else "completed"
    message = f"{{top}} {top}: only {len(kept)} {what} run(s) with a score qualify"
    if dedupe and len(ranked) > len(kept):
        message += f" ({len(ranked) - len(kept)} near-duplicate config(s) removed by {{dedupe}})"
    hints = ["lower {top}"]
    if early and not include_early_stopped:
        hints.insert(0, f"add {{include_early_stopped}} ({early} early-stopped run(s) available)")
    raise PromoteError(f"{message}; {' or '.join(hints)}")


def near_duplicate_pairs(selected: Sequence[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """(better, worse) pairs of selected runs whose configs are near-identical: averaging them adds little."""
    return [(a, b) for j, b in enumerate(selected) for a in selected[:j] if _near_duplicate(a.config, b.config)]


def format_selection(selected: Sequence[Candidate], param_names: Sequence[str]) -> str:
    """The chosen runs as a table: rank, (sweep, when they come from several), trial, status, score, the
    searched params, run id."""
    from hpo_cls.console import format_cell, format_table

    several = len({c.sweep_id for c in selected}) > 1
    rows = [[str(i), *([c.sweep_id] if several else []), c.trial_id, c.status, f"{c.score:.4f}",
             *[format_cell(getattr(c.config, n)) for n in param_names], c.run_id] for i, c in enumerate(selected, 1)]
    header = ["#", *(["sweep"] if several else []), "trial", "status", SCORE_METRIC, *param_names, "mlflow run"]
    return format_table(header, rows)


