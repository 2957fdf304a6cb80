"""Beyond one objective, end to end with real Ray and MLflow: a two-objective sweep (val_acc, params_m), its
Pareto front, `promote --pareto --max-params`, a sweep warm-started from it, and estimated vs actual cost.

The sweep is built so that its front provably has two points: a small model that cannot learn (lr 1e-9)
and a larger one that can (Adam, lr 1e-3, on images whose class is their dominant colour)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import mlflow  # noqa: F401 - imported before a writer thread imports it too
import pytest
from mlflow.tracking import MlflowClient
from sweep_helpers import hpo_cls, make_images, sweep_runs, write_spec

from hpo_cls.spec import COST_METRICS, load_spec
from hpo_cls.sweep.tuner import _searcher, _warm_start

pytestmark = pytest.mark.ray

SPACE = {"backbone": {"choice": ["resnet18", "resnet34"]},
         "lr": {"choice": [0.001], "when": {"backbone": ["resnet34"]}}}  # resnet18 keeps the fixed lr 1e-9
FIXED = {"backbone": "resnet18", "small_input": True, "optimizer": "adam", "lr": 1.0e-9, "batch_size": 8}
OBJECTIVES = [{"metric": "val_acc", "mode": "max"}, {"metric": "params_m", "mode": "min"}]


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    spec = write_spec(root / "spec.yaml", make_images(root / "data"), name="pareto", objectives=OBJECTIVES,
                      budget={"epochs": 3, "num_samples": 2, "max_concurrent": 2},
                      search={"sampler": "grid", "space": SPACE}, fixed=FIXED)
    result = hpo_cls("sweep", str(spec), "--name", "pareto-1", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return SimpleNamespace(root=root, spec=spec, result=result, uri=uri, runs=sweep_runs(uri, "tests"))


def test_every_trial_logs_both_objectives_and_the_front_has_two_points(first_sweep):
    out = first_sweep.result.stdout
    assert "Traceback" not in out + first_sweep.result.stderr
    client, parents, children = first_sweep.runs
    assert len(children) == 2
    for run in children:
        assert {"val_acc", *COST_METRICS} <= set(run.data.metrics), sorted(run.data.metrics)
        assert run.data.tags["hpo_cls.status"] == "completed"
    sizes = sorted(run.data.metrics["params_m"] for run in children)
    assert sizes[0] < 15 < sizes[1]  # resnet18 and resnet34 with a 3-class head

    assert "Pareto front of val_acc (max), params_m (min): 2 of 2 completed trial(s)" in out
    (parent,) = parents
    assert parent.data.params["objectives"] == "val_acc:max,params_m:min"
    assert parent.data.metrics["n_pareto"] == 2
    assert {"pareto_front.png", "pareto_front.csv"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_the_estimate_comes_first_and_the_summary_sets_it_against_the_actual_time(first_sweep):
    lines = first_sweep.result.stdout.splitlines()
    first_sweep_line = next(i for i, line in enumerate(lines) if "sweep pareto-1:" in line)
    assert any(re.search(r"estimate resnet34\s+[\d.]+ images/s", line) for line in lines[:first_sweep_line])
    assert any(line.startswith("[hpo-cls] estimate sweep:") for line in lines[:first_sweep_line])
    match = re.search(r"cost: estimated .* took .* \(([\d.]+)x the estimated time\)", first_sweep.result.stdout)
    assert match, first_sweep.result.stdout[-2000:]
    # A units check, not a speed target (bench/README.md has the measured figures): seconds, not minutes.
    assert 0.1 < float(match.group(1)) < 10
    (parent,) = first_sweep.runs[1]
    assert parent.data.metrics["estimated_wall_s"] > 0 and parent.data.metrics["wall_s"] > 0


def test_promote_pareto_with_a_parameter_budget_picks_only_smaller_models(first_sweep):
    result = hpo_cls("promote", "--pareto", "--max-params", "15e6", "--top", "1", "--epochs", "1",
                     "--sweep", "pareto-1", "--tracking-uri", first_sweep.uri, "--experiment", "tests",
                     cwd=first_sweep.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front of val_acc, params_m within params_m <= 15: 1 member(s)" in result.stdout
    client = MlflowClient(first_sweep.uri)
    experiment = client.get_experiment_by_name("tests")
    (promote,) = client.search_runs([experiment.experiment_id], "tags.`hpo_cls.role` = 'promote'")
    sources = promote.data.params["source_run_ids"].split(",")
    assert sources and all(client.get_run(r).data.metrics["params_m"] < 15 for r in sources)


def test_a_warm_started_sweep_holds_the_first_sweeps_trials_before_its_first_proposal(first_sweep, tmp_path):
    second = write_spec(first_sweep.root / "second.yaml", first_sweep.root / "data", name="pareto",
                        objectives=OBJECTIVES, budget={"epochs": 3, "num_samples": 1, "max_concurrent": 1},
                        search={"sampler": "tpe", "space": SPACE, "baseline_first": False}, fixed=FIXED)
    spec = load_spec(second)
    history, first = _warm_start(spec, ["pareto-1"], report=lambda message: None)
    searcher = _searcher(spec, num_classes=3, sweep_id="pareto-2-check", report=lambda message: None,
                         history=history, first=first)
    assert len(history) == 2 and len(first) == 1, "one trial: it trains the first sweep's best again"
    assert searcher.suggest("first") == searcher.study.trials[-1].params == first[0]
    assert searcher.study.trials[-1].number == 2, "its first proposal comes after the first sweep's trials"

    result = hpo_cls("sweep", str(second), "--name", "pareto-2", "--warm-start", "pareto-1", "--no-estimate",
                     cwd=first_sweep.root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm start from pareto-1: 2 trial(s)" in result.stdout
    assert "warm start: the first 1 trial(s) train the earlier best configuration(s) again" in result.stdout
    _, parents, _ = sweep_runs(first_sweep.uri, "tests")
    parent = next(p for p in parents if p.data.tags["hpo_cls.sweep_id"] == "pareto-2")
    assert (parent.data.params["warm_start_from"], parent.data.params["warm_start_trials"]) == ("pareto-1", "2")
