"""Train and eval transforms (torchvision.transforms.v2): PIL images or uint8 CHW tensors in,
normalised float CHW out. The eval transform is also what prediction and the registered model use, built
from the config a model bundle carries (``resize``, ``mean``, ``std``)."""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2

from hpo_cls.data.sizes import SMALL_IMAGE, cache_size, resize_size
from hpo_cls.spec import IMAGENET_MEAN, IMAGENET_STD, TrialConfig

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SMALL_IMAGE", "PREPROCESSING_FIELDS", "resize_size", "cache_size",
           "build_train_transform", "build_eval_transform"]

# The TrialConfig keys the eval transform depends on: ensemble members must agree on them.
PREPROCESSING_FIELDS = ("resize", "mean", "std")


def _augmentations(cfg: TrialConfig) -> list[Any]:
    """Flips, rotation and colour jitter that ``cfg`` enables; with ``augment_one_of`` exactly one of them
    per image (torchvision's RandomChoice, uniform), else each in turn."""
    ops: list[Any] = []
    if cfg.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.vflip > 0:
        ops.append(v2.RandomVerticalFlip(cfg.vflip))
    if cfg.rotation > 0:
        ops.append(v2.RandomRotation(cfg.rotation))
    if cfg.color_jitter > 0 or cfg.hue > 0:
        ops.append(v2.ColorJitter(cfg.color_jitter, cfg.color_jitter, cfg.color_jitter, cfg.hue))
    if cfg.augment_one_of and len(ops) > 1:
        return [v2.RandomChoice(ops)]
    return ops


def build_train_transform(cfg: TrialConfig, image_size: int) -> v2.Compose:
    """Crop or full-frame resize, then flips / rotation / colour jitter (one of them with
    ``augment_one_of``), TrivialAugment, normalisation and erasing -> normalised float CHW.

    Accepts PIL images or uint8 CHW tensors (the cache); augmentation runs on uint8.
    """
    ops: list[Any] = [v2.ToImage()]
    if cfg.resize == "full":
        ops.append(v2.Resize((image_size, image_size)))
    elif image_size <= SMALL_IMAGE:
        ops += [v2.Resize(image_size), v2.RandomCrop(image_size, padding=image_size // 8)]
    else:
        ops.append(v2.RandomResizedCrop(image_size, scale=(min(cfg.crop_scale), max(cfg.crop_scale))))
    ops += _augmentations(cfg)
    if cfg.trivial_augment:
        ops.append(v2.TrivialAugmentWide())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    if cfg.random_erasing > 0:
        ops.append(v2.RandomErasing(p=cfg.random_erasing))
    ops.append(v2.ToPureTensor())
    return v2.Compose(ops)


def build_eval_transform(image_size: int, cfg: TrialConfig | None = None) -> v2.Compose:
    """``cfg``'s eval preprocessing -> float [3, S, S]; ``cfg`` None: the defaults (a bundle from before
    these keys existed: centre crop, ImageNet statistics).

    ``crop``: resize the short side to :func:`resize_size`, centre-crop (small images get no crop margin;
    the crop still squares non-square images so batches stack). ``full``: the whole frame resized to S x S.
    """
    cfg = cfg or TrialConfig()
    size = cache_size(cfg, image_size)
    geometry = [v2.Resize(size)] if cfg.resize == "full" else [v2.Resize(size), v2.CenterCrop(image_size)]
    return v2.Compose([
        v2.ToImage(),
        *geometry,
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(cfg.mean, cfg.std),
        v2.ToPureTensor(),
    ])
