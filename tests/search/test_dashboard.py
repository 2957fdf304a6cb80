"""`hpo-cls dashboard`: optuna-dashboard on a sweep's stored Optuna study, opened in headless Chromium while
the sweep runs; a study kept in memory, or none, is one error line that says what to do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from browser import open_page, visible_text
from sweep_helpers import free_port, hpo_cls, sweep_output, start_sweep, wait_for, write_quickstart_like_spec

from hpo_cls.search.dashboard import STORAGE_PARAM, dashboard_command
from hpo_cls.tracking.runs import open_sweep_run
from hpo_cls.tracking.writer import MlflowWriter


def recorded_sweep(tmp_path: Path, params: dict) -> str:
    """A sweep's parent run (as a sweep opens it) with ``params``; the store's URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    writer = MlflowWriter(uri, "tests")
    open_sweep_run(writer, "s-1", params=params)
    writer.close()
    return uri


@pytest.mark.parametrize("params", [{STORAGE_PARAM: "memory"}, {}], ids=["memory", "before-the-param"])
def test_a_study_in_memory_is_an_error_that_says_how_to_store_it(tmp_path, params):
    uri = recorded_sweep(tmp_path, params)
    result = hpo_cls("dashboard", "s-1", "--tracking-uri", uri, "--experiment", "tests", "--port", str(free_port()),
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: sweep s-1 kept its Optuna study in memory"), result.stderr
    assert "--set search.storage=tracking" in result.stderr


@pytest.mark.ray
def test_a_sweep_with_its_study_in_memory_says_how_to_watch_the_next_one(finished_sweep):
    assert "Optuna study in memory: for a live dashboard (hpo-cls dashboard), sweep with --set " \
           "search.storage=tracking" in finished_sweep.log
    result = hpo_cls("dashboard", "--tracking-uri", finished_sweep.uri, "--experiment", "tests", "--port",
                     str(free_port()), cwd=finished_sweep.root, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(
        f"error: sweep {finished_sweep.sweep_id} kept its Optuna study in memory"), result.stderr


def test_a_stored_study_that_is_not_there_is_an_error_and_no_file_is_made(tmp_path):
    missing = tmp_path / "gone.db"
    uri = recorded_sweep(tmp_path, {STORAGE_PARAM: f"sqlite:///{missing}"})
    result = hpo_cls("dashboard", "--tracking-uri", uri, "--experiment", "tests", "--port", str(free_port()),
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: no Optuna storage at sqlite:///"), result.stderr
    assert not missing.exists()


def test_a_storage_without_the_sweeps_study_names_the_studies_it_holds(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="other-sweep")
    uri = recorded_sweep(tmp_path, {STORAGE_PARAM: storage})
    result = hpo_cls("dashboard", "s-1", "--tracking-uri", uri, "--experiment", "tests", "--port", str(free_port()),
                     cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "holds no study named 's-1'; studies there: other-sweep" in result.stderr, result.stderr


def test_the_printed_command_names_only_what_differs_from_the_defaults():
    assert dashboard_command("q-1", "sqlite:///mlflow.db", "hpo-cls") == "hpo-cls dashboard q-1"
    assert dashboard_command("q-1", "http://u:pw@host:5000", "exp") == \
        "hpo-cls dashboard q-1 --tracking-uri 'http://u:***@host:5000' --experiment exp"


def start_dashboard(tmp_path: Path, uri: str, sweep_id: str, port: int) -> subprocess.Popen:
    with open(tmp_path / "dashboard.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "dashboard", sweep_id, "--tracking-uri", uri,
                                 "--experiment", "tests", "--port", str(port)], cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # the dashboard's own session: nothing else
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.ray
@pytest.mark.browser
def test_the_dashboard_shows_a_running_sweeps_trials_and_their_values(tmp_path):
    spec = write_quickstart_like_spec(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_storage = f"sqlite:///{tmp_path / 'mlflow-optuna.db'}"  # search.storage: tracking, beside mlflow.db
    # fifo: under ASHA, trial 0 may be stopped early (PRUNED, no value) depending on which trial reaches a rung first
    driver = start_sweep(spec, "live", tmp_path, "--set", "search.storage=tracking", "--set", "scheduler.type=fifo")
    dashboard = None
    try:
        def trial_0_told() -> bool:
            assert driver.poll() is None or driver.returncode == 0, (tmp_path / "live.log").read_text()[-3000:]
            try:
                trials = optuna.load_study(study_name="live", storage=study_storage).trials
            except KeyError:  # the searcher has not made the study yet
                return False
            return bool(trials) and trials[0].state == optuna.trial.TrialState.COMPLETE

        wait_for(trial_0_told, 300, "the sweep's first trial to be told to its study")
        port = free_port()
        dashboard = start_dashboard(tmp_path, uri, "live", port)

        def serving() -> bool:
            assert dashboard.poll() is None, (tmp_path / "dashboard.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(serving, 120, "the dashboard to serve")
        printed = next(line for line in (tmp_path / "dashboard.log").read_text().splitlines()
                       if line.startswith("optuna-dashboard on sweep live: "))
        url = printed.split()[4]
        assert url.startswith(f"http://127.0.0.1:{port}/dashboard/studies/"), printed
        told = optuna.load_study(study_name="live", storage=study_storage).trials
        text = visible_text(open_page(f"{url}/trials", tmp_path / "chromium-profile", "--dump-dom"))
        assert "live (id=" in text, text[:2000]
        for trial in told:
            assert f"Trial {trial.number}" in text, f"trial {trial.number} is listed\n{text[:2000]}"
        # the first trial's details open by default: its number and value, as the searcher told them
        assert "Trial 0 (trial_id=" in text and f"Value {told[0].value!r}" in text, text[:3000]
    finally:
        if dashboard is not None:
            stop(dashboard)
        log = sweep_output(driver, tmp_path, "live", timeout=600)
    assert driver.returncode == 0, log[-3000:]
    assert f"live dashboard: hpo-cls dashboard live --tracking-uri {uri} --experiment tests" in log
