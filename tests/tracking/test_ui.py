"""What the MLflow UI is given to show: the experiment's kind, run names, logged params and costs, and the
links `hpo-cls ui` prints (the pages themselves, in a browser: test_ui_browser.py)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from hpo_cls.spec import COST_METRICS
from hpo_cls.tracking.runs import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
    end_run_op,
    find_or_create_experiment,
)
from hpo_cls.tracking.ui import model_url, ui_links


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_an_experiment_hpo_cls_creates_is_a_model_training_one(client):
    experiment_id = find_or_create_experiment(client, "e")
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, "genai_development")
    find_or_create_experiment(client, "e")
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development", "a choice made stays"


@pytest.mark.parametrize("status, name", [("early_stopped", "t1 resnet18 none (stopped early) at epoch 2"),
                                          ("completed", "t1 resnet18 none")])
def test_an_early_stopped_trial_says_so_in_its_run_name(client, status, name):
    run = client.create_run(find_or_create_experiment(client, "e"), run_name="t1 resnet18 none").info.run_id
    for _ in range(2):  # a finalize retried renames once
        end_run_op(status, extra_tags={"hpo_cls.epochs_run": "2"})(client, run)
    assert client.get_run(run).info.run_name == name
    assert client.get_run(run).data.tags[STATUS_TAG] == status


def test_ui_prints_the_model_page_of_the_sweeps_last_promotion(client, tmp_path):
    experiment_id = find_or_create_experiment(client, "e")
    parent = client.create_run(experiment_id, tags={SWEEP_ID_TAG: "s1", ROLE_TAG: "sweep"}).info.run_id
    base = "http://127.0.0.1:5000"
    assert not any(line.startswith("Model:") for line in ui_links(client, "e", None, base))
    for _ in range(2):
        promote = client.create_run(experiment_id, tags={SWEEP_ID_TAG: "s1", ROLE_TAG: "promote"}).info.run_id
        if not client.search_registered_models():
            client.create_registered_model("tiny ensemble")
        client.create_model_version("tiny ensemble", (tmp_path / "m").as_uri(), run_id=promote)
    lines = ui_links(client, "e", "s1", base)
    assert lines[-2].split()[-1].endswith(f"/runs/{parent}?workflowType=machine_learning")
    assert lines[-1].split() == ["Model:", f"{base}/#/models/tiny%20ensemble/versions/2"]
    assert model_url(base, "m") == f"{base}/#/models/m"


@pytest.mark.ray
def test_a_sweeps_trial_runs_log_active_params_and_each_cost_once(finished_sweep):
    client = MlflowClient(finished_sweep.uri)
    experiment = client.get_experiment_by_name("tests")
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'")
    assert trials
    for run in trials:
        params = run.data.params
        assert not {"mixup_alpha", "cutmix_alpha", "mix_prob"} & set(params), "mix is none: its settings never act"
        assert ("attention_placement" in params) == (params["attention"] != "none"), params
        assert "lr" in params and "dropout" in params
        for cost in set(COST_METRICS) & set(run.data.metrics):
            history = client.get_metric_history(run.info.run_id, cost)
            assert [m.step for m in history] == [0], f"{cost} logged once, not per epoch"
            assert history[0].value == round(history[0].value, 4)
        if run.data.tags.get(STATUS_TAG) == "early_stopped":
            assert "(stopped early)" in run.info.run_name
    assert not any("plateau_patience" in r.data.params for r in trials), "lr_scheduler is cosine"
