"""Train augmentation on the training device, a whole batch at once (used on CUDA).

The per-image CPU path (:func:`hpo_cls.data.transforms.build_train_transform`) crops, resizes, flips and
normalises every image in the loader, then ships float32 batches. Here the loader only pads the cached
uint8 images of a batch to one size and draws each image's crop box and flip (with torch's RNG, in the
loader process, so seeding and exact resume work as before); the device then crops and resizes every
image in one ``roi_align`` call, flips and normalises. The CPU does a copy per image instead of a resize,
and a quarter of the bytes cross to the GPU. Same augmentations, same parameter distributions as
``RandomResizedCrop`` (large images) or pad-and-``RandomCrop`` (images of at most ``SMALL_IMAGE`` px)
followed by ``RandomHorizontalFlip`` and ``Normalize``. Two differences, both within a pixel: a resized crop
interpolates with the pixels just outside its box on its border (torchvision clamps to the box), and
shrinking averages each output pixel's footprint instead of torchvision's antialiasing filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import default_collate
from torchvision.ops import roi_align

from hpo_cls.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SMALL_IMAGE
from hpo_cls.spec import TrialConfig

__all__ = ["DeviceBatch", "CropCollate", "DeviceAugment", "device_augment_supported"]

_ATTEMPTS = 10  # RandomResizedCrop's tries before its central-crop fallback


def device_augment_supported(cfg: TrialConfig) -> bool:
    """Whether ``cfg``'s train augmentation is only the default random-resized crop + horizontal flip (+ the
    default normalisation), what the device path does."""
    default = type(cfg)()
    same = ("resize", "crop_scale", "hflip", "mean", "std")
    return (cfg.mix == "none" and cfg.rotation == 0 and cfg.color_jitter == 0 and not cfg.trivial_augment
            and cfg.random_erasing == 0 and cfg.vflip == 0 and cfg.hue == 0 and not cfg.augment_one_of
            and all(getattr(cfg, key) == getattr(default, key) for key in same))


@dataclass
class DeviceBatch:
    """What the loader hands the device: uint8 images padded to one size, and each image's box
    ``(x1, y1, x2, y2)`` in those padded pixels and horizontal flip."""

    images: torch.Tensor  # uint8 [B, 3, H, W]
    boxes: torch.Tensor  # float32 [B, 4]
    flips: torch.Tensor  # bool [B]

    def pin_memory(self) -> DeviceBatch:  # DataLoader(pin_memory=True) calls this on custom batch types
        return DeviceBatch(self.images.pin_memory(), self.boxes.pin_memory(), self.flips.pin_memory())

    def __len__(self) -> int:
        return self.images.shape[0]


class CropCollate:
    """``collate_fn`` of the device path: ``[(uint8 [3, h, w], target)] -> (DeviceBatch, targets)``."""

    def __init__(self, image_size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = image_size, scale, ratio
        self.padding = image_size // 8 if image_size <= SMALL_IMAGE else 0

    def __call__(self, batch):
        images, targets = zip(*batch)
        sizes = torch.tensor([image.shape[-2:] for image in images], dtype=torch.float64)
        p = self.padding
        height, width = int(sizes[:, 0].max()) + 2 * p, int(sizes[:, 1].max()) + 2 * p
        canvas = torch.zeros((len(images), 3, height, width), dtype=torch.uint8)
        for k, image in enumerate(images):
            canvas[k, :, p:p + image.shape[-2], p:p + image.shape[-1]] = image
        boxes = self.pad_crop_boxes(sizes) if p else self.resized_crop_boxes(sizes)
        flips = torch.rand(len(images)) < 0.5
        return DeviceBatch(canvas, boxes.float(), flips), default_collate(list(targets))

    def pad_crop_boxes(self, sizes: torch.Tensor) -> torch.Tensor:
        """``RandomCrop(size, padding)``: a size x size window anywhere in the zero-padded image."""
        span = sizes + 2 * self.padding - self.size + 1  # offsets possible per axis
        top, left = (torch.rand(2, len(sizes), dtype=torch.float64) * span.T).floor()
        return torch.stack([left, top, left + self.size, top + self.size], dim=1)

    def resized_crop_boxes(self, sizes: torch.Tensor) -> torch.Tensor:
        """``RandomResizedCrop.get_params`` for every image at once: up to 10 draws of area and aspect,
        the first that fits wins, else the central crop clamped to the ratio range."""
        n = len(sizes)
        height, width = sizes[:, :1], sizes[:, 1:]
        area = height * width * torch.empty(n, _ATTEMPTS, dtype=torch.float64).uniform_(*self.scale)
        log_ratio = torch.empty(n, _ATTEMPTS, dtype=torch.float64).uniform_(math.log(self.ratio[0]),
                                                                              math.log(self.ratio[1]))
        w = (area * log_ratio.exp()).sqrt().round()
        h = (area / log_ratio.exp()).sqrt().round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.float().argmax(dim=1, keepdim=True)
        w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
        height, width = height.squeeze(1), width.squeeze(1)
        found = fits.any(dim=1)
        fallback_w, fallback_h = self._central(height, width)
        w, h = torch.where(found, w, fallback_w), torch.where(found, h, fallback_h)
        jitter = torch.rand(2, n, dtype=torch.float64)
        top = torch.where(found, (jitter[0] * (height - h + 1)).floor(), ((height - h) / 2).floor())
        left = torch.where(found, (jitter[1] * (width - w + 1)).floor(), ((width - w) / 2).floor())
        return torch.stack([left, top, left + w, top + h], dim=1)

    def _central(self, height: torch.Tensor, width: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = min(self.ratio), max(self.ratio)
        in_ratio = width / height
        w = torch.where(in_ratio > high, (height * high).round(), width)
        h = torch.where(in_ratio < low, (width / low).round(), height)
        return w, h


class DeviceAugment:
    """``DeviceBatch -> float [B, 3, S, S]`` on ``device``: crop and resize (bilinear, averaging over
    each output pixel's footprint when shrinking), flip, scale to [0, 1] and normalise."""

    def __init__(self, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size = image_size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, batch: DeviceBatch, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        non_blocking = device.type == "cuda"
        images = batch.images.to(device, non_blocking=non_blocking).float()
        boxes = batch.boxes.to(device, non_blocking=non_blocking)
        index = torch.arange(len(boxes), device=device, dtype=boxes.dtype).unsqueeze(1)
        # aligned=True puts pixel k's centre at k + 0.5, so a box on whole pixels at scale 1 copies exactly.
        out = roi_align(images, torch.cat([index, boxes], dim=1), self.size, spatial_scale=1.0,
                        sampling_ratio=-1, aligned=True)
        flips = batch.flips.to(device, non_blocking=non_blocking).view(-1, 1, 1, 1)
        out = torch.where(flips, out.flip(-1), out)
        out = out.mul_(1.0 / 255).sub_(self.mean.to(device)).div_(self.std.to(device))
        return out.contiguous(memory_format=memory_format)
