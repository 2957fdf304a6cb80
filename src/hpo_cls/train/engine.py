"""Training and evaluation steps: pure torch, no Ray or MLflow.

``train_one_epoch`` and ``evaluate`` follow torchvision's classification reference; the helpers that
pick precision, memory format, optimizer groups and LR schedule are small pure functions so their logic
is unit-tested on CPU even where it only matters on a GPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hpo_cls.errors import NonFiniteLossError

__all__ = [
    "NonFiniteLossError",
    "Precision",
    "EvalResult",
    "resolve_device",
    "gpu_memory_mb",
    "resolve_precision",
    "use_channels_last",
    "build_ema",
    "train_one_epoch",
    "evaluate",
    "per_class_report",
]


@dataclass(frozen=True)
class Precision:
    autocast_dtype: torch.dtype | None  # None: full fp32
    use_grad_scaler: bool  # only fp16 needs loss scaling


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # [num_classes, num_classes], rows = true class, cols = predicted
    probabilities: torch.Tensor | None = None


def resolve_device(gpu_share: float = 0.0) -> torch.device:
    """CUDA when this process was given (a share of) a GPU and one is visible, else CPU."""
    if gpu_share > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def gpu_memory_mb(device: torch.device) -> tuple[float, float]:
    """(allocated now, peak allocated since the last reset) on a CUDA device, in MiB; zeros elsewhere."""
    if device.type != "cuda":
        return 0.0, 0.0
    return torch.cuda.memory_allocated(device) / 2**20, torch.cuda.max_memory_allocated(device) / 2**20


def resolve_precision(device_type: str, amp: bool, bf16_supported: bool) -> Precision:
    """bf16 autocast on GPUs that support it (no scaler); fp16 + GradScaler on older GPUs; fp32 on CPU.

    CPU autocast is skipped on purpose: on the CPUs this runs on it is slower than fp32.
    """
    if device_type != "cuda" or not amp:
        return Precision(None, False)
    if bf16_supported:
        return Precision(torch.bfloat16, False)
    return Precision(torch.float16, True)


def use_channels_last(device_type: str, enabled: bool) -> bool:
    """channels_last pays off with cuDNN's NHWC kernels; on CPU it mostly adds conversions."""
    return enabled and device_type == "cuda"


def build_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, grad_clip: float) -> None:
    """Backward and step; with fp16's GradScaler the gradients are unscaled before clipping."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


# Kept as one function, like torchvision's reference train_one_epoch: the step reads top to bottom.
def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device,
    *,
    precision: Precision = Precision(None, False),
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    grad_clip: float = 0.0,
    ema: AveragedModel | None = None,
    batch_transform: Callable | None = None,
) -> dict[str, float]:
    """One pass over ``loader``. Targets may be class ids [B] or soft targets [B, C] (Mixup/CutMix);
    train accuracy is measured against the argmax of soft targets. ``batch_transform(batch, device,
    memory_format)``, if given, moves each batch of images to the device and augments it there.
    ``data_wait_s`` is the time the loop waited for the loader's next batch (steps run asynchronously on a
    GPU, so it is time the card may sit idle for want of input)."""
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = step = 0
    check_every = 1 if device.type == "cpu" else 25
    non_blocking = device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    data_wait, ready = 0.0, start  # time blocked on the loader: where a GPU waits for its input
    for images, targets in loader:
        data_wait += time.perf_counter() - ready
        if batch_transform is not None:
            images = batch_transform(images, device, memory_format)
        else:
            images = images.to(device, non_blocking=non_blocking, memory_format=memory_format)
        targets = targets.to(device, non_blocking=non_blocking)
        with torch.autocast(device.type, dtype=precision.autocast_dtype, enabled=precision.autocast_dtype is not None):
            logits = model(images)
            loss = criterion(logits, targets)
        # Reading a GPU value waits for the GPU; there, check every few steps (NaN persists in the sum).
        if step % check_every == 0 and not torch.isfinite(loss_sum + loss.detach()):
            raise NonFiniteLossError(f"training loss became {loss.item()} after {seen} images")
        step += 1
        _optimizer_step(model, loss, optimizer, scaler, grad_clip)
        if ema is not None:
            ema.update_parameters(model)
        batch = images.shape[0]
        hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
        loss_sum += loss.detach() * batch
        correct += (logits.argmax(dim=1) == hard_targets).sum()
        seen += batch
        ready = time.perf_counter()
    if not torch.isfinite(loss_sum):
        raise NonFiniteLossError(f"training loss became {loss_sum.item()} during the epoch")
    seconds = time.perf_counter() - start
    return {
        "train_loss": (loss_sum / max(seen, 1)).item(),
        "train_acc": correct.item() / max(seen, 1),
        "epoch_time_s": seconds,
        "images_per_s": seen / seconds if seconds > 0 else 0.0,
        "data_wait_s": data_wait,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    criterion: nn.Module,
    device: torch.device,
    num_classes: int,
    *,
    precision: Precision = Precision(None, False),
    channels_last: bool = False,
    keep_probabilities: bool = False,
) -> EvalResult:
    """Loss, accuracy and confusion matrix over ``loader`` (class-id targets)."""
    model.eval()
    loss_sum, seen = 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    probabilities = []
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, targets in loader:
        images = images.to(device, non_blocking=device.type == "cuda", memory_format=memory_format)
        targets = targets.to(device)
        with torch.autocast(device.type, dtype=precision.autocast_dtype, enabled=precision.autocast_dtype is not None):
            logits = model(images)
        logits = logits.float()
        loss_sum += criterion(logits, targets).item() * images.shape[0]
        seen += images.shape[0]
        predicted = logits.argmax(dim=1)
        confusion += torch.bincount(
            (targets * num_classes + predicted).cpu(), minlength=num_classes * num_classes
        ).view(num_classes, num_classes)
        if keep_probabilities:
            probabilities.append(logits.softmax(dim=1).cpu())
    accuracy = confusion.diag().sum().item() / max(seen, 1)
    return EvalResult(
        loss=loss_sum / max(seen, 1) if seen else math.nan,
        accuracy=accuracy,
        confusion=confusion,
        probabilities=torch.cat(probabilities) if probabilities else None,
    )


def per_class_report(confusion: torch.Tensor, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = true class)."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    predicted = confusion.sum(dim=0)
    support = confusion.sum(dim=1)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.zeros_like(predicted))
    recall = torch.where(support > 0, true_positive / support.clamp(min=1), torch.zeros_like(support))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return [
        {
            "class": name,
            "precision": precision[i].item(),
            "recall": recall[i].item(),
            "f1": f1[i].item(),
            "support": int(support[i].item()),
        }
        for i, name in enumerate(class_names)
    ]
