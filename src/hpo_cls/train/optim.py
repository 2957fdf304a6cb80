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

__all__ = ["OPTIMIZERS", "LR_SCHEDULERS", "WarmupPlateau", "build_optimizer", "build_scheduler", "step_scheduler"]


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


# Each schedule builder gets the epochs left after ``warmup`` warm-up epochs; build_scheduler puts the
# warm-up in front. Milestones still count from the first epoch of training.


def _cosine(optimizer, cfg: TrialConfig, epochs: int, warmup: int):
    import torch

    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup), eta_min=cfg.min_lr)


def _multistep(optimizer, cfg: TrialConfig, epochs: int, warmup: int):
    import torch

    milestones = sorted({max(1, round(f * epochs) - warmup) for f in cfg.milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.gamma)


def _plateau(optimizer, cfg: TrialConfig, epochs: int, warmup: int):
    import torch

    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if cfg.plateau_metric == "val_acc" else "min", factor=cfg.gamma,
        patience=cfg.plateau_patience, min_lr=cfg.min_lr,
    )


def _none(optimizer, cfg: TrialConfig, epochs: int, warmup: int):
    return None


LR_SCHEDULERS: dict[str, Callable] = {
    "cosine": _cosine,
    "multistep": _multistep,
    "plateau": _plateau,
    "none": _none,
}

WARMUP_START_FACTOR = 0.1


class WarmupPlateau:
    """Linear warm-up for ``warmup`` epochs, then ReduceLROnPlateau (``SequentialLR`` cannot hold a
    scheduler that steps on a metric). ``step(metric)`` once per epoch, like ReduceLROnPlateau."""

    def __init__(self, optimizer, warmup: int, plateau):
        import torch

        self.plateau = plateau
        self.warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR,
                                                        total_iters=warmup)
        self.warmup_epochs, self.epoch = warmup, 0

    def step(self, metric: float) -> None:
        self.epoch += 1
        if self.epoch <= self.warmup_epochs:
            self.warmup.step()
        else:
            self.plateau.step(metric)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


def _with_warmup(optimizer, schedule, warmup: int):
    import torch

    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return WarmupPlateau(optimizer, warmup, schedule)
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup)
    if schedule is None:  # warm-up, then the constant lr
        return linear
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, schedule], milestones=[warmup])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrialConfig, epochs: int):
    """Per-epoch LR schedule, after ``cfg.warmup_epochs`` of linear warm-up from 0.1 x lr (any schedule);
    step it with :func:`step_scheduler` once per epoch."""
    warmup = min(cfg.warmup_epochs, epochs - 1)
    schedule = LR_SCHEDULERS[cfg.lr_scheduler](optimizer, cfg, epochs, warmup)
    return _with_warmup(optimizer, schedule, warmup) if warmup > 0 else schedule


def step_scheduler(scheduler, cfg: TrialConfig, *, val_loss: float, val_acc: float) -> None:
    """One epoch's step: plateau schedules step on ``cfg.plateau_metric``, the others on the epoch."""
    import torch

    if scheduler is None:
        return
    if isinstance(scheduler, (torch.optim.lr_scheduler.ReduceLROnPlateau, WarmupPlateau)):
        scheduler.step(val_loss if cfg.plateau_metric == "val_loss" else val_acc)
    else:
        scheduler.step()
