"""Train and eval transforms (torchvision.transforms.v2): PIL images or uint8 CHW tensors in,
normalised float CHW out. The eval transform is also what prediction and the registered model use."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from hpo_cls.spec import TrialConfig

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SMALL_IMAGE", "resize_size", "build_train_transform",
           "build_eval_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMALL_IMAGE = 64  # at or below this size: CIFAR-style pad-crop and no centre-crop margin


def resize_size(image_size: int) -> int:
    """Short side the eval transform resizes to before centre-cropping; also what the cache stores."""
    return image_size if image_size <= SMALL_IMAGE else int(image_size / 0.875)


def build_train_transform(cfg: TrialConfig, image_size: int) -> v2.Compose:
    """Random crop + flip (+ rotation, colour jitter, TrivialAugment, erasing) -> normalised float CHW.

    Accepts PIL images or uint8 CHW tensors (the cache); augmentation runs on uint8.
    """
    ops: list[Any] = [v2.ToImage()]
    if image_size <= SMALL_IMAGE:
        ops += [v2.Resize(image_size), v2.RandomCrop(image_size, padding=image_size // 8)]
    else:
        ops.append(v2.RandomResizedCrop(image_size))
    ops.append(v2.RandomHorizontalFlip())
    if cfg.rotation > 0:
        ops.append(v2.RandomRotation(cfg.rotation))
    if cfg.color_jitter > 0:
        ops.append(v2.ColorJitter(cfg.color_jitter, cfg.color_jitter, cfg.color_jitter))
    if cfg.trivial_augment:
        ops.append(v2.TrivialAugmentWide())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if cfg.random_erasing > 0:
        ops.append(v2.RandomErasing(p=cfg.random_erasing))
    ops.append(v2.ToPureTensor())
    return v2.Compose(ops)


def build_eval_transform(image_size: int) -> v2.Compose:
    """Resize the short side to :func:`resize_size`, centre-crop, normalise -> float [3, S, S].

    Small images get no crop margin; the crop still squares non-square images so batches stack.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resize_size(image_size)),
        v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ])
