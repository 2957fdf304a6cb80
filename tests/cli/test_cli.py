"""The ``hpo-cls`` command line, run as a real subprocess: help, validate, train, and how bad input fails."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_cls.train.checkpoint import load_checkpoint

REPO = Path(__file__).parents[2]
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
COMMANDS = ("validate", "train", "sweep", "ui", "promote", "predict", "sweeps", "report")


def hpo_cls(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo_cls.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, "bad input never shows a traceback"
    assert result.returncode == 2, f"bad input exits 2, got {result.returncode}: {result.stderr}"
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_help_lists_every_command_with_its_purpose():
    result = hpo_cls("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\w", result.stdout, re.M), f"{command} is listed with a one-line help"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_description(command):
    result = hpo_cls(command, "--help")
    assert result.returncode == 0
    paragraphs = result.stdout.split("\n\n")
    assert not paragraphs[1].startswith(("positional arguments", "options")), "a description follows the usage"


def test_validate_quickstart_prints_parameter_counts():
    result = hpo_cls("validate", QUICKSTART)
    assert result.returncode == 0, result.stderr
    for backbone in ("resnet18", "resnet34"):  # every backbone the sweep may pick
        assert re.search(rf"model {backbone}\s+[\d,]+ parameters\s+ok", result.stdout), f"{backbone} is counted"


@pytest.mark.parametrize(
    ("command", "sections", "overrides", "key"),
    [
        ("validate", dict(bogus=1), [], "bogus"),
        ("validate", dict(search={"space": {"lr": {"loguniform": [0.1, 0.001]}}}), [], "search.space.lr.loguniform"),
        ("validate", dict(fixed={"backbone": "resnet9"}), [], "fixed.backbone"),
        ("validate", {}, ["budget.epochs"], "--set budget.epochs"),
        ("validate", {}, ["max_params=1000"], "fixed.backbone"),
        ("train", {}, ["max_params=1000"], "fixed.backbone"),  # refused before any training
    ],
    ids=["unknown-key", "reversed-range", "unknown-backbone", "set-without-value", "over-max-params",
         "train-over-max-params"],
)
def test_bad_spec_exits_2_with_one_error_line(tiny_spec, tmp_path, command, sections, overrides, key):
    spec = tiny_spec(**sections)
    args = [command, spec, *(a for o in overrides for a in ("--set", o))]
    if command == "train":
        args += ["--out", tmp_path / "out"]
    (line,) = error_lines(hpo_cls(*args, cwd=tmp_path))
    assert key in line, f"the error names {key}: {line}"
    assert not (tmp_path / "out").exists(), "nothing is written for a rejected spec"


# < 3M parameters; without a baseline trial (which would train the fixed backbone) no trial uses resnet18
SMALL_BACKBONES = {"search": {"baseline_first": False, "space": {"backbone": {"choice": ["wrn16_4", "wrn28_2"]}}}}


def test_validate_checks_only_backbones_a_trial_can_use(tiny_spec, tmp_path):
    # fixed.backbone defaults to resnet18 (11M), but every trial picks one of the small searched backbones
    result = hpo_cls("validate", tiny_spec(**SMALL_BACKBONES), "--set", "max_params=3000000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "model resnet18" not in result.stdout, "the unused fixed backbone is neither counted nor refused"


@pytest.mark.parametrize(
    ("fixed_backbone", "searched", "returncode"),
    [("wrn28_2", ["resnet18"], 0), ("resnet18", ["wrn28_2"], 2)],
    ids=["searched-backbone-too-big", "trained-backbone-too-big"],
)
def test_train_checks_the_backbone_it_trains(tiny_spec, tmp_path, fixed_backbone, searched, returncode):
    spec = tiny_spec(fixed={"backbone": fixed_backbone, "small_input": True, "batch_size": 4, "amp": False},
                     search={"space": {"backbone": {"choice": searched}}})
    result = hpo_cls("train", spec, "--set", "max_params=3000000", "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == returncode, result.stderr


def test_missing_spec_file_exits_2(tmp_path):
    (line,) = error_lines(hpo_cls("validate", tmp_path / "nope.yaml"))
    assert "no such file" in line


def test_validate_lists_unreadable_images(tiny_spec, tiny_image_folder, tmp_path):
    good = (tiny_image_folder / "train" / "0" / "0.jpg").read_bytes()
    bad = {
        "truncated.jpg": good[: len(good) // 2],
        "empty.jpg": b"",
        "notes.png": b"not an image, just text",
    }
    for name, content in bad.items():
        (tiny_image_folder / "train" / "1" / name).write_bytes(content)
    result = hpo_cls("validate", tiny_spec(), cwd=tmp_path)
    (line,) = error_lines(result)
    assert "data.root: 3 unreadable image(s)" in line
    for name in bad:
        assert name in result.stdout and name in line, f"{name} is named so the user can remove it"


def test_train_quickstart_writes_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "run"
    result = hpo_cls("train", QUICKSTART, "--set", "budget.epochs=1", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["class_to_idx"] == {str(i): i for i in range(10)}, "numeric class folders keep their ids"
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1"], "one row per epoch"
    assert {"train_loss", "val_loss", "val_acc"} <= rows[0].keys()


@pytest.mark.parametrize("spec", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_passes_validate(spec, tmp_path):
    # Specs other than the quickstart point at the user's course data; validate them on the embedded copy.
    result = hpo_cls("validate", spec, "--no-scan", "--set", f"data.root={REPO / 'data' / 'cifar10-mini'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("ok")


def test_ui_serves_the_tracking_store_on_loopback(tmp_path):
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "ui", "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert ui.poll() is None, ui.stdout.read()
                assert time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(1)
        listening = [c for c in __import__("psutil").net_connections("tcp")
                     if c.laddr and c.laddr.port == port and c.status == "LISTEN"]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening), "bound to loopback only"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


class _Stream:
    def __init__(self, tty: bool):
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("stdout_tty, stderr_tty, colour", [(False, False, False), (True, False, False),
                                                            (True, True, True)])
def test_ray_lines_in_a_file_carry_no_colour_codes(monkeypatch, stdout_tty, stderr_tty, colour):
    import io

    from ray._private.worker import print_worker_logs

    from hpo_cls.cli import plain_ray_logs_unless_terminal

    for name in ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    plain_ray_logs_unless_terminal(_Stream(stdout_tty), _Stream(stderr_tty))
    printed = io.StringIO()
    print_worker_logs({"pid": "raylet", "ip": "127.0.0.1", "localhost": "127.0.0.1",
                       "lines": ["file_system_monitor.cc:116: /tmp/ray is over 95% full"]}, printed)
    assert ("\x1b[" in printed.getvalue()) is colour
    assert "file_system_monitor.cc:116" in printed.getvalue(), "the line itself is kept"
    assert os.environ.get("RAY_DEDUP_LOGS") == (None if colour else "0"), "no repeats folded behind a colour code"


def test_the_cli_sets_ray_output_before_ray_is_imported():
    """Ray reads RAY_DEDUP_LOGS at import: importing the CLI and parsing must not import it."""
    code = ("import sys; from hpo_cls.cli import build_parser; build_parser().parse_args(['sweep', 'x.yaml']); "
            "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("address, loopback", [("127.0.0.1:6379", False), ("local", True), (None, True)])
def test_a_sweep_with_a_private_ray_sets_rays_loopback_switch_before_ray_is_imported(tiny_spec, monkeypatch,
                                                                                     address, loopback):
    """Ray reads its one-machine switch (public: an environment variable) when it is imported: a sweep that
    starts a private Ray sets it first, so that Ray listens on 127.0.0.1 even with HPO_CLS_COMPAT=off. A sweep
    joining a running Ray leaves it alone."""
    from hpo_cls.cli import commands, main
    from hpo_cls.compat import RAY_CLUSTER_SWITCH
    from hpo_cls.errors import CommandError
    from hpo_cls.sweep import cluster

    monkeypatch.delenv(RAY_CLUSTER_SWITCH, raising=False)  # restored after the test
    seen = []
    monkeypatch.setattr(cluster, "connect_ray", lambda address, object_store_bytes: False)

    def checks_stop_the_sweep(spec):
        seen.append(os.environ.get(RAY_CLUSTER_SWITCH))
        raise CommandError("checks: stop here")

    monkeypatch.setattr(commands, "_preflight_and_imports", checks_stop_the_sweep)
    argv = ["sweep", str(tiny_spec()), *(["--address", address] if address else [])]
    assert main(argv) == 2
    assert seen == (["0"] if loopback else [None])
