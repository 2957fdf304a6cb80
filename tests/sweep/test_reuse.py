"""Trials in a fixed order (one at a time, scores set by start order: tests/sweep/fixed_order.py): ASHA's
decisions are known in advance, and no trial is lost when Tune hands a worker process to the next trial."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sweep_helpers import hpo_cls, make_images, sweep_runs, write_spec

pytestmark = pytest.mark.ray

TEARDOWN_S = 3  # a stopped trial's thread takes this long to end


def _fixed_order_sweep(tmp_path: Path, **env: str):
    """4 trials, 4 epochs, one at a time, ASHA (grace 1, factor 2); returns the runs by start order and
    the process each trial started in."""
    data = make_images(tmp_path / "data", train=2, val=1)
    spec = write_spec(tmp_path / "spec.yaml", data, trainable="fixed_order",
                      budget={"epochs": 4, "num_samples": 4, "max_concurrent": 1},
                      scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    order = tmp_path / "order"
    order.mkdir()
    here = str(Path(__file__).parent)
    result = hpo_cls("sweep", str(spec), cwd=tmp_path, env={
        **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
        "FIXED_ORDER_DIR": str(order), "FIXED_ORDER_TEARDOWN_S": str(TEARDOWN_S), **env})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    rank = {f.name.removeprefix("rank-"): int(f.read_text()) for f in order.glob("rank-*")}
    starts = [line.split() for line in (order / "starts.log").read_text().splitlines()]
    assert len(parents) == 1
    assert sorted(rank) == sorted(r.data.tags["hpo_cls.trial_id"] for r in children), "one run per trial"
    runs = sorted(children, key=lambda r: rank[r.data.tags["hpo_cls.trial_id"]])
    return client, runs, [pid for _, pid in starts], result


def _assert_asha_decisions(client, runs) -> None:
    """Trial k scores 1/k: the first runs its 4 epochs, each later one is below the cutoff of rung 1."""
    assert [(r.data.tags["hpo_cls.status"], r.data.tags["hpo_cls.epochs_run"]) for r in runs] == [
        ("completed", "4"), ("early_stopped", "1"), ("early_stopped", "1"), ("early_stopped", "1")]
    for k, run in enumerate(runs, 1):
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [(m.step, m.value) for m in history] == [(e, 1 / k) for e in range(1, len(history) + 1)]


def test_asha_decisions_with_one_trial_at_a_time_and_a_reused_worker_that_waits_for_teardown(tmp_path):
    client, runs, pids, _ = _fixed_order_sweep(tmp_path)
    _assert_asha_decisions(client, runs)
    # Each reset waited out the previous trial's 3-s teardown (the trial processes' timeout covers it):
    # one worker process ran all four trials.
    assert len(pids) == 4 and len(set(pids)) == 1, pids


def test_a_reset_that_still_times_out_runs_the_trial_on_a_fresh_worker(tmp_path):
    client, runs, pids, result = _fixed_order_sweep(tmp_path, TUNE_FUNCTION_THREAD_TIMEOUT_S="1")
    _assert_asha_decisions(client, runs)  # no trial lost, each recorded once, with the same outcome
    assert len(pids) == 4 and len(set(pids)) == 4, f"trials 2-4 each ran on a fresh worker: {pids}"
    assert "could not be reused" in result.stdout + result.stderr
