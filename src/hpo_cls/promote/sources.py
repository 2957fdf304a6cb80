"""Which trial runs promote takes: exactly the runs a user names (``--runs``, from any sweeps of the store),
or the best runs of one or more sweeps (``--sweep``, repeatable; ``--diverse KEY``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from hpo_cls.errors import PromoteError, SpecError
from hpo_cls.promote.select import (
    SELECTABLE,
    Candidate,
    SweepRecord,
    candidate_from_run,
    load_candidates,
    select_top_runs,
)
from hpo_cls.tracking.backend import TrackingStore, TrialRun
from hpo_cls.tracking.runs import ROLE_TAG, STATUS_TAG
from hpo_cls.tracking.uri import redact_uri

__all__ = ["Selection", "load_named_runs", "load_pool", "select_runs"]


@dataclass(frozen=True)
class Selection:
    """The runs to promote and the sweeps they come from (the first one's settings are used)."""

    sweeps: list[SweepRecord]
    considered: int  # finished runs with a score that were ranked (the named runs themselves with --runs)
    selected: list[Candidate]
    weights: list[float] | None = None  # per selected run (greedy: selection counts); None: options decide
    on_selection_half: bool = False  # chosen on the selection half of val only: the other half is held out


def _named_run(store: TrackingStore, run_id: str) -> TrialRun:
    run = store.trial_run(run_id)
    if run is None:
        raise PromoteError(f"{{runs}}: no run {run_id} in the store at {redact_uri(store.uri)}")
    role = run.tags.get(ROLE_TAG)
    if role != "trial":
        raise PromoteError(f"{{runs}}: run {run_id} is not a trial of a sweep (its role is {role or 'unset'})")
    if run.status not in SELECTABLE:
        status = run.tags.get(STATUS_TAG)
        raise PromoteError(f"{{runs}}: run {run_id} ended {status or 'without a status (still running?)'}; "
                           f"only {' or '.join(SELECTABLE)} trials can be promoted")
    return run


def load_named_runs(store: TrackingStore, run_ids: Sequence[str]) -> tuple[list[SweepRecord], list[Candidate]]:
    """The trial runs ``run_ids``, in that order, and their sweeps (in order of first mention)."""
    duplicates = sorted({r for r in run_ids if list(run_ids).count(r) > 1})
    if duplicates:
        raise PromoteError(f"{{runs}}: named more than once: {', '.join(duplicates)}")
    sweeps: dict[str, SweepRecord] = {}
    candidates = []
    for run_id in run_ids:
        run = _named_run(store, run_id)
        if run.sweep_id not in sweeps:
            sweep = store.sweep_by_id(run.experiment_id, run.sweep_id)
            if sweep is None:
                raise PromoteError(f"{{runs}}: run {run_id}: its sweep {run.sweep_id!r} has no parent run in the store")
            sweeps[run.sweep_id] = sweep
        rule = sweeps[run.sweep_id].rule
        try:
            candidate = candidate_from_run(store, run, rule)
        except SpecError as exc:
            raise PromoteError(f"{{runs}}: run {run_id}: its params are not a valid config: "
                               f"{'; '.join(exc.problems)}") from None
        if candidate is None:
            raise PromoteError(f"{{runs}}: run {run_id} has no {rule.metric} to score it by")
        candidates.append(candidate)
    return list(sweeps.values()), candidates


def select_runs(store: TrackingStore, *, experiment: str, sweeps: Sequence[str | None] = (None,),
                runs: Sequence[str] = (), top: int | None = None, include_early_stopped: bool = False,
                dedupe: bool = False, diverse: str | None = None,
                warn: Callable[[str], None] = print) -> Selection:
    """``runs`` exactly as named, or the ``top`` best runs of ``sweeps`` pooled (ids or spec names; None:
    the newest sweep of ``experiment``)."""
    if runs:
        found_sweeps, named = load_named_runs(store, runs)
        return Selection(found_sweeps, len(named), named)
    if top is None:
        raise PromoteError("pass {top} K (the best K runs of the sweep) or {runs} RUN_ID ... (exactly those runs)")
    records, candidates = load_pool(store, experiment, sweeps, warn)
    selected = select_top_runs(candidates, top, include_early_stopped=include_early_stopped, dedupe=dedupe,
                               diverse=diverse)
    return Selection(records, len(candidates), selected)


def load_pool(store: TrackingStore, experiment: str, sweeps: Sequence[str | None] = (None,),
              warn: Callable[[str], None] = print) -> tuple[list[SweepRecord], list[Candidate]]:
    """The sweeps (ids or spec names; None: the newest of ``experiment``) and all their finished runs with a score."""
    records: dict[str, SweepRecord] = {}
    for name in sweeps or (None,):
        record = store.find_sweep(experiment, name)
        records.setdefault(record.sweep_id, record)
    return list(records.values()), [c for record in records.values() for c in load_candidates(store, record, warn)]
