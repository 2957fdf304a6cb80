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


NVIDIA_SMI = """2026/12/04 10:00:00.000, 0, 90
2026/12/04 10:00:00.200, 1, 0
2026/12/04 10:00:00.400, 0, [N/A]
2026/12/04 10:00:01.000, 0, 70
2026/12/04 10:00:05.000, 0, 10
"""


def _unix(clock: str) -> float:
    from datetime import datetime

    return datetime.strptime(f"2026/12/04 {clock}", "%Y/%m/%d %H:%M:%S.%f").timestamp()


def test_nvidia_smi_samples_are_parsed_and_unfilled_ones_skipped(gpu_check):
    samples = gpu_check["parse_utilization"](NVIDIA_SMI + "garbage\n")
    assert [(s.gpu, s.busy) for s in samples] == [(0, 0.9), (1, 0.0), (0, 0.7), (0, 0.1)]
    assert samples[0].time == _unix("10:00:00.000") and samples[2].time - samples[0].time == pytest.approx(1.0)


def test_busy_fraction_counts_the_samples_inside_the_trials_on_the_cards_they_used(gpu_check):
    samples = gpu_check["parse_utilization"](NVIDIA_SMI)
    during = [(_unix("10:00:00.000"), _unix("10:00:02.000"))]  # the last sample (10%) is after the trials
    assert gpu_check["cards_used"](samples, during) == {0}
    assert gpu_check["busy_fraction"](samples, during, {0}) == pytest.approx(0.8)
    assert gpu_check["busy_fraction"](samples, during) == pytest.approx((0.9 + 0.0 + 0.7) / 3)  # every card
    assert gpu_check["busy_fraction"](samples, [(0.0, 1.0)]) is None  # no sample then: not a zero


def test_where_the_card_waits_from_what_the_trials_report(tmp_path, gpu_check):
    # Two trials one after the other with a 2-s gap: 4 epochs of 2.5 s each, 1 s of it in the train loop
    # and 0.5 s of that waiting for the loader; the first epoch's extra 1.5 s outside the loop is setup.
    for name, end in (("a", 110.0), ("b", 122.0)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"epoch": e, "pid": 1, "time_this_iter_s": 2.5, "time_total_s": 2.5 * e, "epoch_time_s": 1.0,
                 "data_wait_s": 0.5, "timestamp": end - (4 - e) * 2.5} for e in range(1, 5)]
        (folder / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    shares = gpu_check["wait_shares"](gpu_check["read_trials"](tmp_path))
    assert shares == pytest.approx({"input": 4 / 20, "setup": 3 / 20, "checkpointing": 9 / 20, "tune": 2 / 22})
    assert gpu_check["card_waits_on"](0.5, shares) == "checkpointing"
    assert gpu_check["card_waits_on"](0.9, shares) == "none"  # at the target: nothing to explain
    assert gpu_check["card_waits_on"](0.5, {"input": 0.01, "tune": 0.02}) == "python"
    assert gpu_check["card_waits_on"](None, shares) == "unknown"  # no nvidia-smi samples


def test_no_trial_share_merges_overlapping_trials(gpu_check):
    assert gpu_check["no_trial_share"]([(0, 10), (5, 12), (14, 20)]) == pytest.approx(2 / 20)
    assert gpu_check["no_trial_share"]([(0, 10), (2, 8)]) == 0.0


def test_gpu_and_cpu_predictions_agreement(gpu_check):
    cpu = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    gpu = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.49, 0.51], [0.25, 0.75]])  # the third image flips
    assert gpu_check["argmax_agreement"](gpu, cpu) == 0.75
    with pytest.raises(ValueError):
        gpu_check["argmax_agreement"](gpu, cpu[:3])


def test_the_same_sweep_with_a_whole_card_per_trial(gpu_check, tmp_path):
    from hpo_cls.spec import parse_spec

    spec = parse_spec(gpu_check["sweep_spec"](REPO / "data" / "cifar10-mini", tmp_path, 4, cpu=4, gpu=1), "gpu_check")
    assert (spec.resources.cpu, spec.resources.gpu) == (4, 1) and spec.budget.num_samples == 4


def test_the_reduced_cbam_placement_spec_is_valid_and_keeps_the_headline_study(gpu_check, tmp_path):
    from hpo_cls.spec import load_spec
    from hpo_cls.spec.baseline import sweep_problems

    root = tmp_path / "photos"
    for split in ("train", "val"):
        (root / split / "0").mkdir(parents=True)
    spec = load_spec(REPO / "sweeps" / "cbam_placement.yaml", gpu_check["cbam_overrides"](root, tmp_path))
    assert (spec.budget.num_samples, spec.budget.epochs, spec.fixed.pretrained) == (4, 2, False)
    assert spec.data.image_size == 224 and spec.resources.gpu == 0.5 and spec.fixed.backbone == "resnet50"
    assert spec.storage_path == tmp_path / "ray_results" and spec.data.root == root
    assert not sweep_problems(spec)  # what the CLI checks before a sweep starts (e.g. ASHA's grace period)
