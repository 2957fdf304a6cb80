"""What a model costs: parameters, forward FLOPs and inference latency (the ``COST_METRICS`` of a spec).

Parameters and FLOPs depend only on the config and the image size, so they are counted on the meta device
(no memory, no weights); latency is measured on the device the model sits on.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch
from torch import nn

from hpo_cls.spec import TrialConfig

__all__ = ["count_flops", "inference_latency_ms", "latency_once",
           "LATENCY_RUNS", "LATENCY_WARMUP"]

LATENCY_RUNS = {1: 10, 64: 3}  # batch size -> timed runs (the median is reported)
LATENCY_WARMUP = 1
_latency_by_key: dict[tuple, float] = {}  # this process's measurements; see latency_once


def latency_once(key: tuple, measure: Callable[[], float]) -> float:
    """``measure()`` the first time ``key`` is asked in this process, that same value afterwards.

    The trials a reused worker runs one after another mostly share their architecture (a sweep searches
    the learning rate far more often than the backbone); measuring it again cost each ~0.4 s of a CPU trial
    and gave the same figure up to noise. ``key`` must hold everything the latency depends on."""
    if key not in _latency_by_key:
        _latency_by_key[key] = measure()
    return _latency_by_key[key]


def count_flops(cfg: TrialConfig, num_classes: int, image_size: int) -> float:
    """Forward GFLOPs of one image (a multiply-add counts 2), counted by ``torch.utils.flop_counter`` on
    the meta device: convolutions and matrix products, which are nearly all of a ResNet's work."""
    from torch.utils.flop_counter import FlopCounterMode

    from hpo_cls.models.classifier import build_model

    with torch.device("meta"):
        model = build_model(dataclasses.replace(cfg, pretrained=False), num_classes).eval()
        image = torch.empty(1, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def inference_latency_ms(model: nn.Module, image_size: int, batch_size: int, *, runs: int, warmup: int = LATENCY_WARMUP,
                         channels_last: bool = False, autocast_dtype: torch.dtype | None = None) -> float:
    """Median wall time (ms) of ``runs`` eval-mode forward passes of a batch, on the model's device.

    The model is left in eval mode (training puts it back in train mode at the start of every epoch)."""
    device = next(model.parameters()).device
    model.eval()
    images = torch.rand(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    images = images.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    times = []
    for i in range(warmup + runs):
        _synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            model(images)
        _synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
