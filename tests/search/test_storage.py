"""``search.storage``: checked when the spec is read (errors name the key), resolved to the study's own
tables, and why the study never shares MLflow's: both keep an ``alembic_version`` table."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hpo_cls.errors import SpecError
from hpo_cls.search.storage import study_storage
from hpo_cls.spec import parse_spec


def spec_with(storage, tracking_uri="sqlite:///mlflow.db"):
    return parse_spec({"name": "t", "search": {"storage": storage}, "tracking": {"uri": tracking_uri}})


@pytest.mark.parametrize("storage", ["memory", "tracking", "sqlite:///optuna.db", "postgresql+psycopg://u@h/db"])
def test_memory_tracking_and_rdb_urls_are_accepted(storage):
    assert spec_with(storage).search.storage == storage


def test_the_default_is_in_memory():
    assert parse_spec({"name": "t"}).search.storage == "memory"


@pytest.mark.parametrize("storage, tracking_uri, message", [
    ("optuna.db", "sqlite:///mlflow.db", "expected memory, tracking or an RDB URL"),
    ("http://127.0.0.1:8080", "sqlite:///mlflow.db", "expected memory, tracking or an RDB URL"),
    (3, "sqlite:///mlflow.db", "expected a non-empty string"),
    ("sqlite:///mlflow.db", "sqlite:///./mlflow.db", "tables collide"),
    ("tracking", "http://user:secret@mlflow:5000", "tracking needs a SQLite or PostgreSQL tracking.uri"),
])
def test_a_storage_that_cannot_work_is_refused_naming_the_key(storage, tracking_uri, message):
    with pytest.raises(SpecError) as error:
        spec_with(storage, tracking_uri)
    text = str(error.value)
    assert "search.storage: " in text and message in text
    assert "secret" not in text, "a password in a URI is never printed"


def test_tracking_puts_the_study_beside_a_sqlite_store_and_in_a_schema_of_a_postgresql_one(tmp_path):
    assert study_storage("tracking", f"sqlite:///{tmp_path}/runs/mlflow.db") == f"sqlite:///{tmp_path}/runs/mlflow-optuna.db"
    assert study_storage("tracking", "postgresql+psycopg://u@h:5432/mlflow?sslmode=require") == \
        "postgresql+psycopg://u@h:5432/mlflow?sslmode=require&options=-csearch_path%3Doptuna"
    assert study_storage("memory", "sqlite:///mlflow.db") is None


def test_a_relative_sqlite_path_is_made_absolute_so_a_resume_from_elsewhere_finds_the_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_storage("sqlite:///studies/optuna.db", "sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/studies/optuna.db"


def _mlflow_run(uri, experiment="x"):
    client = MlflowClient(uri)
    client.create_run(client.create_experiment(experiment))


def _optuna_trial(uri):
    optuna.create_study(storage=uri, study_name="s").add_trial(optuna.trial.create_trial(value=1.0))


@pytest.mark.parametrize("first, second", [(_mlflow_run, _optuna_trial), (_optuna_trial, _mlflow_run)])
def test_optuna_and_mlflow_cannot_share_one_sqlite_file_but_work_side_by_side(tmp_path, first, second):
    """Why `tracking` means a file of the study's own: whichever comes second refuses the first's tables."""
    shared = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first(shared)
    with pytest.raises(Exception):  # noqa: B017 - MLflow and Optuna each raise their own kind
        second(shared)
    tracking = f"sqlite:///{tmp_path / 'tracking.db'}"
    _mlflow_run(tracking)
    _optuna_trial(study_storage("tracking", tracking))
    assert len(optuna.load_study(study_name="s", storage=study_storage("tracking", tracking)).trials) == 1


@pytest.mark.postgres
def test_tracking_on_postgresql_keeps_the_study_in_a_schema_of_its_own(mlflow_on_postgres, monkeypatch):
    from hpo_cls.search.searcher import StudySearcher
    from hpo_cls.search.optuna_space import DefineByRun
    from hpo_cls.search.storage import prepare_storage
    from hpo_cls.spec import Param, TrialConfig

    monkeypatch.setenv("PGPASSWORD", mlflow_on_postgres.cluster.env["PGPASSWORD"])
    url = study_storage("tracking", mlflow_on_postgres.cluster.uri)  # the MLflow server's own database
    prepare_storage(url)
    space = (Param("lr", "loguniform", low=1e-3, high=1e-1, log=True),)
    searcher = StudySearcher(DefineByRun(space, TrialConfig()), metric="val_acc", mode="max",
                             sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=1,
                             param_count=lambda config: 1, max_params=10, storage=url, study_name="pg-1")
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"val_acc": 0.5, "epoch": 1})
    assert optuna.load_study(study_name="pg-1", storage=url).best_value == 0.5
    _mlflow_run(mlflow_on_postgres.uri, "beside-a-study")  # MLflow's tables, beside the study's, still work
