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


def pytest_terminal_summary(terminalreporter) -> None:
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
