"""hpo_cls.models.cost and TrainingRun.cost_metrics: what every trial reports about its model's cost."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hpo_cls.models.classifier import build_model, count_parameters
from hpo_cls.models.cost import count_flops, inference_latency_ms
from hpo_cls.spec import COST_METRICS, DataConfig, TrialConfig
from hpo_cls.train.run import TrainingRun


def test_flops_match_the_published_resnet18_figure():
    # torchvision's ResNet-18 at 224 px: 1.81 G multiply-adds; the 10-class head changes it by 0.01 M.
    assert count_flops(TrialConfig(backbone="resnet18"), 10, 224) == pytest.approx(3.63, abs=0.01)


def test_flops_grow_with_the_backbone_and_the_image():
    small, large = TrialConfig(backbone="resnet18"), TrialConfig(backbone="resnet50")
    assert count_flops(small, 10, 64) < count_flops(large, 10, 64)
    assert count_flops(small, 10, 32) * 3.5 < count_flops(small, 10, 64)  # ~4x the pixels


def test_latency_is_a_positive_median_and_leaves_the_model_in_eval_mode():
    model = build_model(TrialConfig(backbone="resnet18", small_input=True), 3)
    latency = inference_latency_ms(model, 16, 4, runs=3, warmup=1)
    assert 0 < latency < 60_000 and not model.training


def test_a_run_reports_every_cost_metric_once(tiny_image_folder):
    cfg = TrialConfig(backbone="resnet18", small_input=True, batch_size=4, amp=False)
    run = TrainingRun(DataConfig(root=tiny_image_folder, image_size=16, workers=0), cfg, 1)
    run.run_epoch()
    costs = run.cost_metrics()
    assert set(costs) == set(COST_METRICS)
    assert costs["params_m"] == count_parameters(cfg, 3) / 1e6
    assert costs["flops_g"] == count_flops(cfg, 3, 16)
    assert all(math.isfinite(v) and v > 0 for v in costs.values())
    assert run.cost_metrics() == costs, "measured once per run"
    assert run.run_epoch()["epoch"] == 2, "training goes on after the measurement"


def test_trials_of_one_process_measure_an_architecture_once(tiny_image_folder, monkeypatch):
    """A reused worker runs trial after trial; those sharing a network share its latency figure, and a
    different network is measured anew."""
    from hpo_cls.models import cost

    measured = []

    def counting(model, image_size, batch_size, **kwargs):
        measured.append(batch_size)
        return inference_latency_ms(model, image_size, batch_size, **kwargs)

    monkeypatch.setattr(cost, "_latency_by_key", {})
    monkeypatch.setattr(cost, "inference_latency_ms", counting)
    data = DataConfig(root=tiny_image_folder, image_size=16, workers=0)
    base = TrialConfig(backbone="resnet18", small_input=True, batch_size=4, amp=False)
    first = TrainingRun(data, base, 1).cost_metrics()
    second = TrainingRun(data, dataclasses.replace(base, lr=0.2, dropout=0.3), 1).cost_metrics()
    assert sorted(measured) == [1, 64], "the second trial, same network, measured nothing"
    assert second == first
    TrainingRun(data, dataclasses.replace(base, attention="se"), 1).cost_metrics()
    assert sorted(measured) == [1, 1, 64, 64], "another network is measured"
