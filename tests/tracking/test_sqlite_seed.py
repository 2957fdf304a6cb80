"""A new SQLite tracking store is a copy of an empty one migrated once per machine: what MLflow builds by
running its whole schema history, without the seconds that costs every first sweep in a folder."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from hpo_cls.tracking.sqlite_seed import seed_new_sqlite_store, template_path


def test_a_seeded_store_is_a_working_mlflow_store_of_its_own_folder(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)  # MLflow puts the Default experiment's artifacts under the cwd
        uri = f"sqlite:///{tmp_path / folder / 'mlflow.db'}"
        assert seed_new_sqlite_store(uri, cache_root=cache)
        client = MlflowClient(uri)  # MLflow checks the schema is its current one
        default = client.get_experiment_by_name("Default")
        built_by_mlflow = MlflowClient(f"sqlite:///{tmp_path / folder / 'plain.db'}").get_experiment_by_name("Default")
        assert default.artifact_location == built_by_mlflow.artifact_location == str(tmp_path / folder / "mlruns" / "0")
        experiment = client.create_experiment(f"exp-{folder}")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "val_acc", 0.5, step=1)
        client.set_terminated(run.info.run_id)
        found = client.search_runs([experiment])
        assert [r.data.metrics["val_acc"] for r in found] == [0.5]
        assert client.search_experiments() and len(client.search_experiments()) == 2, "Default and its own only"


def test_the_template_is_built_once_and_an_existing_store_is_left_alone(tmp_path):
    cache = tmp_path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert seed_new_sqlite_store(uri, cache_root=cache)
    template = template_path(cache)
    built = template.stat().st_mtime_ns
    MlflowClient(uri).create_experiment("kept")
    before = (tmp_path / "mlflow.db").read_bytes()
    assert not seed_new_sqlite_store(uri, cache_root=cache)
    assert (tmp_path / "mlflow.db").read_bytes() == before
    assert seed_new_sqlite_store(f"sqlite:///{tmp_path / 'other.db'}", cache_root=cache)
    assert template.stat().st_mtime_ns == built
    assert not list(tmp_path.glob(".*.seed")), "no staged copy left behind"


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:", "http://127.0.0.1:5000", "file:///tmp/mlruns",
                                 "sqlite:///{tmp}/mlflow.db?timeout=20", "sqlite:///{tmp}/missing-folder/mlflow.db"])
def test_other_stores_are_left_to_mlflow(tmp_path, uri):
    assert not seed_new_sqlite_store(uri.format(tmp=tmp_path), cache_root=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
