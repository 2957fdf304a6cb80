"""How fast one configuration trains on this machine's device: a few real training and evaluation steps
(the engine's own ``train_one_epoch`` and ``evaluate``) on synthetic images, for the sweep's cost
estimate (:mod:`hpo_cls.sweep.estimate`). Pure torch."""

from __future__ import annotations

import time

import torch
from torch import nn

from hpo_cls.models.classifier import build_model
from hpo_cls.spec import TrialConfig
from hpo_cls.train.engine import (
    evaluate,
    resolve_device,
    resolve_precision,
    train_one_epoch,
    use_channels_last,
)
from hpo_cls.train.optim import build_optimizer
from hpo_cls.train.step_profile import StepProfile

__all__ = ["StepProfile", "profile_training"]


def profile_training(cfg: TrialConfig, num_classes: int, image_size: int, *, gpu_share: float, threads: int,
                     steps: int = 3, warmup: int = 1) -> StepProfile:
    """Train ``warmup`` then ``steps`` batches of ``cfg.batch_size`` and evaluate as many batches of twice
    that (as the loaders do), on the device a trial with ``gpu_share`` gets; CPU work uses ``threads``
    threads, as a Ray trial with that many CPUs does. ``compile`` is left out (its one-off cost is not a step)."""
    device = resolve_device(gpu_share)
    precision = resolve_precision(device.type, cfg.amp, device.type == "cuda" and torch.cuda.is_bf16_supported())
    channels_last = use_channels_last(device.type, cfg.channels_last)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats(device)
        model = build_model(cfg, num_classes).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg)
        generator = torch.Generator().manual_seed(0)
        train_batch = (torch.rand(cfg.batch_size, 3, image_size, image_size, generator=generator),
                       torch.randint(0, num_classes, (cfg.batch_size,), generator=generator))
        options = dict(precision=precision, channels_last=channels_last)
        train_one_epoch(model, [train_batch] * warmup, optimizer, nn.CrossEntropyLoss(), device, **options)
        trained = train_one_epoch(model, [train_batch] * steps, optimizer, nn.CrossEntropyLoss(), device, **options)
        eval_batch = tuple(torch.cat([t, t]) for t in train_batch)
        evaluate(model, [eval_batch] * warmup, nn.CrossEntropyLoss(), device, num_classes, **options)
        start = time.perf_counter()
        evaluate(model, [eval_batch] * steps, nn.CrossEntropyLoss(), device, num_classes, **options)
        eval_rate = steps * len(eval_batch[0]) / (time.perf_counter() - start)
        if device.type != "cuda":
            return StepProfile("cpu", "cpu", trained["images_per_s"], eval_rate)
        properties = torch.cuda.get_device_properties(device)
        return StepProfile("cuda", properties.name, trained["images_per_s"], eval_rate,
                           torch.cuda.max_memory_reserved(device), properties.total_memory)
    finally:
        torch.set_num_threads(previous_threads)
