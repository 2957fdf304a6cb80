"""Shared fixtures: a tiny real image folder and a sweep spec that trains on it in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

TINY_CLASSES = 3
TINY_TRAIN_PER_CLASS = 4
TINY_VAL_PER_CLASS = 2


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """Decoded-image caches and `hpo-cls cluster` state go to a folder of this test session (subprocesses
    and Ray workers inherit it), never to the user's ~/.cache/hpo-cls or a cluster they started."""
    previous = os.environ.get("HPO_CLS_CACHE_DIR")
    os.environ["HPO_CLS_CACHE_DIR"] = str(tmp_path_factory.mktemp("hpo-cls-cache"))
    yield Path(os.environ["HPO_CLS_CACHE_DIR"])
    if previous is None:
        os.environ.pop("HPO_CLS_CACHE_DIR", None)
    else:
        os.environ["HPO_CLS_CACHE_DIR"] = previous


@pytest.fixture(autouse=True, scope="session")
def private_ray_auth_token(tmp_path_factory):
    """Ray's token authentication with a token of this test session: every Ray the tests start (private
    instances, `ray start` nodes, the drivers joining them) reads it from this file, so the suite needs no
    ~/.ray/auth_token and never writes or uses the user's (`ray start` does not create a missing one)."""
    import secrets

    saved = {key: os.environ.get(key) for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    token = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the file
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    yield token
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def tiny_image_folder(tmp_path) -> Path:
    """``train/0..2`` (4 JPEGs each) and ``val/0..2`` (2 each) of 16x16 images, a class-dependent tint."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in range(TINY_CLASSES):
        for split, n in (("train", TINY_TRAIN_PER_CLASS), ("val", TINY_VAL_PER_CLASS)):
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 128, (16, 16, 3), np.uint8)
                pixels[..., c] += 120
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


@pytest.fixture
def tiny_spec(tmp_path, tiny_image_folder):
    """``tiny_spec(**sections)`` writes a spec for ``tiny_image_folder`` (resnet18, 16px, 1 epoch, no
    workers) and returns its path; keyword arguments replace top-level sections."""

    def write(name: str = "tiny.yaml", **sections) -> Path:
        spec = {
            "name": "tiny",
            "data": {"root": str(tiny_image_folder), "image_size": 16, "workers": 0},
            "budget": {"epochs": 1, "num_samples": 2, "max_concurrent": 1},
            "fixed": {"backbone": "resnet18", "small_input": True, "batch_size": 4, "lr": 0.01, "amp": False},
            "search": {"sampler": "random", "space": {"lr": {"loguniform": [0.001, 0.1]}}},
            **sections,
        }
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


# The fault-injection suite (tests/sweep/test_faults.py) reports its figures in pytest's closing summary.
_FAULT_LEDGER = {"trials": 0, "faults_injected": 0, "runs_lost": 0, "duplicates": 0}


@pytest.fixture
def ledger() -> dict[str, int]:
    """Fault tests add what they ran and injected, and the MLflow runs lost or duplicated."""
    return _FAULT_LEDGER


def _print_fault_ledger(terminalreporter) -> None:
    if _FAULT_LEDGER["faults_injected"]:
        figures = ", ".join(f"{k} = {v}" for k, v in _FAULT_LEDGER.items())
        terminalreporter.write_line(f"fault suite: {figures}")


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """One finished quickstart-sized sweep per test session, shared by the tests that read a store (report,
    sweeps, the MLflow UI in a browser). Its output went to a file, as under nohup or in CI: ``log``."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from sweep_helpers import write_quickstart_like_spec

    root = tmp_path_factory.mktemp("finished-sweep")
    spec = write_quickstart_like_spec(root)
    with open(root / "sweep.log", "w") as log:
        result = subprocess.run([sys.executable, "-m", "hpo_cls.cli", "sweep", str(spec), "--name", "finished"],
                                cwd=root, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    text = (root / "sweep.log").read_text()
    assert result.returncode == 0, text[-3000:]
    return SimpleNamespace(root=root, uri=f"sqlite:///{root / 'mlflow.db'}", experiment="tests", sweep_id="finished",
                           log=text)


# Fault tests add one figure line each (what was injected, what was measured, what was lost), printed
# in pytest's closing summary and listed in docs/reliability.md.
_FAULT_FIGURES: list[str] = []


@pytest.fixture
def fault_figure():
    """``fault_figure(fault, total, lost, unit)`` records ``faults: FAULT -> LOST of TOTAL UNIT lost``."""

    def record(fault: str, total: int, lost: int, unit: str = "metric points") -> None:
        _FAULT_FIGURES.append(f"faults: {fault} -> {lost} of {total} {unit} lost")

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    _print_fault_ledger(terminalreporter)
    for line in _FAULT_FIGURES:
        terminalreporter.write_line(line)


# Hermetic Ray: every test gets its own Ray temp folder (so a local Ray it starts, in process or in a CLI
# subprocess, shares no session, socket or address file with any other), and a Ray cluster the suite did
# not start (the bystander) runs from before the first Ray test until a last test checks it survived.


@pytest.fixture(autouse=True)
def _environment_restored():
    """What a test's in-process command sets in the environment (``main()`` sets Ray's and MLflow's output
    settings, as its process would) ends with the test: no later test runs under it."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture
def terminal_environment(monkeypatch):
    """What a person's terminal session sets, whatever the CI shell has (TERM=dumb, NO_COLOR, ...)."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _own_ray_temp_dir(monkeypatch, request):
    import tempfile

    from hpo_cls.sweep.reuse import trial_process_environment

    folder = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay within 107 chars
    monkeypatch.setenv("RAY_TMPDIR", folder)
    for name in trial_process_environment():  # connect_ray sets them for local Rays
        monkeypatch.delenv(name, raising=False)
    if request.node.get_closest_marker("ray"):
        request.getfixturevalue("bystander_ray")
    yield
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def bystander_ray():
    """A one-node cluster started with `ray start --head`, with a detached actor whose process is named
    like a Tune trial's (``ray::ImplicitFunc``): what a user's own Ray work on this machine looks like."""
    from ray_nodes import RayNode, start_detached_actor

    node = RayNode()
    try:
        start_detached_actor(node)
        yield node
    finally:
        node.stop()


def pytest_collection_modifyitems(items) -> None:
    last = [item for item in items if item.get_closest_marker("last")]
    items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def mlflow_on_postgres(tmp_path_factory):
    """One PostgreSQL cluster and an MLflow server on it for the whole session (each test its own
    experiment); skipped only where the PostgreSQL server binaries are missing, and never in CI
    (.ci/run installs them and sets HPO_CLS_REQUIRE_POSTGRES=1)."""
    import os

    from postgres import MlflowOnPostgres, PostgresCluster, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: `apt-get install postgresql` to run this test"
        if os.environ.get("HPO_CLS_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = PostgresCluster(bin_dir)
    try:
        server = MlflowOnPostgres(cluster, tmp_path_factory.mktemp("mlflow-on-postgres"))
        try:
            yield server
        finally:
            server.stop()
    finally:
        cluster.delete()
