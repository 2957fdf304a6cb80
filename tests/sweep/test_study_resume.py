"""A sweep whose Optuna study lives in SQLite (``search.storage``): its driver is killed mid-sweep, and
``--resume`` continues the same study, which then holds every earlier trial once."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from processes import kill_tree
from sweep_helpers import hpo_cls, make_images, start_sweep, sweep_runs, wait_for, write_spec

pytestmark = pytest.mark.ray

EPOCHS, SAMPLES = 4, 4


def test_a_resume_after_the_driver_is_killed_continues_the_same_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = write_spec(tmp_path / "spec.yaml", make_images(tmp_path / "data"),
                      budget={"epochs": EPOCHS, "num_samples": SAMPLES, "max_concurrent": 1},
                      search={"storage": storage, "baseline_first": False})
    results = tmp_path / "ray_results" / "in-sqlite"
    driver = start_sweep(spec, "in-sqlite", tmp_path)
    try:
        def one_finished_and_the_next_checkpointed() -> bool:
            finished = [p for p in results.glob("*/result.json") if len(p.read_text().splitlines()) >= EPOCHS]
            return len(finished) >= 1 and len({p.parent for p in results.glob("*/checkpoint_*")}) >= 2

        wait_for(one_finished_and_the_next_checkpointed, 300, "a trial to finish and the next to checkpoint")
    finally:
        kill_tree(driver)  # the driver and the local Ray it started, by their PIDs
    before = optuna.load_study(study_name="in-sqlite", storage=storage).trials
    assert any(t.state == TrialState.COMPLETE for t in before) and any(t.state == TrialState.RUNNING for t in before)

    resumed = hpo_cls("sweep", str(spec), "--name", "in-sqlite", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"completed after {EPOCHS}/{EPOCHS} epochs" in resumed.stdout, "this run's progress callback reports"

    after = optuna.load_study(study_name="in-sqlite", storage=storage).trials
    by_number = {t.number: t for t in after}
    for trial in before:  # every trial of the killed driver's study, once, with what it had
        kept = by_number[trial.number]
        assert kept.params == trial.params and kept.state.is_finished()
        if trial.state.is_finished():
            assert (kept.state, kept.values) == (trial.state, trial.values)
    assert not [t for t in after if not t.state.is_finished()]
    _, _, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tests")
    tune_ids = [t.user_attrs["tune_trial_id"] for t in after]
    assert len(tune_ids) == len(set(tune_ids)), "no Tune trial told twice"
    finished_runs = {r.data.tags["hpo_cls.trial_id"] for r in children}
    assert len(finished_runs) == SAMPLES
    assert finished_runs <= {t.user_attrs["tune_trial_id"] for t in after if t.state == TrialState.COMPLETE}
    for trial in after:
        if trial.user_attrs["tune_trial_id"] in finished_runs:
            assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1)), trial.intermediate_values
