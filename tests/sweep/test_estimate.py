"""hpo_cls.sweep.estimate: the cost estimate before launch (ASHA's expected epochs, wall time, GPU memory
against a trial's share of the card) and `hpo-cls validate --estimate`, with real measurements on CPU."""

from __future__ import annotations

import json
import math
import re

import pytest
from ray.tune.schedulers.async_hyperband import _Bracket

from hpo_cls.cli import main
from hpo_cls.spec import BudgetConfig, ResourcesConfig, SchedulerConfig, SweepSpec
from hpo_cls.sweep.estimate import (
    asha_rungs,
    estimate_sweep,
    memory_problem,
    simulate_schedule,
    slots,
)
from hpo_cls.train.profile import StepProfile

GIB = 2**30


@pytest.mark.parametrize(("epochs", "grace", "rf"), [(4, 1, 3), (9, 1, 3), (10, 1, 2.5), (100, 2, 4), (1, 1, 3)])
def test_rungs_are_rays_own_milestones(epochs, grace, rf):
    bracket = _Bracket(min_t=grace, max_t=epochs, reduction_factor=rf, s=0)
    assert asha_rungs(epochs, grace, rf) == sorted(milestone for milestone, _ in bracket._rungs)


def test_fifo_trains_every_epoch_and_waits_for_the_last_wave():
    assert simulate_schedule(6, 4, 2, [], 3) == (24.0, 12.0)
    assert simulate_schedule(5, 4, 2, [], 3) == (20.0, 12.0)  # the fifth trial runs alone


def test_asha_trains_fewer_epochs_than_fifo_but_every_trial_reaches_the_first_rung():
    trial_epochs, wall = simulate_schedule(16, 6, 2, asha_rungs(6, 1, 3), 3)
    assert 16 <= trial_epochs < 16 * 6 and wall < 16 * 6 / 2
    assert simulate_schedule(16, 6, 2, asha_rungs(6, 1, 3), 3) == (trial_epochs, wall), "deterministic"
    # Synchronous halving is the floor: 16 x (1 + 2/3 + 3/9) epochs; ASHA's early arrivals pass unopposed.
    assert trial_epochs > 16 * (1 + 2 / 3 + 3 / 9)


def test_gpu_memory_is_checked_against_the_trials_share():
    assert memory_problem("resnet50", 50 * GIB, 80 * GIB, 0.5) == (
        "resources.gpu: 0.5 of a 80.0 GiB GPU is 40.0 GiB, but resnet50 peaked at 50.0 GiB; "
        "raise resources.gpu or lower fixed.batch_size")
    assert memory_problem("resnet50", 30 * GIB, 80 * GIB, 0.5) is None
    assert memory_problem("resnet50", 90 * GIB, 80 * GIB, 2) is not None  # more than one card does not help
    assert memory_problem("resnet18", None, None, 0) is None  # CPU: no GPU memory


def test_estimate_adds_epochs_overheads_and_bills_gpu_share():
    spec = SweepSpec(name="e", budget=BudgetConfig(epochs=4, num_samples=4, max_concurrent=2),
                     scheduler=SchedulerConfig(type="fifo"), resources=ResourcesConfig(cpu=2, gpu=0.5))
    profiles = {"a": StepProfile("cuda", "H", 100.0, 400.0, 10 * GIB, 80 * GIB),
                "b": StepProfile("cuda", "H", 50.0, 200.0, 50 * GIB, 80 * GIB)}
    estimate = estimate_sweep(spec, profiles, train_images=1000, val_images=400, slots=2)
    assert estimate.epoch_s == {"a": 11.0, "b": 22.0}
    assert estimate.trial_epochs == 16 and estimate.wall_s == pytest.approx(5 + 8 * 16.5 + 2 * 3)
    assert estimate.gpu_hours == pytest.approx((16 * 16.5 + 4 * 3) / 3600 * 0.5)
    assert len(estimate.problems) == 1 and "b peaked at 50.0 GiB" in estimate.problems[0]


def test_slots_are_bounded_by_the_cluster():
    spec = SweepSpec(name="e", budget=BudgetConfig(num_samples=8, max_concurrent=4), resources=ResourcesConfig(cpu=2))
    assert slots(spec, cpus=4, gpus=0) == 2 and slots(spec, cpus=64, gpus=0) == 4


def estimate_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("estimate")]


def test_validate_estimate_measures_each_backbone_here(tiny_spec, tmp_path, capsys):
    spec = tiny_spec(search={"space": {"backbone": {"choice": ["resnet18", "resnet34"]}}})
    profile = tmp_path / "profile.json"
    assert main(["validate", str(spec), "--estimate", "--no-scan", "--device-profile", str(profile)]) == 0
    lines = estimate_lines(capsys.readouterr().out)
    for backbone, line in zip(("resnet18", "resnet34"), lines):
        rate = float(re.search(rf"estimate {backbone}\s+([\d.]+) images/s train", line).group(1))
        assert rate > 0 and math.isfinite(rate)
    assert re.match(r"estimate sweep: [\d.]+ trial-epochs .* wall \d+m\d\ds", lines[2]), lines
    stored = json.loads(profile.read_text())["profiles"]
    assert sorted(stored) == ["resnet18 16px batch 4 amp False cpu x1", "resnet34 16px batch 4 amp False cpu x1"]


def test_a_device_profile_from_a_gpu_node_is_read_and_its_memory_checked(tiny_spec, tmp_path, capsys):
    """A GPU spec on this CPU machine: the measurement comes from the file, and a trial too big for its share
    of the card is an error before anything starts."""
    spec = tiny_spec(resources={"cpu": 1, "gpu": 0.25})
    assert main(["validate", str(spec), "--estimate", "--no-scan"]) == 0
    assert "estimate: no GPU on this machine to measure resnet18 on" in capsys.readouterr().out
    profile = tmp_path / "gpu.json"
    measured = StepProfile("cuda", "NVIDIA H200", 5000.0, 15000.0, 40 * GIB, 140 * GIB).to_dict()
    profile.write_text(json.dumps({"version": 1, "profiles": {"resnet18 16px batch 4 amp False cuda": measured}}))
    assert main(["validate", str(spec), "--estimate", "--no-scan", "--device-profile", str(profile)]) == 2
    captured = capsys.readouterr()
    assert "5000.0 images/s train" in captured.out and "peak GPU memory 40.00 of 140.0 GiB" in captured.out
    assert "error: " in captured.err and "resources.gpu: 0.25 of a 140.0 GiB GPU is 35.0 GiB" in captured.err


def test_a_configuration_measured_on_this_machine_is_not_measured_again(tiny_spec, tmp_path, monkeypatch, capsys):
    """The next sweep (or `validate --estimate`) of the same configuration starts without measuring; a change
    to the trial configuration, or a damaged cache, is measured anew."""
    import hpo_cls.train.profile as profile_module

    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(tmp_path / "cache"))
    measured = []
    real = profile_module.profile_training
    monkeypatch.setattr(profile_module, "profile_training",
                        lambda cfg, *a, **kw: measured.append(cfg.dropout) or real(cfg, *a, **kw))
    spec = tiny_spec()
    validate = ["validate", str(spec), "--estimate", "--no-scan"]
    assert main(validate) == 0 and measured == [0.0]
    first = estimate_lines(capsys.readouterr().out)
    assert main(validate) == 0 and measured == [0.0]
    assert estimate_lines(capsys.readouterr().out) == first
    assert main([*validate, "--set", "fixed.dropout=0.3"]) == 0 and measured == [0.0, 0.3]
    for cache in (tmp_path / "cache" / "device-profiles").glob("*.json"):
        cache.write_text("{not json")
    assert main(validate) == 0 and measured == [0.0, 0.3, 0.0]
