"""bench/gpu_check.py on a machine without a GPU: it says so and exits 0, and the parts that judge a GPU
run (trials sharing the card, memory left after a reused actor, the throughput loops) are tested on CPU."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> dict:
    return runpy.run_path(str(SCRIPT))


def write_trial(experiment: Path, name: str, pid: int, end: float, epoch_s: float, epochs: int, **metrics):
    """A Tune result.json of ``epochs`` rows, the last at unix time ``end``."""
    folder = experiment / name
    folder.mkdir(parents=True)
    rows = [{"epoch": e, "pid": pid, "time_total_s": e * epoch_s, "timestamp": end - (epochs - e) * epoch_s,
             **metrics} for e in range(1, epochs + 1)]
    (folder / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_without_cuda_it_says_so_and_exits_zero():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no CUDA device:") and "nothing to check" in result.stdout


def test_two_trials_sharing_the_card_are_found(tmp_path, gpu_check):
    # a and b ran side by side (10 s each); c started as they ended (3 s of overlap), d long after.
    write_trial(tmp_path, "a", 1, end=110, epoch_s=2.5, epochs=4)
    write_trial(tmp_path, "b", 2, end=111, epoch_s=2.5, epochs=4)
    write_trial(tmp_path, "c", 1, end=118, epoch_s=2.5, epochs=4)
    write_trial(tmp_path, "d", 1, end=140, epoch_s=2.5, epochs=4)
    records = gpu_check["read_trials"](tmp_path)
    assert [r.name for r in records] == ["a", "b", "c", "d"] and records[0].start == 100
    assert gpu_check["concurrent_pairs"](records) == 1
    assert gpu_check["concurrent_pairs"]([records[0], records[3]]) == 0


def test_trials_one_after_another_do_not_count_as_sharing(tmp_path, gpu_check):
    write_trial(tmp_path, "a", 1, end=110, epoch_s=2.5, epochs=4)
    write_trial(tmp_path, "b", 1, end=119, epoch_s=2.5, epochs=4)  # overlaps a by 1 s of 10
    assert gpu_check["concurrent_pairs"](gpu_check["read_trials"](tmp_path)) == 0


def test_memory_left_for_the_next_trial_on_a_reused_actor(tmp_path, gpu_check):
    write_trial(tmp_path, "a", 7, end=110, epoch_s=2, epochs=2, gpu_allocated_at_start_mb=0.0, gpu_peak_mb=900.0)
    write_trial(tmp_path, "b", 8, end=110, epoch_s=2, epochs=2, gpu_allocated_at_start_mb=0.0, gpu_peak_mb=900.0)
    write_trial(tmp_path, "c", 7, end=120, epoch_s=2, epochs=2, gpu_allocated_at_start_mb=12.0, gpu_peak_mb=910.0)
    write_trial(tmp_path, "d", 8, end=121, epoch_s=2, epochs=2, gpu_allocated_at_start_mb=450.0, gpu_peak_mb=1350.0)
    records = gpu_check["read_trials"](tmp_path)
    assert gpu_check["memory_after_reuse"](records) == (2, 450.0)  # c and d started on used actors
    assert gpu_check["released"](12.0, 910.0) and not gpu_check["released"](450.0, 1350.0)
    assert records[3].metric_max("gpu_peak_mb") == 1350.0


def test_summary_is_one_line_naming_failures(gpu_check):
    line = gpu_check["summary_line"]({"engine_vs_plain": 0.9912, "trials_completed": "4/4"}, ["promote"])
    assert line == "engine_vs_plain=0.991 trials_completed=4/4 failed=promote"
    assert gpu_check["summary_line"]({}, []) == "failed=none"


def test_throughput_loops_run_the_engine_and_the_plain_loop(gpu_check):
    engine, plain = gpu_check["training_images_per_s"](torch.device("cpu"), backbone="resnet18", image_size=32,
                                                       batch=4, steps=2, rounds=1)
    assert engine > 0 and plain > 0


def test_the_sweep_it_runs_shares_one_gpu_between_two_trials(gpu_check, tmp_path):
    from hpo_cls.spec import parse_spec

    spec = parse_spec(gpu_check["sweep_spec"](REPO / "data" / "cifar10-mini", tmp_path, 4), "gpu_check")
    assert spec.resources.gpu == 0.5 and spec.budget.max_concurrent == 2 and spec.budget.num_samples == 4
