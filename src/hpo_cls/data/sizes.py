"""The sizes images are resized to and cached at: plain arithmetic, torch-free, so a sweep's driver can tell
whether the node's decoded-image cache is already built without importing torch."""

from __future__ import annotations

from hpo_cls.spec import TrialConfig

__all__ = ["SMALL_IMAGE", "resize_size", "cache_size", "image_bytes"]

SMALL_IMAGE = 64  # at or below this size: CIFAR-style pad-crop and no centre-crop margin


def resize_size(image_size: int) -> int:
    """Short side the eval transform resizes to before centre-cropping (``resize: crop``)."""
    return image_size if image_size <= SMALL_IMAGE else int(image_size / 0.875)


def cache_size(cfg: TrialConfig, image_size: int) -> int | tuple[int, int]:
    """``v2.Resize``'s size argument of the eval transform's first step, which is also what the decoded-image
    cache stores: the short side (``crop``) or the whole frame at ``image_size`` squared (``full``)."""
    return (image_size, image_size) if cfg.resize == "full" else resize_size(image_size)


def image_bytes(resize_to: int | tuple[int, int]) -> int:
    """Bytes of one cached image (at least: a short side leaves the long side longer)."""
    height, width = resize_to if isinstance(resize_to, tuple) else (resize_to, resize_to)
    return 3 * height * width
