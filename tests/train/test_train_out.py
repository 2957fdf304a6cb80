"""``hpo-cls train --out``: refused before any training when it cannot hold the run, locked against a second
run, never overwritten silently; ``--resume`` continues exactly, ``--force`` starts over (issue #15)."""

from __future__ import annotations

import csv
import io
import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from processes import kill_tree

from hpo_cls.train.checkpoint import load_checkpoint
from hpo_cls.train.out_dir import LOCK_FILE

FAST = {"fixed": {"backbone": "wrn16_4", "small_input": True, "batch_size": 4, "lr": 0.01, "amp": False}}


def hpo_cls(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo_cls.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit status 2, got {result.returncode}: {result.stderr}"
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


def metric_rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_out_that_cannot_be_a_folder_is_an_error_line(tiny_spec, tmp_path, where):
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "run"
    line = error_line(hpo_cls("train", tiny_spec(**FAST), "--out", out, cwd=tmp_path))
    assert str(out) in line and "--out" in line


def test_a_second_train_into_a_locked_out_is_refused(tiny_spec, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a first `hpo-cls train` holds while it runs
        line = error_line(hpo_cls("train", tiny_spec(**FAST), "--out", out, cwd=tmp_path))
    assert "another `hpo-cls train`" in line
    assert not (out / "checkpoint.pt").exists()


def test_an_existing_run_is_refused_then_resumed_exactly_or_forced(tiny_spec, tmp_path):
    spec = tiny_spec(**FAST, budget={"epochs": 2, "num_samples": 1, "max_concurrent": 1})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert hpo_cls("train", spec, "--out", whole, cwd=tmp_path).returncode == 0
    first = _train_until_first_checkpoint(spec, parts, tmp_path)

    before = (parts / "checkpoint.pt").read_bytes()
    line = error_line(hpo_cls("train", spec, "--out", parts, cwd=tmp_path))
    assert "--resume" in line and "--force" in line
    assert (parts / "checkpoint.pt").read_bytes() == before, "the refused run wrote nothing"

    resumed = hpo_cls("train", spec, "--out", parts, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from epoch {first}" in resumed.stdout
    assert [r["val_loss"] for r in metric_rows(parts)] == [r["val_loss"] for r in metric_rows(whole)]
    for key, value in load_checkpoint(whole / "checkpoint.pt")["model"].items():
        assert torch.equal(value, load_checkpoint(parts / "checkpoint.pt")["model"][key]), f"{key}: resumed exactly"

    line = error_line(hpo_cls("train", spec, "--set", "fixed.lr=0.02", "--out", parts, "--resume", cwd=tmp_path))
    assert "fixed.lr" in line or "lr" in line, "a resume under another configuration is refused"
    forced = hpo_cls("train", spec, "--set", "budget.epochs=1", "--out", parts, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert len(metric_rows(parts)) == 1, "--force started over"


def _train_until_first_checkpoint(spec: Path, out: Path, cwd: Path) -> int:
    """Start a 2-epoch train, kill it (by the Popen this test holds) once a checkpoint is written; returns the
    epochs that checkpoint holds (1, or 2 if the second epoch won the race)."""
    train = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "train", str(spec), "--out", str(out)], cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists():
            assert train.poll() is None and time.monotonic() < deadline, "the first epoch was checkpointed"
            time.sleep(0.2)
    finally:
        kill_tree(train)
    return load_checkpoint(out / "checkpoint.pt")["epoch"]


class _Killed(BaseException):
    """What a kill looks like to the code it interrupts: nothing after it runs."""


@pytest.mark.parametrize("killed_in", ["_write_metrics", "save_checkpoint"])
def test_a_run_killed_between_an_epochs_writes_resumes_with_every_epochs_row(tiny_spec, tmp_path, monkeypatch,
                                                                              killed_in):
    """Deterministic form of the race the subprocess test above can hit: the kill lands inside the second
    epoch's metrics write or its checkpoint write; the resumed run still reports both epochs, once each."""
    import hpo_cls.train.checkpoint as checkpoint_module
    import hpo_cls.train.standalone as standalone
    from hpo_cls.spec import load_spec

    spec = load_spec(tiny_spec(**FAST, budget={"epochs": 2, "num_samples": 1, "max_concurrent": 1}))
    out = tmp_path / "run"
    owner = standalone if killed_in == "_write_metrics" else checkpoint_module
    real, calls = getattr(owner, killed_in), []

    def killed_on_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, killed_in, killed_on_the_second_epoch)
    with pytest.raises(_Killed):
        standalone.train_fixed(spec, out, out=io.StringIO())
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(owner, killed_in, real)

    standalone.train_fixed(spec, out, out=io.StringIO(), resume=True)
    assert [int(row["epoch"]) for row in metric_rows(out)] == [1, 2]


def test_train_asks_for_the_gpu_whatever_the_sweep_resources_say(tiny_spec, tmp_path, monkeypatch):
    """`train` is one process with the machine to itself: a spec sized for CPU sweep trials (gpu: 0, as the
    quickstart) still trains on a visible GPU. Here no GPU is visible, so it runs on the CPU."""
    import hpo_cls.train.run as run_module
    import hpo_cls.train.standalone as standalone
    from hpo_cls.spec import load_spec

    real, shares = run_module.resolve_device, []
    monkeypatch.setattr(run_module, "resolve_device", lambda share=0.0: shares.append(share) or real(share))
    spec = load_spec(tiny_spec(**FAST, resources={"cpu": 1, "gpu": 0},
                               budget={"epochs": 1, "num_samples": 1, "max_concurrent": 1}))
    printed = io.StringIO()
    standalone.train_fixed(spec, tmp_path / "run", out=printed)
    assert shares == [1.0], "a whole GPU, taken when CUDA is visible"
    assert f"on {'cuda' if torch.cuda.is_available() else 'cpu'}" in printed.getvalue()


# issue 36, class 12: a resume under another input pipeline, or beside a metrics.csv it did not write, is refused
@pytest.fixture
def finished_run(tiny_spec, tmp_path):
    """A spec and a finished 1-epoch run of it (its --resume continues nothing, and says so with exit 0)."""
    spec = tiny_spec(**FAST)
    out = tmp_path / "run"
    assert hpo_cls("train", spec, "--out", out, cwd=tmp_path).returncode == 0
    return spec, out


INPUT_CHANGES = ["data.image_size=24", "data.balanced_sampling=true", "fixed.resize=full", "fixed.hflip=0.0",
                 "fixed.rotation=10", "fixed.crop_scale=[0.5,1.0]"]


def test_a_resume_with_another_input_pipeline_is_refused(finished_run, tmp_path):
    spec, out = finished_run
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.csv")}
    for change in INPUT_CHANGES:
        line = error_line(hpo_cls("train", spec, "--set", change, "--out", out, "--resume", cwd=tmp_path))
        assert f"{out / 'checkpoint.pt'}: trained with a different configuration ({change.split('=')[0]}" in line
    assert {name: (out / name).read_bytes() for name in before} == before
    resumed = hpo_cls("train", spec, "--out", out, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr  # the same pipeline still resumes


GARBAGE_METRICS = {
    "binary": bytes(range(256)),
    "nul-bytes": b"epoch,val_acc\n1,0.5\x00\n",
    "no-epoch-column": b"a,b\n1,2\n",
    "epoch-not-a-number": b"epoch,val_acc\none,0.5\n",
    "a-row-too-long": b"epoch,val_acc\n1,0.5,7\n",
    "a-row-too-short": b"epoch,val_acc\n1\n",
    "other-epochs": b"epoch,val_acc\n0,0.5\n1,0.5\n",
}


def test_a_garbage_metrics_csv_is_an_error_line_naming_it(finished_run, tmp_path):
    spec, out = finished_run
    checkpoint = (out / "checkpoint.pt").read_bytes()
    for name, garbage in GARBAGE_METRICS.items():
        (out / "metrics.csv").write_bytes(garbage)
        line = error_line(hpo_cls("train", spec, "--out", out, "--resume", cwd=tmp_path))
        assert line.startswith(f"error: {out / 'metrics.csv'}: not the metrics.csv of this run"), (name, line)
        assert "--force" in line
        assert (out / "metrics.csv").read_bytes() == garbage and (out / "checkpoint.pt").read_bytes() == checkpoint
