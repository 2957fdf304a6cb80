"""Datasets, the decoded-image cache, class-balanced sampling, Mixup/CutMix collate and the
DataLoaders of one trial (pure torch)."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler, default_collate
from torchvision.transforms import v2

from hpo_cls.data.device_augment import CropCollate, DeviceAugment, device_augment_supported
from hpo_cls.data.folders import (
    class_mapping,
    to_rgb,
    default_threads,
    list_images,
    image_name,
    list_test_images,
    shown_name,
)
from hpo_cls.data.shared_cache import image_cache_dir, open_shared_cache
from hpo_cls.data.sizes import cache_size, image_bytes
from hpo_cls.data.transforms import build_eval_transform, build_train_transform
from hpo_cls.console import warn
from hpo_cls.errors import DataError
from hpo_cls.spec import DataConfig, TrialConfig

__all__ = ["ImageDataset", "decode_resized", "build_cache", "ChainedImages", "load_cache", "balanced_sampler",
           "MixCollate", "build_mix_collate", "Loaders", "build_loaders", "open_node_cache", "build_test_loader"]

Cache = torch.Tensor | Sequence[torch.Tensor]


def _load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{shown_name(path)}: cannot decode image ({exc}); run `hpo-cls validate` on the data") from None


class ImageDataset(Dataset):
    """``samples[i] = (path, target)`` -> ``(transform(image), target)``.

    With ``cache`` (from :func:`load_cache`, same order as ``samples``) images come from memory or the
    node's memory-mapped cache as uint8 CHW tensors instead of being decoded again every epoch.
    """

    def __init__(self, samples: Sequence[tuple[Path, Any]], transform: Callable | None = None,
                 cache: Cache | None = None):
        if cache is not None and len(cache) != len(samples):
            raise ValueError(f"cache holds {len(cache)} images for {len(samples)} samples")
        self.samples, self.transform, self.cache = list(samples), transform, cache

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        image = self.cache[index] if self.cache is not None else _load_rgb(path)
        return (self.transform(image) if self.transform else image), target


def decode_resized(path: Path, resize: Callable) -> torch.Tensor:
    """One image file as uint8 CHW, resized by ``resize`` (the eval transform's first step)."""
    return resize(v2.functional.to_image(_load_rgb(path))).as_subclass(torch.Tensor).contiguous()


def build_cache(samples: Sequence[tuple[Path, Any]], resize_to: int | tuple[int, int],
                workers: int | None = None) -> Cache:
    """Decode every image once into this process's memory, resized with ``v2.Resize(resize_to)`` (an int:
    the short side; a pair: the whole frame), as uint8 CHW (thread pool).

    Returns one ``[N, 3, H, W]`` tensor when all images end up the same size, else a list of
    ``[3, H, W]`` tensors. Memory is about ``N * 3 * H * W`` bytes. The resize is the eval transform's
    own first step (:func:`~hpo_cls.data.transforms.cache_size`), so eval outputs from the cache equal
    those from the files.
    """
    decode = functools.partial(decode_resized, resize=v2.Resize(resize_to))
    with ThreadPoolExecutor(workers or default_threads()) as pool:
        images = list(pool.map(decode, [p for p, _ in samples]))
    if not images or any(im.shape != images[0].shape for im in images):
        return images
    stacked = torch.empty((len(images), *images[0].shape), dtype=torch.uint8)
    for i in range(len(images)):  # copy and free one by one: peak memory stays near 1x, not 2x
        stacked[i] = images[i]
        images[i] = None
    return stacked


class ChainedImages:
    """Several caches read as one sequence (train + val for a final retrain, without a third copy)."""

    def __init__(self, parts: Sequence[Cache]):
        self.parts = list(parts)
        self.starts = [0]
        for part in self.parts:
            self.starts.append(self.starts[-1] + len(part))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = next(i for i in range(len(self.parts)) if index < self.starts[i + 1])
        return self.parts[part][index - self.starts[part]]


def load_cache(samples: Sequence[tuple[Path, Any]], resize_to: int | tuple[int, int], cache_dir: Path | None = None, *,
               shared: bool = True, workers: int | None = None) -> Cache:
    """The decoded images of ``samples``: the node's shared memory-mapped cache in ``cache_dir`` (see
    :mod:`hpo_cls.data.shared_cache`; built on first use), or, with ``shared=False`` or when the folder
    cannot hold it, this process's own copy (:func:`build_cache`)."""
    if shared:
        try:
            return open_node_cache(samples, resize_to, cache_dir, workers)
        except OSError as exc:
            warn(f"decoded-image cache not shared ({exc}); this process decodes its own copy")
    return build_cache(samples, resize_to, workers)


def open_node_cache(samples, resize_to: int | tuple[int, int], cache_dir: Path | None, workers: int | None = None):
    """The node's shared cache of ``samples`` resized to ``resize_to`` (decoded first if it has none)."""
    decode = functools.partial(decode_resized, resize=v2.Resize(resize_to))
    return open_shared_cache([p for p, _ in samples], resize_to, image_cache_dir(cache_dir), decode,
                             workers or default_threads(), estimated_bytes=len(samples) * image_bytes(resize_to))


# ---------------------------------------------------------------------------------------------
# sampling and mixing


def balanced_sampler(labels: Sequence[int], num_samples: int | None = None,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Sampler drawing every class equally often: weight ``1 / class frequency`` per sample."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    weights = 1.0 / torch.bincount(labels).double()[labels]
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True, generator=generator)


class MixCollate:
    """``default_collate``, then Mixup/CutMix with probability ``prob`` per batch.

    Targets are ALWAYS float32 ``[B, num_classes]`` rows summing to 1: mixed, or one-hot for a batch
    left unmixed. The coin is ``torch.rand``, so loader/worker seeding makes it reproducible.
    """

    def __init__(self, mix: str, num_classes: int, mixup_alpha: float, cutmix_alpha: float, prob: float):
        mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)
        cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)
        choices = {"mixup": mixup, "cutmix": cutmix, "both": v2.RandomChoice([mixup, cutmix])}
        if mix not in choices:
            raise ValueError(f"mix must be one of {', '.join(choices)}, got {mix!r}")
        self.mix, self.num_classes, self.prob = choices[mix], num_classes, prob

    def __call__(self, batch):
        images, labels = default_collate(batch)
        if torch.rand(()).item() < self.prob:
            return self.mix(images, labels)
        return images, F.one_hot(labels, self.num_classes).float()


def build_mix_collate(cfg: TrialConfig, num_classes: int) -> MixCollate | None:
    """Collate for ``cfg.mix`` (soft targets, see :class:`MixCollate`); None for ``mix: none``
    (the default collate, int64 targets ``[B]``)."""
    if cfg.mix == "none":
        return None
    return MixCollate(cfg.mix, num_classes, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_prob)


# ---------------------------------------------------------------------------------------------
# loaders


@dataclass
class Loaders:
    """Train and val loaders of one trial plus the class mapping they were built with."""

    train: DataLoader
    val: DataLoader
    class_to_idx: dict[str, int]
    train_labels: list[int]
    cached: bool = False
    batch_transform: DeviceAugment | None = None  # train batches are augmented on the device by this

    @property
    def num_classes(self) -> int:
        return len(self.class_to_idx)


# One function on purpose: which cache, transform, sampler and collate a trial gets is read in one place.
def build_loaders(data_cfg: DataConfig, cfg: TrialConfig, *, device_is_cuda: bool = False, seed: int = 0,
                  cache: bool = True, cache_limit_bytes: int = 4 * 2**30, train_on_val: bool = False,
                  shared_cache: bool = True, device_augment: bool | None = None) -> Loaders:
    """Train/val DataLoaders for ``data_cfg.root``.

    Train: shuffled (or class-balanced), ``drop_last`` so BatchNorm never sees a batch of one; the
    batch size is clamped to the train set size so a tiny set still yields one batch. Val: eval
    transform, batch ``2 * cfg.batch_size``, in order. With ``cache``, decoded images come from the node's
    shared cache in ``data_cfg.cache_dir`` (``shared_cache=False``: this process's memory), train first,
    then val, while the estimate stays under ``cache_limit_bytes``. With
    ``train_on_val`` (a final retrain) the val images are trained on too, so val numbers are not held out.
    ``device_augment`` (default: on CUDA when the config only crops and flips) hands train batches over as
    uint8 with crop boxes, for ``Loaders.batch_transform`` to augment on the device
    (:mod:`hpo_cls.data.device_augment`).
    """
    root = Path(data_cfg.root)
    class_to_idx = class_mapping(root / "train")
    train_samples = list_images(root / "train", class_to_idx)
    val_samples = list_images(root / "val", class_to_idx)
    for split, samples in (("train", train_samples), ("val", val_samples)):
        if not samples:
            raise DataError(f"{root / split}: no images")
    caches = _split_caches(data_cfg, cfg, train_samples, val_samples, cache_limit_bytes if cache else 0, shared_cache)
    if train_on_val:
        train_samples = train_samples + val_samples
        caches[0] = ChainedImages(caches) if all(c is not None for c in caches) else None
    size = data_cfg.image_size
    if device_augment is None:
        device_augment = device_is_cuda and device_augment_supported(cfg)
    if device_augment:  # uint8 images as cached (or decoded and resized the same way) go to the collate
        train_transform = None if caches[0] is not None else v2.Compose(
            [v2.ToImage(), v2.Resize(cache_size(cfg, size)), v2.ToPureTensor()])
        collate = CropCollate(size)
    else:
        train_transform, collate = build_train_transform(cfg, size), build_mix_collate(cfg, len(class_to_idx))
    train_set = ImageDataset(train_samples, train_transform, caches[0])
    val_set = ImageDataset(val_samples, build_eval_transform(size, cfg), caches[1])

    labels = [y for _, y in train_samples]
    generator = torch.Generator().manual_seed(seed)
    sampler = balanced_sampler(labels, generator=generator) if data_cfg.balanced_sampling else None
    # No persistent workers: fresh workers each epoch take their seeds from the loader generator, which
    # the trainer re-seeds per epoch, so a resumed run continues exactly (forked workers start fast).
    common = dict(num_workers=data_cfg.workers, pin_memory=device_is_cuda)
    train = DataLoader(
        train_set, batch_size=min(cfg.batch_size, len(train_set)), shuffle=sampler is None, sampler=sampler,
        drop_last=True, generator=generator, collate_fn=collate, **common,
    )
    val = DataLoader(val_set, batch_size=2 * cfg.batch_size, shuffle=False, drop_last=False, **common)
    return Loaders(train, val, class_to_idx, labels, cached=caches[0] is not None,
                   batch_transform=DeviceAugment(size) if device_augment else None)


def _split_caches(data_cfg: DataConfig, cfg: TrialConfig, train_samples, val_samples, budget: int,
                  shared: bool) -> list:
    """[train cache, val cache] (None where over the remaining ``budget`` bytes)."""
    resize_to = cache_size(cfg, data_cfg.image_size)
    caches = []
    for samples in (train_samples, val_samples):
        nbytes = len(samples) * image_bytes(resize_to)
        caches.append(load_cache(samples, resize_to, data_cfg.cache_dir, shared=shared) if nbytes <= budget else None)
        budget -= nbytes if caches[-1] is not None else 0
    return caches


def build_test_loader(test_dir: Path, image_size: int, batch_size: int, workers: int = 0,
                      cfg: TrialConfig | None = None) -> DataLoader:
    """Batches of ``(images, names)`` over the flat test folder in file-name order; names: tuple of
    :func:`~hpo_cls.data.folders.image_name`.
    ``cfg``: the model's config, whose eval preprocessing is used (None: the defaults)."""
    samples = [(p, image_name(p)) for p in list_test_images(test_dir)]
    if not samples:
        raise DataError(f"{test_dir}: no images")
    dataset = ImageDataset(samples, build_eval_transform(image_size, cfg))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
