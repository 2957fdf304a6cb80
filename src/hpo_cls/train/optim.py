"""Optimizers and per-epoch LR schedules a spec can name: one table each, name -> builder.

Torch-free at import (the spec checker reads the names); each builder imports torch. Adding an
optimizer or a schedule is one entry in :data:`OPTIMIZERS` or :data:`LR_SCHEDULERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hpo_cls.spec import TrialConfig

__all__ = ["OPTIMIZERS", "LR_SCHEDULERS", "build_optimizer", "build_scheduler"]


def _sgd(groups: list[dict], cfg: TrialConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def _adam(groups: list[dict], cfg: TrialConfig) -> torch.optim.Optimizer:
    import torch

    # Adam's weight_decay is L2 in the gradient; kept for parity with the recipes that used it.
    return torch.optim.Adam(groups, lr=cfg.lr)


def _adamw(groups: list[dict], cfg: TrialConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(groups, lr=cfg.lr)


OPTIMIZERS: dict[str, Callable[[list[dict], TrialConfig], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def build_optimizer(model: nn.Module, cfg: TrialConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the trainable parameters; norm weights and biases get no weight decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return OPTIMIZERS[cfg.optimizer](groups, cfg)


def _cosine(optimizer, cfg: TrialConfig, epochs: int):
    import torch

    warmup = min(cfg.warmup_epochs, epochs - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup))
    if warmup == 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def _multistep(optimizer, cfg: TrialConfig, epochs: int):
    import torch

    milestones = sorted({max(1, round(f * epochs)) for f in cfg.milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.gamma)


def _plateau(optimizer, cfg: TrialConfig, epochs: int):
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.gamma, patience=cfg.plateau_patience
    )


def _none(optimizer, cfg: TrialConfig, epochs: int):
    return None


LR_SCHEDULERS: dict[str, Callable] = {
    "cosine": _cosine,
    "multistep": _multistep,
    "plateau": _plateau,
    "none": _none,
}


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrialConfig, epochs: int):
    """Per-epoch LR schedule (``step()`` once per epoch; ``plateau`` needs ``step(val_acc)``)."""
    return LR_SCHEDULERS[cfg.lr_scheduler](optimizer, cfg, epochs)
