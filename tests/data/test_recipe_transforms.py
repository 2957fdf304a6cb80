"""The preprocessing keys the seed recipes need, on real image tensors: full-frame resize, one-of-N
augmentation, flips with their probabilities, hue jitter, RandomResizedCrop's scale and mean/std."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from hpo_cls.data.loaders import build_loaders
from hpo_cls.data.transforms import build_eval_transform, build_train_transform
from hpo_cls.spec import IMAGENET_MEAN, IMAGENET_STD, DataConfig, TrialConfig

RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # Normalize as identity: outputs are pixels / 255
STILL = TrialConfig(hflip=0.0, **RAW)  # no random op at all in "full" mode


def _bordered(height: int, width: int) -> torch.Tensor:
    """uint8 [3, H, W]: grey, with red left and blue right borders a tenth of the width wide."""
    image = torch.full((3, height, width), 128, dtype=torch.uint8)
    border = max(1, width // 10)
    image[:, :, :border] = torch.tensor([255, 0, 0], dtype=torch.uint8)[:, None, None]
    image[:, :, -border:] = torch.tensor([0, 0, 255], dtype=torch.uint8)[:, None, None]
    return image


def _pixels(image: torch.Tensor) -> torch.Tensor:
    """A transform's float output (identity normalisation) back to uint8."""
    return (image * 255).round().to(torch.uint8)


def _asymmetric(size: int = 8) -> torch.Tensor:
    return torch.arange(3 * size * size, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, size, size)


@pytest.mark.parametrize("build", [lambda cfg: build_eval_transform(16, cfg),
                                   lambda cfg: build_train_transform(cfg, 16)], ids=["eval", "train"])
def test_full_resize_keeps_the_whole_frame(build):
    image = _bordered(20, 60)  # wide: a centre crop would cut both side columns away
    full = build(dataclasses.replace(STILL, resize="full"))(image)
    assert full.shape == (3, 16, 16)
    assert full[0, :, 0].min() > 0.5 and full[2, :, -1].min() > 0.5, "both borders are still in the frame"
    cropped = build_eval_transform(16, dataclasses.replace(STILL, resize="crop"))(image)
    assert cropped[0, :, 0].max() < 0.6 and cropped[2, :, -1].max() < 0.6, "the centre crop loses the borders"


def test_one_of_applies_exactly_one_augmentation_per_image():
    image = _asymmetric()
    both = dataclasses.replace(STILL, hflip=1.0, vflip=1.0, resize="full")
    h, v = image.flip(-1), image.flip(-2)
    assert torch.equal(_pixels(build_train_transform(both, 8)(image)), image.flip(-1).flip(-2))
    one_of = build_train_transform(dataclasses.replace(both, augment_one_of=True), 8)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = _pixels(one_of(image))
        matches = [name for name, ref in (("h", h), ("v", v)) if torch.equal(out, ref)]
        assert len(matches) == 1, "exactly one flip, never both, never none"
        seen.add(matches[0])
    assert seen == {"h", "v"}


def test_one_of_picks_among_rotation_jitter_and_flips():
    cfg = TrialConfig(augment_one_of=True, rotation=45, color_jitter=0.2, hflip=0.2, vflip=0.2, resize="full")
    ops = [t for t in build_train_transform(cfg, 32).transforms if isinstance(t, v2.RandomChoice)]
    assert len(ops) == 1
    kinds = [type(t) for t in ops[0].transforms]
    assert kinds == [v2.RandomHorizontalFlip, v2.RandomVerticalFlip, v2.RandomRotation, v2.ColorJitter]
    assert [t.p for t in ops[0].transforms[:2]] == [0.2, 0.2]


@pytest.mark.parametrize("hflip,vflip", [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)])
def test_flip_probabilities(hflip, vflip):
    image = _asymmetric()
    out = build_train_transform(dataclasses.replace(STILL, resize="full", hflip=hflip, vflip=vflip), 8)(image)
    expected = image.flip(-1) if hflip else image.flip(-2) if vflip else image
    assert torch.equal(_pixels(out), expected)


def test_hue_jitter_shifts_colours_but_not_greys():
    cfg = dataclasses.replace(STILL, resize="full", hue=0.5)
    jitter = [t for t in build_train_transform(cfg, 8).transforms if isinstance(t, v2.ColorJitter)]
    assert len(jitter) == 1 and jitter[0].hue == (-0.5, 0.5) and jitter[0].brightness is None
    colour = torch.zeros(3, 8, 8, dtype=torch.uint8)
    colour[0] = 200
    grey = torch.full((3, 8, 8), 90, dtype=torch.uint8)
    transform = build_train_transform(cfg, 8)
    torch.manual_seed(0)
    changed = [not torch.allclose(transform(colour), colour.float() / 255, atol=1e-3) for _ in range(5)]
    assert any(changed)
    assert torch.allclose(transform(grey), grey.float() / 255, atol=1e-2)


def test_crop_scale_reaches_random_resized_crop():
    image = _bordered(100, 100)
    whole = build_train_transform(dataclasses.replace(STILL, crop_scale=(1.0, 1.0)), 80)
    for seed in range(10):
        torch.manual_seed(seed)
        out = whole(image)
        assert out[0, :, 0].min() > 0.5 and out[2, :, -1].min() > 0.5, "scale 1.0: the crop is the whole image"
    crop = [t for t in build_train_transform(TrialConfig(crop_scale=(0.8, 1.0)), 224).transforms
            if isinstance(t, v2.RandomResizedCrop)]
    assert crop[0].scale == (0.8, 1.0)


@pytest.mark.parametrize("resize", ["crop", "full"])
def test_mean_and_std_reach_normalize_in_train_and_eval(resize):
    image = torch.full((3, 24, 24), 128, dtype=torch.uint8)
    cfg = TrialConfig(mean=(0.49, 0.49, 0.49), std=(0.25, 0.25, 0.25), hflip=0.0, resize=resize)
    expected = torch.full((3, 16, 16), (128 / 255 - 0.49) / 0.25)
    assert torch.allclose(build_eval_transform(16, cfg)(image), expected, atol=1e-5)
    assert torch.allclose(build_train_transform(cfg, 16)(image)[:, 4:-4, 4:-4], expected[:, 4:-4, 4:-4], atol=1e-5)
    default = build_eval_transform(16)(image)  # no config (an older bundle): ImageNet statistics
    imagenet = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(default[:, 0, 0], imagenet, atol=1e-5)


def test_full_resize_cache_gives_the_same_images_as_the_files(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("0", "1"):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (12, 30, 3), np.uint8)).save(folder / f"{i}.png")
    data = DataConfig(root=tmp_path, image_size=16, workers=0)
    cfg = TrialConfig(resize="full", batch_size=2)
    cached, files = build_loaders(data, cfg, cache=True), build_loaders(data, cfg, cache=False)
    assert cached.cached and not files.cached
    for i in range(len(files.val.dataset)):
        image, _ = cached.val.dataset[i]
        assert image.shape == (3, 16, 16) and torch.equal(image, files.val.dataset[i][0])
