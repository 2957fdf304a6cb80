"""hpo_cls.train.engine: precision/device choices, optimizer groups, LR schedules, train and eval steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo_cls.errors import NonFiniteLossError
from hpo_cls.spec import TrialConfig
from hpo_cls.train.engine import (
    evaluate,
    per_class_report,
    resolve_device,
    resolve_precision,
    train_one_epoch,
    use_channels_last,
)
from hpo_cls.train.optim import build_optimizer, build_scheduler

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("device_type", "amp", "bf16", "dtype", "scaler"),
    [
        ("cpu", True, True, None, False),  # CPU autocast is slower than fp32 here
        ("cuda", True, True, torch.bfloat16, False),
        ("cuda", True, False, torch.float16, True),  # only fp16 needs loss scaling
        ("cuda", False, True, None, False),
    ],
)
def test_resolve_precision(device_type, amp, bf16, dtype, scaler):
    precision = resolve_precision(device_type, amp, bf16)
    assert (precision.autocast_dtype, precision.use_grad_scaler) == (dtype, scaler)


@pytest.mark.parametrize(
    ("device_type", "enabled", "expected"), [("cuda", True, True), ("cpu", True, False), ("cuda", False, False)]
)
def test_channels_last_only_on_cuda(device_type, enabled, expected):
    assert use_channels_last(device_type, enabled) is expected


def test_no_gpu_share_means_cpu():
    assert resolve_device(0.0) == CPU, "a trial given no GPU share never touches a GPU"


def _small_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizer_groups_exempt_norm_and_bias_and_skip_frozen(optimizer):
    model = _small_net()
    model[0].requires_grad_(False)  # a frozen stage
    opt = build_optimizer(model, TrialConfig(optimizer=optimizer, weight_decay=0.01))
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert groups[0.01] == {id(model[4].weight)}, "conv/linear weights decay"
    assert groups[0.0] == {id(model[1].weight), id(model[1].bias), id(model[4].bias)}, "norm and bias do not"
    assert not {id(p) for p in model[0].parameters()} & (groups[0.01] | groups[0.0]), "frozen params are not optimised"


def _lrs(cfg: TrialConfig, epochs: int, val_accs=None) -> list[float]:
    """LR used in each epoch, then the LR after the last step."""
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=cfg.lr)
    scheduler = build_scheduler(opt, cfg, epochs)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if val_accs:
            scheduler.step(val_accs[epoch])
        else:
            scheduler.step()
    return lrs + [opt.param_groups[0]["lr"]]


def test_cosine_with_warmup_starts_low_peaks_then_decays_to_zero():
    lrs = _lrs(TrialConfig(lr=0.1, lr_scheduler="cosine", warmup_epochs=2), epochs=6)
    assert lrs[0] == pytest.approx(0.01), "warm-up starts at a tenth of the LR"
    assert lrs[2] == pytest.approx(0.1), "full LR right after warm-up"
    assert lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[5] > 0, "cosine decays, last epoch still learns"
    assert lrs[6] == pytest.approx(0.0, abs=1e-9), "reaches 0 after the epoch budget"


def test_cosine_without_warmup_starts_at_full_lr():
    assert _lrs(TrialConfig(lr=0.1, lr_scheduler="cosine"), epochs=4)[0] == pytest.approx(0.1)


def test_multistep_milestones_are_fractions_of_the_epoch_budget():
    lrs = _lrs(TrialConfig(lr=0.1, lr_scheduler="multistep", milestones=(0.5, 0.75), gamma=0.1), epochs=8)
    assert lrs[:8] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2), "decay at 4/8 and 6/8 epochs"


@pytest.mark.parametrize(("val_accs", "last_lr"), [([0.5, 0.6, 0.7], 0.1), ([0.5, 0.5, 0.5], 0.01)])
def test_plateau_decays_only_when_val_acc_stops_improving(val_accs, last_lr):
    lrs = _lrs(TrialConfig(lr=0.1, lr_scheduler="plateau", plateau_patience=0, gamma=0.1), 3, val_accs)
    assert lrs[2] == pytest.approx(last_lr), "mode max: rising accuracy keeps the LR"


def _always_class_1() -> nn.Linear:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    return model


# class 1 is the argmax of the first two rows only; class 1 is never the smallest entry
SOFT = torch.tensor([[0.4, 0.6, 0.0], [0.3, 0.45, 0.25], [0.6, 0.4, 0.0], [0.0, 0.45, 0.55]])


@pytest.mark.parametrize("targets", [SOFT, SOFT.argmax(dim=1)], ids=["soft", "hard"])
def test_train_accuracy_is_against_argmax_of_soft_targets(targets):
    model = _always_class_1()
    images = torch.zeros(4, 2)
    metrics = train_one_epoch(model, [(images, targets)], torch.optim.SGD(model.parameters(), lr=0.0),
                              nn.CrossEntropyLoss(), CPU)
    assert metrics["train_acc"] == 0.5, "a prediction counts when it is the soft target's largest class"
    assert metrics["train_loss"] == pytest.approx(F.cross_entropy(model(images), targets).item())


def test_time_waiting_for_the_loader_is_reported():
    """``data_wait_s`` counts the time blocked on the loader (what starves a GPU), not the steps."""
    import time

    def slow_loader(batches: int, pause_s: float):
        for _ in range(batches):
            time.sleep(pause_s)  # a loader that has not got the next batch ready
            yield torch.randn(4, 4), torch.tensor([0, 1, 2, 0])

    model = _mlp()
    metrics = train_one_epoch(model, slow_loader(3, 0.05), torch.optim.SGD(model.parameters(), lr=0.01),
                              nn.CrossEntropyLoss(), CPU)
    assert 0.15 <= metrics["data_wait_s"] <= metrics["epoch_time_s"]  # each pause is waited out in full


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("lr", "images"),
    [(1e30, torch.randn(8, 4)), (0.1, torch.full((8, 4), float("nan")))],
    ids=["diverging-lr", "nan-input"],
)
def test_non_finite_loss_stops_training(lr, images):
    model = _mlp()
    targets = torch.randint(0, 3, (8,))
    with pytest.raises(NonFiniteLossError, match="training loss became nan"):
        train_one_epoch(model, [(images, targets)] * 5, torch.optim.SGD(model.parameters(), lr=lr),
                        nn.CrossEntropyLoss(), CPU)


def test_grad_scaler_clips_unscaled_gradients():
    images, targets = torch.randn(8, 4), torch.randint(0, 3, (8,))
    trained = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**16)):
        model = _mlp()
        train_one_epoch(model, [(images, targets)], torch.optim.SGD(model.parameters(), lr=0.5),
                        nn.CrossEntropyLoss(), CPU, scaler=scaler, grad_clip=0.1)
        trained.append(model.state_dict())
    for name in trained[0]:
        torch.testing.assert_close(trained[1][name], trained[0][name], msg=f"{name}: loss scaling changed the step")


def test_evaluate_confusion_accuracy_and_loss():
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))  # predicts 0, 1, 2 by quadrant
    x0, x1, x2 = [5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]
    images = torch.tensor([x0, x1, x2, x0, x2])
    targets = torch.tensor([0, 1, 2, 1, 1])  # last two are wrong: 1 predicted as 0, 1 predicted as 2
    loader = [(images[:3], targets[:3]), (images[3:], targets[3:])]  # uneven batches: weighted by size
    result = evaluate(model, loader, nn.CrossEntropyLoss(), CPU, 3, keep_probabilities=True)
    assert result.confusion.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 1]], "rows = true class, cols = predicted"
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.loss == pytest.approx(F.cross_entropy(model(images), targets).item()), "mean over images"
    torch.testing.assert_close(result.probabilities, model(images).softmax(dim=1).detach())


def test_per_class_report_from_confusion_matrix():
    confusion = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])  # class c: never seen nor predicted correctly
    report = per_class_report(confusion, ["a", "b", "c"])
    expected = [
        {"class": "a", "precision": 1.0, "recall": 0.75, "f1": 6 / 7, "support": 4},
        {"class": "b", "precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4},
        {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},  # no division by zero
    ]
    assert report == [pytest.approx(row) for row in expected]
