"""Which trial runs promote takes: exactly the runs a user names (``--runs``, from any sweeps of the store),
or the best runs of one or more sweeps (``--sweep``, repeatable; ``--diverse KEY``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hpo_cls.errors import PromoteError, SpecError
from hpo_cls.promote.select import (
    SELECTABLE,
    Candidate,
    SweepRecord,
    candidate_from_run,
    find_sweep,
    load_candidates,
    select_top_runs,
)
from hpo_cls.tracking.runs import ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG
from hpo_cls.tracking.uri import redact_uri

__all__ = ["Selection", "sweep_by_id", "load_named_runs", "select_runs"]


@dataclass(frozen=True)
class Selection:
    """The runs to promote and the sweeps they come from (the first one's settings are used)."""

    sweeps: list[SweepRecord]
    considered: int  # finished runs with a score that were ranked (the named runs themselves with --runs)
    selected: list[Candidate]


def sweep_by_id(client: MlflowClient, experiment_id: str, sweep_id: str) -> SweepRecord | None:
    """The parent run of sweep ``sweep_id`` in an experiment, or None."""
    filter_string = f"tags.`{SWEEP_ID_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'sweep'"
    parents = client.search_runs([experiment_id], filter_string=filter_string, max_results=1)
    if not parents:
        return None
    run = parents[0]
    return SweepRecord(run.info.run_id, sweep_id, run.data.tags.get(SWEEP_NAME_TAG, sweep_id), experiment_id,
                       run.info.start_time or 0, dict(run.data.params))


def _named_run(client: MlflowClient, run_id: str):
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PromoteError(f"{{runs}}: no run {run_id} in the store at {redact_uri(client.tracking_uri)}") from None
    role, status = run.data.tags.get(ROLE_TAG), run.data.tags.get(STATUS_TAG)
    if role != "trial":
        raise PromoteError(f"{{runs}}: run {run_id} is not a trial of a sweep (its role is {role or 'unset'})")
    if status not in SELECTABLE:
        raise PromoteError(f"{{runs}}: run {run_id} ended {status or 'without a status (still running?)'}; "
                           f"only {' or '.join(SELECTABLE)} trials can be promoted")
    return run


def load_named_runs(client: MlflowClient, run_ids: Sequence[str]) -> tuple[list[SweepRecord], list[Candidate]]:
    """The trial runs ``run_ids``, in that order, and their sweeps (in order of first mention)."""
    duplicates = sorted({r for r in run_ids if list(run_ids).count(r) > 1})
    if duplicates:
        raise PromoteError(f"{{runs}}: named more than once: {', '.join(duplicates)}")
    sweeps: dict[str, SweepRecord] = {}
    candidates = []
    for run_id in run_ids:
        run = _named_run(client, run_id)
        try:
            candidate = candidate_from_run(client, run)
        except SpecError as exc:
            raise PromoteError(f"{{runs}}: run {run_id}: its params are not a valid config: "
                               f"{'; '.join(exc.problems)}") from None
        if candidate is None:
            raise PromoteError(f"{{runs}}: run {run_id} has no val_acc to score it by")
        sweep_id = candidate.sweep_id
        if sweep_id not in sweeps:
            sweep = sweep_by_id(client, run.info.experiment_id, sweep_id)
            if sweep is None:
                raise PromoteError(f"{{runs}}: run {run_id}: its sweep {sweep_id!r} has no parent run in the store")
            sweeps[sweep_id] = sweep
        candidates.append(candidate)
    return list(sweeps.values()), candidates


def select_runs(client: MlflowClient, *, experiment: str, sweeps: Sequence[str | None] = (None,),
                runs: Sequence[str] = (), top: int | None = None, include_early_stopped: bool = False,
                dedupe: bool = False, diverse: str | None = None,
                warn: Callable[[str], None] = print) -> Selection:
    """``runs`` exactly as named, or the ``top`` best runs of ``sweeps`` pooled (ids or spec names; None:
    the newest sweep of ``experiment``)."""
    if runs:
        found_sweeps, named = load_named_runs(client, runs)
        return Selection(found_sweeps, len(named), named)
    if top is None:
        raise PromoteError("pass {top} K (the best K runs of the sweep) or {runs} RUN_ID ... (exactly those runs)")
    records: dict[str, SweepRecord] = {}
    for name in sweeps or (None,):
        record = find_sweep(client, experiment, name)
        records.setdefault(record.sweep_id, record)
    candidates = [c for record in records.values() for c in load_candidates(client, record, warn)]
    selected = select_top_runs(candidates, top, include_early_stopped=include_early_stopped, dedupe=dedupe,
                               diverse=diverse)
    return Selection(list(records.values()), len(candidates), selected)
