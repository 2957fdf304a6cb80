"""``hpo-cls report`` and ``hpo-cls sweeps``: what a finished store gives a user without the MLflow UI."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from hpo_cls.cli import main
from hpo_cls.tracking.report_figures import FIGURES
from hpo_cls.tracking.runs import PARENT_TAG, ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG
from hpo_cls.tracking.store import list_sweeps, sweeps_table
from hpo_cls.tracking.ui import EXPERIMENT_KIND_TAG, MODEL_TRAINING, VIEW_TAG_PREFIX

FIGURE_IDS = [element_id for element_id, _, _ in FIGURES]


def offline_problems(page: str) -> list[str]:
    """What would make the page need a network: scripts, styles, frames or images fetched from elsewhere."""
    fetched = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']([^\"']+)", page, re.I)
    return [url for url in fetched if not url.startswith(("#", "data:"))]


@pytest.mark.ray
def test_report_is_one_offline_page_with_five_plots_and_the_top_trials(finished_sweep, tmp_path):
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "hpo_cls.cli", "report", finished_sweep.sweep_id, "--out", str(out),
                             "--tracking-uri", finished_sweep.uri, "--experiment", "tests"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}" in result.stdout
    page = out.read_text()
    assert offline_problems(page) == []
    assert page.count("<script") >= 6 and "plotly.js" in page and len(page) > 1_000_000, "plotly.js is inline"
    for element_id in FIGURE_IDS:
        assert page.count(f'id="{element_id}"') == 1 and f'"{element_id}"' in page.split(f'id="{element_id}"')[1]

    client = MlflowClient(finished_sweep.uri)
    trials = client.search_runs([client.get_experiment_by_name("tests").experiment_id],
                                filter_string=f"tags.`{ROLE_TAG}` = 'trial'")
    scored = [r for r in trials if r.data.tags.get(STATUS_TAG) != "failed" and "best_val_acc" in r.data.metrics]
    for run in scored:  # each in the top-trials table, linked to its run page in the UI
        assert f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in page
        assert run.info.run_name in page
    assert re.search(r"hpo-cls promote --top \d+( --include-early-stopped)? --sweep finished --experiment tests "
                     r"--tracking-uri sqlite:///", page)


@pytest.mark.ray
def test_every_sweep_logs_its_report_on_the_parent_run(finished_sweep, tmp_path):
    client = MlflowClient(finished_sweep.uri)
    experiment = client.get_experiment_by_name("tests")
    parent = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'")[0]
    assert "report.html" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    page = open(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read()
    assert offline_problems(page) == [] and all(f'id="{element_id}"' in page for element_id in FIGURE_IDS)
    assert "Report:        report.html on the parent run" in finished_sweep.log

    # The sweep marked its experiment as model training and saved a runs view of its own.
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert VIEW_TAG_PREFIX + "finished" in experiment.tags
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id],
                                                        filter_string=f"tags.`{ROLE_TAG}` = 'trial'")}
    assert all(re.fullmatch(r"\w{8} resnet18 (none|se)( \(stopped early\) at epoch \d+)?", name) for name in names), names


@pytest.mark.ray
def test_sweeps_lists_the_finished_sweep(finished_sweep, capsys):
    client = MlflowClient(finished_sweep.uri)
    trials = client.search_runs([client.get_experiment_by_name("tests").experiment_id],
                                filter_string=f"tags.`{ROLE_TAG}` = 'trial'")
    assert main(["sweeps", "--tracking-uri", finished_sweep.uri, "--experiment", "tests"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sweep", "spec", "started", "duration", "trials", "metric", "best", "best", "trial",
                                "parent", "run", "promoted"]
    row = lines[2].split()
    assert row[:2] == ["finished", str(finished_sweep.root / "spec.yaml")] and row[-1] == "no"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", row[2]) and re.fullmatch(r"\d+(s|m)", row[4]) and row[5] == f"{len(trials)}:"
    parent = client.search_runs([client.get_experiment_by_name("tests").experiment_id],
                                filter_string=f"tags.`{ROLE_TAG}` = 'sweep'")[0]
    best = parent.data.tags["hpo_cls.best_trial_id"]
    assert row[-5:] == [f"{parent.data.metrics['best_val_acc']:.4f}", best, "resnet18", parent.info.run_id, "no"]
    assert row[-5] == f"{max(r.data.metrics['best_val_acc'] for r in trials if r.data.tags.get(STATUS_TAG) != 'failed'):.4f}"


def test_sweeps_are_listed_newest_first_with_trials_by_status_and_promotions(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
    t0 = int(time.time() * 1000)
    for i, (sweep_id, statuses, promoted) in enumerate((("old", ["completed", "failed"], True),
                                                        ("new", ["completed", "early_stopped", None], False))):
        parent = client.create_run(experiment_id, start_time=t0 + 1000 * i, tags={
            SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep", SWEEP_NAME_TAG: "spec"}).info.run_id
        for j, status in enumerate(statuses):
            tags = {SWEEP_ID_TAG: sweep_id, ROLE_TAG: "trial", PARENT_TAG: parent}
            run = client.create_run(experiment_id, tags={**tags, **({STATUS_TAG: status} if status else {})})
            client.log_metric(run.info.run_id, "best_val_acc", 0.5 + 0.1 * j)
            client.log_param(run.info.run_id, "backbone", f"resnet{18 + j}")
            client.set_tag(run.info.run_id, "hpo_cls.trial_id", f"{sweep_id}-t{j}")
        if promoted:
            promote = client.create_run(experiment_id, tags={SWEEP_ID_TAG: sweep_id, ROLE_TAG: "promote"}).info.run_id
            client.create_registered_model("spec-ensemble")
            client.create_model_version("spec-ensemble", (tmp_path / "model").as_uri(), run_id=promote)
            client.set_terminated(parent, end_time=t0 + 1000 * i + 25 * 60_000)
    listings = list_sweeps(client, "e")
    assert [s.record.sweep_id for s in listings] == ["new", "old"]
    assert listings[0].statuses == {"completed": 1, "early_stopped": 1, "running": 1}
    assert listings[1].best_score == pytest.approx(0.5), "a failed trial's score never counts"
    assert (listings[0].promotions, listings[1].promotions) == (0, 1)
    assert listings[1].models == ("spec-ensemble v1",) and listings[0].models == ()
    assert listings[0].best_trial == "new-t2 resnet20" and listings[1].best_trial == "old-t0 resnet18"
    assert listings[0].duration_s is None and listings[1].duration_s == pytest.approx(25 * 60)
    table = sweeps_table(listings).splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == ["sweep", "spec", "started", "duration", "trials", "metric", "best",
                                                       "best trial", "parent run", "promoted"]
    assert "3: 1 completed, 1 early_stopped, 1 running" in table[2] and table[2].rstrip().endswith("no")
    assert " running " in table[2] and "new-t2 resnet20" in table[2] and listings[0].record.run_id in table[2]
    assert "2: 1 completed, 1 failed" in table[3] and "0.5000" in table[3] and " 25m " in table[3]
    assert table[3].rstrip().endswith("spec-ensemble v1") and "old-t0 resnet18" in table[3]


def test_report_and_sweeps_name_an_unknown_sweep_or_experiment_in_one_line(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("e", artifact_location=(tmp_path / "mlruns").as_uri())
    assert main(["report", "--tracking-uri", uri, "--experiment", "e", "--out", str(tmp_path / "r.html")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: experiment 'e' holds no sweeps; run `hpo-cls sweep` first"]
    assert main(["sweeps", "--tracking-uri", uri, "--experiment", "nope"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no MLflow experiment 'nope'")
    assert "--experiment or --tracking-uri" in errors[0]
    assert not (tmp_path / "r.html").exists()


def synthetic_sweep():
    from hpo_cls.tracking.report_data import SweepData, TrialData
    from hpo_cls.tracking.store import SweepRecord

    t0 = 1_700_000_000_000
    record = SweepRecord("parent", "s-1", "spec", "1", t0, {"searched": "attention,lr", "epochs": "3"})
    trials = [
        TrialData("r1", "aaaa0001", "aaaa0001 resnet18 se", "completed", 3, 0.8, {"attention": "se", "lr": 0.001},
                  [(1, 0.5, t0 + 60_000), (2, 0.7, t0 + 120_000), (3, 0.8, t0 + 180_000)],
                  [{"class": "cat", "f1": 0.9}, {"class": "dog", "f1": 0.7}], values={"params_m": 11.2, "flops_g": 0.6}),
        TrialData("r2", "bbbb0002", "bbbb0002 resnet18 none", "early_stopped", 1, 0.3,
                  {"attention": "none", "lr": 0.05}, [(1, 0.3, t0 + 90_000)], values={"params_m": 11.1, "flops_g": 0.5}),
        TrialData("r3", "cccc0003", "cccc0003 resnet18 none", "completed", 3, 0.6, {"attention": "none", "lr": 0.01},
                  [(1, 0.4, t0 + 200_000), (2, 0.5, t0 + 260_000), (3, 0.6, t0 + 320_000)], baseline=True,
                  values={"params_m": 11.1, "flops_g": 0.5}),
        TrialData("r4", "dddd0004", "dddd0004 resnet18 none", "failed", 0, None, {"attention": "none", "lr": 0.02}),
    ]
    return SweepData(record, "e", "val_acc", 3, ["attention", "lr"], trials)


def test_report_figures_show_what_each_promises():
    from hpo_cls.tracking.report_figures import (
        learning_curves,
        parallel_coordinates,
        param_importances,
        per_class_f1,
        score_vs_time,
    )

    data = synthetic_sweep()
    assert [t.trial_id for t in data.ranked()] == ["aaaa0001", "cccc0003", "bbbb0002"], "failed trials never rank"
    dims = parallel_coordinates(data).data[0].dimensions
    assert [d.label for d in dims] == ["attention", "log10(lr)", "best_val_acc"]
    assert list(dims[0].ticktext) == ["none", "se"] and list(dims[1]["values"]) == pytest.approx([-3, -2, -1.30103])
    curves = learning_curves(data).data
    ends = {trace.legendgroup: trace.marker.symbol for trace in curves if trace.showlegend is False}
    assert ends == {"aaaa0001": "circle", "bbbb0002": "x", "cccc0003": "circle"}, "ASHA's stops are marked"
    importances = param_importances(data).data[0]
    assert set(importances.y) == {"attention", "lr"} and all(0 <= x <= 1 for x in importances.x)
    best_line = score_vs_time(data).data[-1]
    assert best_line.name == "best so far" and list(best_line.y) == [0.5, 0.7, 0.8, 0.8]
    assert list(best_line.x) == pytest.approx([1, 2, 3, 320_000 / 60_000])
    bars = per_class_f1(data).data
    assert len(bars) == 1 and list(bars[0].x) == ["cat", "dog"] and list(bars[0].y) == [0.9, 0.7]


def test_report_page_has_the_top_table_and_promote_command():
    from hpo_cls.tracking.report import render_report

    page = render_report(synthetic_sweep(), "http://user:secret@mlflow.example:5000")
    assert "secret" not in page and offline_problems(page) == []
    rows = re.findall(r"<tr><td class=\"num\">(\d)</td><td><a href=\"([^\"]+)\">([^<]+)</a>.*?<code>([^<]+)</code>",
                      page)
    assert [(rank, name, promote) for rank, _, name, promote in rows] == [
        ("1", "aaaa0001 resnet18 se", "--top 1"), ("2", "cccc0003 resnet18 none", "--top 2"),
        ("3", "bbbb0002 resnet18 none", "--top 3 --include-early-stopped")]
    assert rows[0][1] == "http://user:***@mlflow.example:5000/#/experiments/1/runs/r1?workflowType=machine_learning"
    assert "hpo-cls promote --top 2 --sweep s-1 --experiment e --tracking-uri http://user:***@mlflow.example:5000" in page


def test_importances_use_completed_trials_and_warn_under_twenty():
    from hpo_cls.tracking.report_figures import importance_warning, param_importances

    data = synthetic_sweep()
    assert importance_warning(data) == ("computed on 2 completed trial(s); 1 stopped early left out: under 20, "
                                        "a trial or two more can reorder them")
    figure = param_importances(data)
    assert "completed trials" in figure.layout.title.text and "under 20" in figure.layout.title.text


def test_pareto_plot_puts_the_metric_against_each_logged_cost():
    from hpo_cls.tracking.report_figures import pareto_axes, pareto_plot

    data = synthetic_sweep()
    assert pareto_axes(data) == ["params_m", "flops_g"], "the costs two completed trials logged"
    traces = pareto_plot(data).data
    assert len(traces) == 4  # per cost: the completed trials, the front
    dots, front = traces[0], traces[1]
    assert list(dots.x) == [11.2, 11.1] and list(dots.y) == [0.8, 0.6], "early-stopped trials are not plotted"
    assert list(front.text) == ["cccc0003", "aaaa0001"], "neither dominates the other: both on the front"
    for trial in data.trials:
        trial.values = {}
    assert pareto_axes(data) == [] and "needs a multi-objective sweep" in pareto_plot(data).layout.annotations[0].text


def test_report_links_go_to_the_ui_url_and_the_baseline_is_marked():
    from hpo_cls.tracking.report import render_report

    page = render_report(synthetic_sweep(), "sqlite:///x.db", ui_url="http://mlflow.lab:8080/")
    links = re.findall(r'<a href="([^"]+)"', re.sub(r"<script\b.*?</script>", "", page, flags=re.S))
    assert links and all(link.startswith("http://mlflow.lab:8080/#/experiments/1/") for link in links), links
    assert "127.0.0.1:5000" not in page
    table = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = {name: row for row in table.split("<tr>")[1:] for name in ("aaaa0001", "cccc0003") if name in row}
    assert '<span class="baseline"' in rows["cccc0003"] and "baseline" not in rows["aaaa0001"]
    assert "⚠ Importances computed on 2 completed trial(s)" in page
    assert 'id="pareto"' in page
    assert "Ks3cr3t" not in render_report(synthetic_sweep(), "sqlite:///x.db", ui_url="http://u:Ks3cr3t@mlflow.lab:8080")


def test_report_refuses_a_ui_url_that_is_not_an_http_address(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["report", "--ui-url", "mlflow.lab:8080", "--out", str(tmp_path / "r.html")])
    assert exited.value.code == 2 and not (tmp_path / "r.html").exists()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "expected an http(s) address like http://host:5000, got 'mlflow.lab:8080'" in errors[0]
