"""Choosing which runs of a sweep to promote: each finished trial run becomes a :class:`Candidate` (its
TrialConfig rebuilt from its logged params, its score by the sweep's own metric and mode), then ranked.

Selection reads the tracking store only (:class:`~hpo_cls.tracking.backend.TrackingStore`), never Ray's
result files, so promote works on any machine that sees the tracking server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

from hpo_cls.errors import PromoteError, SpecError
from hpo_cls.spec import TrialConfig, trial_config_from_dict
from hpo_cls.tracking.backend import SweepRecord, TrackingStore, TrialRun
from hpo_cls.tracking.runs import typed_params
from hpo_cls.tracking.score import ScoreRule

__all__ = [
    "PromoteError",
    "SweepRecord",
    "Candidate",
    "load_candidates",
    "candidate_from_run",
    "select_top_runs",
    "filled_with_early_stopped",
    "common_rule",
    "near_duplicate_pairs",
    "format_selection",
]

SELECTABLE = ("completed", "early_stopped")
DEDUPE_TOLERANCE = 0.05  # numeric params within 5% (relative) count as the same value


@dataclass(frozen=True)
class Candidate:
    """A trial run of the sweep with its score (by ``rule``) and the TrialConfig rebuilt from its params."""

    run_id: str
    trial_id: str
    status: str
    score: float
    config: TrialConfig
    start_time: int
    sweep_id: str = ""  # the sweep the run belongs to (promote can mix sweeps)
    rule: ScoreRule = ScoreRule()  # the sweep's metric and mode, which ``score`` is a value of
    metrics: dict[str, float] = field(default_factory=dict, compare=False, hash=False)  # last values

    @property
    def rank_key(self) -> tuple:
        """Promote's order: best score by the sweep's rule first, then the earlier run."""
        return self.rule.rank_key(self.score, self.start_time, self.run_id)

    @property
    def keep_key(self) -> tuple:
        """As :attr:`rank_key`, completed runs before early-stopped ones."""
        return self.rule.keep_key(self.status, self.score, self.start_time, self.run_id)


def load_candidates(store: TrackingStore, sweep: SweepRecord, warn: Callable[[str], None] = print) -> list[Candidate]:
    """Finished trial runs (completed or early stopped) of the sweep that have a score."""
    candidates = []
    rule = sweep.rule
    for run in store.trial_runs(sweep, statuses=SELECTABLE):
        try:
            candidate = candidate_from_run(store, run, rule)
        except SpecError as exc:
            warn(f"skipping run {run.run_id}: its params are not a valid config: {'; '.join(exc.problems)}")
            continue
        if candidate is not None:
            candidates.append(candidate)
    return candidates


def candidate_from_run(store: TrackingStore, run: TrialRun, rule: ScoreRule) -> Candidate | None:
    """A trial run as a Candidate (config rebuilt from its params, scored by ``rule``); None without a score.
    Raises SpecError when its params are not a valid config."""
    score = rule.score(run.metrics, lambda: [value for _, value, _ in store.metric_history(run.run_id, rule.metric)])
    if score is None:
        return None
    cfg = trial_config_from_dict(typed_params(run.params))
    return Candidate(run.run_id, run.trial_id, run.status, score, cfg, run.start_time, run.sweep_id, rule,
                     dict(run.metrics))


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
    """The ``top`` best candidates by score, in their sweep's direction (ties: earlier run first), completed
    runs before early-stopped ones unless ``include_early_stopped`` ranks them together; raises PromoteError
    if fewer than ``top`` finished runs qualify or the candidates come from sweeps ranked by different rules.

    ``diverse``: a TrialConfig key; the best run of each distinct value of it comes first (the best
    ``top`` of them if there are more values), the remaining places go to the next best runs.
    """
    if top < 1:
        raise PromoteError(f"{{top}} must be >= 1, got {top}")
    if diverse is not None and diverse not in TrialConfig.__dataclass_fields__:
        raise PromoteError(f"{{diverse}} {diverse}: not a configuration key (known: "
                           f"{', '.join(TrialConfig.__dataclass_fields__)})")
    common_rule(candidates)  # raises when the sweeps rank their runs differently
    # Without include_early_stopped, completed runs come first and early-stopped ones only fill up the places
    # left: promote retrains them to the full budget, so their configuration is a fair candidate.
    ranked = sorted(candidates, key=lambda c: c.rank_key if include_early_stopped else c.keep_key)
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
    message = f"{{top}} {top}: only {len(kept)} finished run(s) with a score qualify"
    if dedupe and len(ranked) > len(kept):
        message += f" ({len(ranked) - len(kept)} near-duplicate config(s) removed by {{dedupe}})"
    raise PromoteError(f"{message}; lower {{top}}")


def filled_with_early_stopped(selected: Sequence[Candidate], include_early_stopped: bool) -> str | None:
    """The one line saying that early-stopped runs filled places completed runs could not, or None."""
    early = [c for c in selected if c.status == "early_stopped"]
    if include_early_stopped or not early:
        return None
    return (f"only {len(selected) - len(early)} completed run(s) for {len(selected)} place(s): the best "
            f"{len(early)} early-stopped run(s) fill the rest, retrained to the full budget")


def common_rule(candidates: Sequence[Candidate]) -> ScoreRule:
    """The one rule the candidates' scores follow; raises PromoteError when their sweeps rank differently."""
    rules = {c.rule: c.sweep_id for c in candidates}
    if len(rules) > 1:
        listed = ", ".join(f"{sweep or '?'}: {rule}" for rule, sweep in rules.items())
        raise PromoteError(f"the sweeps rank their runs by different metrics ({listed}); promote them separately")
    return next(iter(rules), ScoreRule())


def near_duplicate_pairs(selected: Sequence[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """(better, worse) pairs of selected runs whose configs are near-identical: averaging them adds little."""
    return [(a, b) for j, b in enumerate(selected) for a in selected[:j] if _near_duplicate(a.config, b.config)]


def format_selection(selected: Sequence[Candidate], param_names: Sequence[str],
                     weights: Sequence[float] | None = None, score_name: str | None = None) -> str:
    """The chosen runs as a table: rank, (sweep, when they come from several), trial, status, score (headed
    ``score_name``, default the sweep's ``best_<metric>``), (weight), the searched params, run id."""
    from hpo_cls.console import format_cell, format_table

    several = len({c.sweep_id for c in selected}) > 1
    rows = [[str(i), *([c.sweep_id] if several else []), c.trial_id, c.status, f"{c.score:.4f}",
             *([f"{weights[i - 1]:.3f}"] if weights is not None else []),
             *[format_cell(getattr(c.config, n)) for n in param_names], c.run_id] for i, c in enumerate(selected, 1)]
    score = score_name or common_rule(selected).best_metric
    header = ["#", *(["sweep"] if several else []), "trial", "status", score, *(["weight"] if weights is not None else []),
              *param_names, "mlflow run"]
    return format_table(header, rows)
