"""Shared by the end-to-end tests: run the CLI, make a tiny dataset and spec, read the MLflow store."""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image
from processes import kill_tree

REPO = Path(__file__).resolve().parents[1]


def hpo_cls(*args: str, cwd: Path, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI; if it has not ended by ``timeout`` (or the test is interrupted), it is killed together
    with every process it started (a local Ray's), by their PIDs."""
    return run_killing_tree([sys.executable, "-m", "hpo_cls.cli", *args], timeout, cwd=cwd, **kwargs)


def run_killing_tree(command: list, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``command``; if it has not ended by ``timeout`` (or the test is interrupted), it is killed with every
    process it started, by their PIDs."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            kill_tree(process)
            process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def start_sweep(spec: Path, name: str, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`hpo-cls sweep SPEC --name NAME [ARGS]` in the background, its output in CWD/NAME.log (a pipe that
    nobody reads while the test waits could fill up and stall the sweep); see :func:`sweep_output`."""
    with open(cwd / f"{name}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "sweep", str(spec), "--name", name, *args],
                                cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)


def sweep_output(driver: subprocess.Popen, cwd: Path, name: str, timeout: float) -> str:
    """Wait for the background sweep NAME (:func:`start_sweep`) to end; its output."""
    driver.wait(timeout=timeout)
    return (cwd / f"{name}.log").read_text()


def epochs_reported(cwd: Path, name: str) -> int:
    """Epochs the trials of sweep NAME have reported so far (lines of Tune's result.json files)."""
    return sum(len(p.read_text().splitlines()) for p in (cwd / "ray_results" / name).glob("*/result.json"))


def make_images(root: Path, classes: int = 3, train: int = 16, val: int = 4, size: int = 16) -> Path:
    """A tiny learnable dataset: each class has its own dominant colour."""
    rng = random.Random(0)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for i in range(count):
                colour = [rng.randint(0, 80) for _ in range(3)]
                colour[c % 3] = 200
                Image.new("RGB", (size, size), tuple(colour)).save(folder / f"{i}.png")
    return root


TINTS = {"0": (200, 40, 40), "1": (40, 200, 40), "2": (40, 40, 200)}


def write_tinted_image(path: Path, rng, tint) -> None:
    """A 16 px image of ``tint`` with noise (``rng``: a NumPy Generator)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rng.normal(tint, 40, (16, 16, 3)), 0, 255).astype(np.uint8)).save(path)


def make_tinted_images(root: Path) -> Path:
    """16 px noisy images of 3 classes (0, 1, 2, named red, green, blue in class_names.csv): train 6 / val 3
    per class, a flat test/ of 7 with test_labels.csv; a member learns them in seconds."""
    rng = np.random.default_rng(0)
    for label, tint in TINTS.items():
        for split, n in (("train", 6), ("val", 3)):
            for i in range(n):
                write_tinted_image(root / split / label / f"{i}.png", rng, tint)
    rows = []
    for i, label in enumerate(["2", "0", "1", "1", "0", "2", "0"]):
        name = f"img{i:02d}"
        write_tinted_image(root / "test" / f"{name}.png", rng, TINTS[label])
        rows.append((name, label))
    with open(root / "test_labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image_name", "label"), *rows])
    (root / "class_names.csv").write_text("index,name\n0,red\n1,green\n2,blue\n")
    return root


def write_spec(path: Path, data_root: Path, **sections) -> Path:
    spec = {
        "name": "tiny",
        "data": {"root": str(data_root), "image_size": 16, "workers": 0},
        "budget": {"epochs": 3, "num_samples": 4, "max_concurrent": 2},
        "resources": {"cpu": 1},
        "scheduler": {"type": "fifo"},
        "search": {"sampler": "random", "seed": 1, "space": {"lr": {"loguniform": [0.01, 0.1]}}},
        "fixed": {"backbone": "resnet18", "batch_size": 8},
        "tracking": {"uri": f"sqlite:///{path.parent / 'mlflow.db'}", "experiment": "tests"},
        "storage_path": str(path.parent / "ray_results"),
    }
    for key, value in sections.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(spec))
    return path


# A quickstart-sized search space on tiny images: what the console, report and UI tests sweep over.
QUICKSTART_LIKE_SPACE = {
    "backbone": {"choice": ["resnet18"]},
    "attention": {"choice": ["none", "se"]},
    "dropout": {"uniform": [0.0, 0.5]},
    "lr": {"loguniform": [0.01, 0.1]},
}


def write_quickstart_like_spec(folder: Path) -> Path:
    """4 trials of up to 2 epochs, 2 at a time, ASHA, on 16 px images of 3 classes (8 train / 4 val each)."""
    data = make_images(folder / "data", train=8, val=4)
    return write_spec(folder / "spec.yaml", data, budget={"epochs": 2, "num_samples": 4, "max_concurrent": 2},
                      scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
                      search={"sampler": "random", "seed": 1, "space": QUICKSTART_LIKE_SPACE})


def sweep_runs(tracking_uri: str, experiment: str):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("hpo_cls.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("hpo_cls.role") == "trial"]
    return client, parents, children


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(tmp_path: Path, port: int, backend_uri: str | None = None,
                        env: dict[str, str] | None = None) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:PORT, proxying artifacts to a folder; its store is SQLite unless
    ``backend_uri`` names another (``env`` then carries what it needs, e.g. PGPASSWORD)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend_uri or f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )

    def healthy() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(healthy, 180, "the MLflow server to listen")
    return server


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def metric_points(tracking_uri: str, experiment: str, results: Path) -> tuple[int, int]:
    """``(reported, lost)``: the metric points the trials of the sweep in ``results`` reported (each
    epoch's line of Tune's result.json files, every metric the sweep records) and how many of them are
    not in the sweep's MLflow runs."""
    import json

    from hpo_cls.spec import COST_METRICS
    from hpo_cls.sweep.callbacks import COST_STEP, METRIC_KEYS

    client, _, children = sweep_runs(tracking_uri, experiment)
    runs = {r.data.tags["hpo_cls.trial_id"]: r.info.run_id for r in children}
    reported = set()
    for result_file in results.glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            result = json.loads(line)
            # a model's costs are one point each at COST_STEP, whichever epoch reported them
            reported |= {(result["trial_id"], key, COST_STEP if key in COST_METRICS else int(result["epoch"]))
                         for key in METRIC_KEYS if isinstance(result.get(key), (int, float))}
    stored = set()
    for trial_id, key in {(t, k) for t, k, _ in reported}:
        if trial_id in runs:
            stored |= {(trial_id, key, m.step) for m in client.get_metric_history(runs[trial_id], key)}
    return len(reported), len(reported - stored)
