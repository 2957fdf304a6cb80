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
from hpo_cls.tracking.runs import (
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    SWEEP_NAME_TAG,
    TRIAL_ID_TAG,
)

__all__ = [
    "PromoteError",
    "SCORE_METRIC",
    "SweepRecord",
    "Candidate",
    "find_sweep",
    "typed_params",
    "load_candidates",
    "select_top_runs",
    "near_duplicate_pairs",
    "format_selection",
]

SCORE_METRIC = "best_val_acc"
SELECTABLE = ("completed", "early_stopped")
DEDUPE_TOLERANCE = 0.05  # numeric params within 5% (relative) count as the same value




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
class Candidate:
    """A trial run of the sweep with its score and the TrialConfig rebuilt from its params."""

    run_id: str
    trial_id: str
    status: str
    score: float
    config: TrialConfig
    start_time: int


def _filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str]) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None) -> SweepRecord:
    """The sweep's parent run: by sweep id, else the newest sweep of that spec name; without ``sweep``
    the newest sweep of the experiment."""
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments()]
        raise PromoteError(f"no MLflow experiment {experiment!r} at {client.tracking_uri} "
                           f"(experiments: {', '.join(names) or 'none'}); pass {{experiment}} or {{tracking_uri}}")
    parents = _search_all(client, found.experiment_id, _filter({ROLE_TAG: "sweep"}), ["attributes.start_time DESC"])
    if not parents:
        raise PromoteError(f"experiment {experiment!r} holds no sweeps; run `hpo-cls sweep` first")
    if sweep is None:
        match = parents[0]
    else:
        match = next((r for r in parents if r.data.tags.get(SWEEP_ID_TAG) == sweep), None)
        match = match or next((r for r in parents if r.data.tags.get(SWEEP_NAME_TAG) == sweep), None)
    if match is None:
        listed = [f"{r.data.tags.get(SWEEP_ID_TAG)} ({r.data.tags.get(SWEEP_NAME_TAG, '?')})" for r in parents[:20]]
        more = f" and {len(parents) - 20} more" if len(parents) > 20 else ""
        raise PromoteError(f"no sweep {sweep!r} in experiment {experiment!r}; sweeps there (newest first): "
                           f"{', '.join(listed)}{more}")
    tags = match.data.tags
    return SweepRecord(match.info.run_id, tags.get(SWEEP_ID_TAG, match.info.run_id),
                       tags.get(SWEEP_NAME_TAG, tags.get(SWEEP_ID_TAG, "sweep")), found.experiment_id,
                       match.info.start_time or 0, dict(match.data.params))


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
    runs = _search_all(client, sweep.experiment_id, _filter({SWEEP_ID_TAG: sweep.sweep_id, ROLE_TAG: "trial"}),
                       ["attributes.start_time ASC"])
    candidates = []
    for run in runs:
        status = run.data.tags.get(STATUS_TAG)
        if status not in SELECTABLE:
            continue
        score = _score(client, run)
        if score is None:
            continue
        try:
            cfg = trial_config_from_dict(typed_params(run.data.params))
        except SpecError as exc:
            warn(f"skipping run {run.info.run_id}: its params are not a valid config: {'; '.join(exc.problems)}")
            continue
        candidates.append(Candidate(run.info.run_id, run.data.tags.get(TRIAL_ID_TAG, run.info.run_id[:8]), status,
                                    float(score), cfg, run.info.start_time or 0))
    return candidates


def _near_duplicate(a: TrialConfig, b: TrialConfig, tolerance: float = DEDUPE_TOLERANCE) -> bool:
    """Same categorical values, numeric values within ``tolerance`` (relative); the seed is ignored."""
    for f in dataclasses.fields(TrialConfig):
        if f.name == "seed":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            if x != y:
                return False
        elif abs(x - y) > tolerance * max(abs(x), abs(y)):
            return False
    return True


def select_top_runs(candidates: Sequence[Candidate], top: int, *, include_early_stopped: bool = False,
                    dedupe: bool = False) -> list[Candidate]:
    """The ``top`` best candidates by score (ties: earlier run first); raises PromoteError if too few qualify."""
    if top < 1:
        raise PromoteError(f"{{top}} must be >= 1, got {top}")
    statuses = SELECTABLE if include_early_stopped else ("completed",)
    ranked = sorted((c for c in candidates if c.status in statuses), key=lambda c: (-c.score, c.start_time, c.run_id))
    kept: list[Candidate] = []
    for c in ranked:
        if not dedupe or not any(_near_duplicate(c.config, k.config) for k in kept):
            kept.append(c)
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
    """The chosen runs as a table: rank, trial, status, score, the searched params, run id."""
    from hpo_cls.console import format_cell, format_table

    rows = [[str(i), c.trial_id, c.status, f"{c.score:.4f}",
             *[format_cell(getattr(c.config, n)) for n in param_names], c.run_id] for i, c in enumerate(selected, 1)]
    return format_table(["#", "trial", "status", SCORE_METRIC, *param_names, "mlflow run"], rows)


