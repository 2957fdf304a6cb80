"""LR schedules the recipes need, on a real optimizer: ReduceLROnPlateau on val_loss with its min_lr, and
linear warm-up in front of every schedule (it used to be applied to cosine only)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hpo_cls.spec import TrialConfig
from hpo_cls.train.optim import WarmupPlateau, build_scheduler, step_scheduler

# The schedules are stepped without training steps in between: torch's order warning does not apply.
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of")


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(cfg: TrialConfig, epochs: int, metrics=None) -> list[float]:
    """The lr of each epoch, stepping once per epoch with (val_loss, val_acc) from ``metrics``."""
    optimizer = _optimizer()
    scheduler = build_scheduler(optimizer, cfg, epochs)
    metrics = metrics or [(1.0, 0.5)] * epochs
    lrs = []
    for loss, acc in metrics[:epochs]:
        lrs.append(optimizer.param_groups[0]["lr"])
        step_scheduler(scheduler, cfg, val_loss=loss, val_acc=acc)
    return lrs


PLATEAU = TrialConfig(lr_scheduler="plateau", gamma=0.1, plateau_patience=0)
# Loss gets worse while accuracy gets better: the two metrics disagree on whether training improves.
DIVERGING = [(1.0, 0.1), (2.0, 0.2), (3.0, 0.3), (4.0, 0.4)]


def test_plateau_on_val_loss_steps_on_the_loss():
    lrs = _lrs(dataclasses.replace(PLATEAU, plateau_metric="val_loss"), 4, DIVERGING)
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_plateau_on_val_acc_keeps_the_old_behaviour():
    assert _lrs(PLATEAU, 4, DIVERGING) == pytest.approx([1.0] * 4)
    assert PLATEAU.plateau_metric == "val_acc"


def test_plateau_never_goes_below_min_lr():
    cfg = dataclasses.replace(PLATEAU, plateau_metric="val_loss", min_lr=0.05)
    assert _lrs(cfg, 6, [(1.0, 0.0)] * 6)[-1] == pytest.approx(0.05)


def test_cosine_ends_at_min_lr():
    cfg = TrialConfig(lr_scheduler="cosine", min_lr=0.01)
    optimizer = _optimizer()
    scheduler = build_scheduler(optimizer, cfg, 5)
    for _ in range(5):
        step_scheduler(scheduler, cfg, val_loss=1.0, val_acc=0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_warmup_then_multistep_keeps_milestones_at_their_epochs():
    cfg = TrialConfig(lr_scheduler="multistep", milestones=(0.5,), gamma=0.1, warmup_epochs=2)
    # warm-up 0.1 -> 1.0 over two epochs; the drop stays at epoch round(0.5 * 6) = 3
    assert _lrs(cfg, 6) == pytest.approx([0.1, 0.55, 1.0, 0.1, 0.1, 0.1])
    assert _lrs(dataclasses.replace(cfg, warmup_epochs=0), 6) == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1])


def test_warmup_then_plateau():
    cfg = dataclasses.replace(PLATEAU, plateau_metric="val_loss", warmup_epochs=2)
    metrics = [(9.0, 0.0), (9.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0)]
    # flat loss during warm-up does not count against the plateau; afterwards it reacts to the loss
    assert _lrs(cfg, 5, metrics) == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.1])


def test_warmup_then_constant():
    assert _lrs(TrialConfig(lr_scheduler="none", warmup_epochs=2), 4) == pytest.approx([0.1, 0.55, 1.0, 1.0])


def test_warmup_plateau_state_round_trips():
    cfg = dataclasses.replace(PLATEAU, plateau_metric="val_loss", warmup_epochs=1)
    optimizer = _optimizer()
    scheduler = build_scheduler(optimizer, cfg, 6)
    assert isinstance(scheduler, WarmupPlateau)
    for loss in (5.0, 1.0, 2.0):
        step_scheduler(scheduler, cfg, val_loss=loss, val_acc=0.0)
    state, lr = scheduler.state_dict(), optimizer.param_groups[0]["lr"]

    restored_optimizer = _optimizer()
    restored = build_scheduler(restored_optimizer, cfg, 6)
    restored_optimizer.param_groups[0]["lr"] = lr  # as TrainingRun restores the optimizer's state
    restored.load_state_dict(state)
    for s, o in ((scheduler, optimizer), (restored, restored_optimizer)):
        step_scheduler(s, cfg, val_loss=3.0, val_acc=0.0)
    assert restored_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
