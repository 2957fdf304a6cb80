"""The MLflow UI opened the way a user opens it, in a real (headless) browser: `hpo-cls ui` on a finished
store, then the URL it prints. Also the sweep report, opened with the network switched off."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from browser import open_page, require_chromium, visible_text
from mlflow.tracking import MlflowClient
from sweep_helpers import free_port, wait_for

from hpo_cls.tracking.report_figures import FIGURES
from hpo_cls.tracking.runs import ROLE_TAG

pytestmark = [pytest.mark.ray, pytest.mark.browser]


@pytest.fixture
def browser(tmp_path):
    """``browser(url, *flags)``: headless Chromium's output for ``url`` after its scripts ran."""
    require_chromium()
    return lambda url, *flags: open_page(url, tmp_path / "chromium-profile", *flags)


@pytest.fixture
def mlflow_ui(finished_sweep, tmp_path):
    """`hpo-cls ui` on the finished store, on a free port; yields the port and the lines it printed."""
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "ui", "--tracking-uri", finished_sweep.uri,
                               "--experiment", "tests", "--port", str(port)], cwd=finished_sweep.root,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    return response.status == 200
            except (OSError, http.client.HTTPException):  # not up yet (or, briefly, someone else's port)
                assert ui.poll() is None, f"hpo-cls ui exited:\n{log.read_text()[-3000:]}"
                return False

        try:
            wait_for(healthy, 300, "the MLflow UI to serve")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
        lines = log.read_text().splitlines()
        # from its first line on (a warning a dependency prints at import may come before it)
        first = next((i for i, line in enumerate(lines) if line.startswith("MLflow UI on")), 0)
        yield port, lines[first:first + 4]
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the UI and the server workers it started: its own session only
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def test_the_printed_url_opens_the_sweeps_runs_with_best_val_acc(finished_sweep, mlflow_ui, browser, tmp_path):
    port, printed = mlflow_ui
    client = MlflowClient(finished_sweep.uri)
    experiment_id = client.get_experiment_by_name("tests").experiment_id
    parent = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'")[0]
    trials = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'")
    runs_url = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    assert printed[0].startswith(f"MLflow UI on http://127.0.0.1:{port}")
    assert printed[1].split() == ["Sweep:", "finished"]
    assert printed[2].split() == ["Runs", "view:", f"{runs_url}&viewStateShareKey=finished"]
    assert printed[3].split() == ["Parent", "run:", f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/"
                                                    f"{parent.info.run_id}?workflowType=machine_learning"]

    url = printed[2].split()[-1]
    text = visible_text(browser(url, "--dump-dom"))
    assert "best_val_acc" in text and "Sort: best_val_acc" in text, text[:3000]
    for run in trials:
        assert run.info.run_name in text, f"{run.info.run_name} is listed\n{text[:3000]}"
    assert f"{len(trials)} matching runs" in text
    browser(url, f"--screenshot={tmp_path / 'mlflow-runs.png'}")
    assert (tmp_path / "mlflow-runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_renders_its_five_plots_without_a_network(finished_sweep, browser, tmp_path):
    report = tmp_path / "report.html"
    assert subprocess.run([sys.executable, "-m", "hpo_cls.cli", "report", "--out", str(report), "--tracking-uri",
                           finished_sweep.uri, "--experiment", "tests"], capture_output=True, timeout=300).returncode == 0
    offline = "--host-resolver-rules=MAP * ~NOTFOUND"  # no name resolves: any fetch from the web would fail
    dom = browser(report.as_uri(), offline, "--dump-dom")
    for element_id, _, _ in FIGURES:
        div = re.search(rf'<div id="{element_id}"[^>]*class="([^"]*)"', dom)
        assert div and "js-plotly-plot" in div.group(1), f"{element_id} was drawn by the inline plotly.js"
    browser(report.as_uri(), offline, f"--screenshot={tmp_path / 'report.png'}")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_experiment_opened_from_the_experiment_list_shows_the_mode_the_browser_chose(finished_sweep, mlflow_ui,
                                                                                         browser):
    """MLflow 3.17 picks GenAI or model training by its sidebar switch (the URL's workflowType, else the
    browser's last choice, else GenAI), not by the experiment's kind: the limit docs/mlflow.md states. If this
    fails because a fresh browser now lands on the runs, MLflow reads the kind: update docs/mlflow.md."""
    port, _ = mlflow_ui
    base = f"http://127.0.0.1:{port}"
    client = MlflowClient(finished_sweep.uri)
    experiment = client.get_experiment_by_name("tests")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    listing = browser(f"{base}/#/experiments", "--dump-dom")
    links = set(re.findall(r'href="(#/experiments/\d+[^"]*)"', listing))
    assert f"#/experiments/{experiment.experiment_id}" in links, links  # the list's link carries no mode
    fresh = visible_text(browser(f"{base}/#/experiments/{experiment.experiment_id}", "--dump-dom"))
    assert "Training runs" in fresh or "Traces" in fresh, fresh[:2000]
    assert "Detect Issues" in fresh or "Overview" in fresh, "a fresh browser lands in GenAI mode (the documented limit)"

    # The list opened in model-training mode (the sidebar switch, or the link `hpo-cls ui` prints) keeps it.
    ml_list = browser(f"{base}/#/experiments?workflowType=machine_learning", "--dump-dom")
    assert "tests" in visible_text(ml_list)
    runs = visible_text(browser(f"{base}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning",
                                "--dump-dom"))
    assert finished_sweep.sweep_id in runs and "matching runs" in runs, runs[:3000]  # the runs table
    assert "Detect Issues" not in runs


def test_a_trial_page_shows_only_the_parameters_that_acted(finished_sweep, mlflow_ui, browser):
    port, _ = mlflow_ui
    client = MlflowClient(finished_sweep.uri)
    experiment_id = client.get_experiment_by_name("tests").experiment_id
    trials = client.search_runs([experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial' and "
                                                               "params.attention = 'none'")
    assert trials, "the fixture's sweep samples attention none"
    run = trials[0]
    text = visible_text(browser(f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
                                "?workflowType=machine_learning", "--dump-dom"))
    assert run.info.run_name in text and "attention" in text and "dropout" in text, text[:3000]
    for inactive in ("attention_placement", "attention_reduction", "mixup_alpha", "cutmix_alpha", "plateau_patience"):
        assert inactive not in text, f"{inactive} is shown though it never acted"


def test_the_reports_links_open_the_ui_at_ui_url_and_its_table_fits_1280_px(finished_sweep, mlflow_ui, browser,
                                                                           tmp_path):
    port, _ = mlflow_ui
    ui_url = f"http://localhost:{port}"  # another name for the UI than the default 127.0.0.1:5000
    report = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "hpo_cls.cli", "report", "--out", str(report), "--tracking-uri",
                             finished_sweep.uri, "--experiment", "tests", "--ui-url", ui_url],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # Measured by the page itself in the browser: the widest element against a 1,280-px window.
    page = report.read_text().replace("</body>", "<script>document.body.setAttribute('data-scroll-width', "
                                                 "document.documentElement.scrollWidth)</script></body>")
    measured = tmp_path / "measured.html"
    measured.write_text(page)
    dom = browser(measured.as_uri(), "--window-size=1280,900", "--dump-dom")
    width = re.search(r'data-scroll-width="(\d+)"', dom)
    assert width and int(width.group(1)) <= 1280, f"the page is {width and width.group(1)} px wide"
    links = re.findall(r'<a href="([^"]+)"', re.sub(r"<script\b.*?</script>", "", dom, flags=re.S))
    runs = [link for link in links if "/runs/" in link]
    assert runs and all(link.startswith(f"{ui_url}/#/experiments/") for link in links), links
    client = MlflowClient(finished_sweep.uri)
    run_id = runs[0].split("/runs/")[1].split("?")[0]
    opened = visible_text(browser(runs[0].replace("&amp;", "&"), "--dump-dom"))
    assert client.get_run(run_id).info.run_name in opened, opened[:3000]
