"""hpo_cls.data.device_augment: batch-wise crop/flip/normalise on the training device. The device path runs
on CUDA; its logic is the same on CPU tensors, which is what these tests run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from hpo_cls.data.device_augment import CropCollate, DeviceAugment, DeviceBatch, device_augment_supported
from hpo_cls.data.loaders import build_loaders
from hpo_cls.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from hpo_cls.spec import DataConfig, TrialConfig
from hpo_cls.train.checkpoint import load_checkpoint, save_checkpoint
from hpo_cls.train.run import TrainingRun

CPU = torch.device("cpu")
NORMALISE = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def random_images(shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in shapes]


@pytest.mark.parametrize(("overrides", "supported"), [
    ({}, True), ({"mix": "mixup"}, False), ({"rotation": 10.0}, False), ({"color_jitter": 0.2}, False),
    ({"trivial_augment": True}, False), ({"random_erasing": 0.25}, False), ({"label_smoothing": 0.1}, True),
])
def test_device_path_only_takes_crop_and_flip_configs(overrides, supported):
    assert device_augment_supported(TrialConfig(**overrides)) is supported


def test_small_images_are_pad_cropped_exactly_as_slicing_the_padded_image():
    images = random_images([(16, 16), (16, 24), (16, 16)])
    torch.manual_seed(3)
    batch, targets = CropCollate(16)([(image, i) for i, image in enumerate(images)])
    out = DeviceAugment(16)(batch, CPU)
    assert out.shape == (3, 3, 16, 16) and targets.tolist() == [0, 1, 2]
    for k, image in enumerate(images):
        left, top = (int(v) for v in batch.boxes[k, :2])
        expected = v2.functional.pad(image, [2])[:, top:top + 16, left:left + 16]
        if batch.flips[k]:
            expected = expected.flip(-1)
        torch.testing.assert_close(out[k], NORMALISE(expected), rtol=0, atol=1e-6)
    assert batch.boxes[:, :2].min() >= 0 and (batch.boxes[:, 2] <= torch.tensor([20, 28, 20])).all()


def test_a_whole_image_box_at_its_own_size_is_a_copy():
    image = random_images([(40, 40)])[0]
    batch = DeviceBatch(image[None], torch.tensor([[0.0, 0.0, 40.0, 40.0]]), torch.tensor([False]))
    torch.testing.assert_close(DeviceAugment(40)(batch, CPU)[0], NORMALISE(image), rtol=0, atol=1e-6)


def test_resized_crop_samples_like_torchvision_bilinear():
    image = random_images([(30, 40)])[0].float()
    top, left, h, w = 5, 7, 12, 20  # enlarged to 24x24: one sample per output pixel, as plain bilinear
    batch = DeviceBatch(image[None], torch.tensor([[left, top, left + w, top + h]], dtype=torch.float32),
                        torch.tensor([False]))
    out = DeviceAugment(24, mean=(0, 0, 0), std=(1 / 255,) * 3)(batch, CPU)[0]  # identity normalisation
    expected = v2.functional.resized_crop(image, top, left, h, w, [24, 24], antialias=False)
    # Inside, the same samples; on the border torchvision clamps to the crop, roi_align reads the next pixel.
    torch.testing.assert_close(out[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=0, atol=1e-3)


def test_resized_crop_boxes_follow_random_resized_crop():
    torch.manual_seed(0)
    sizes = torch.tensor([[256.0, 341.0]] * 4000, dtype=torch.float64)
    left, top, right, bottom = CropCollate(224).resized_crop_boxes(sizes).T
    w, h = right - left, bottom - top
    assert (left >= 0).all() and (top >= 0).all() and (right <= 341).all() and (bottom <= 256).all()
    area = w * h / (256 * 341)
    ratio = (w / h).log()
    assert area.min() >= 0.075 and area.max() <= 1.0
    assert ratio.min() >= math.log(3 / 4) - 0.1 and ratio.max() <= math.log(4 / 3) + 0.1
    reference = [v2.RandomResizedCrop(224).make_params([torch.empty(3, 256, 341)]) for _ in range(4000)]
    reference_area = torch.tensor([p["width"] * p["height"] / (256 * 341) for p in reference])
    assert area.mean() == pytest.approx(reference_area.mean().item(), abs=0.02)
    assert area.std() == pytest.approx(reference_area.std().item(), abs=0.02)
    assert (left == left.floor()).all() and (w == w.round()).all()  # whole pixels, like torchvision


def test_resized_crop_falls_back_to_a_central_crop_of_the_allowed_ratio():
    boxes = CropCollate(224).resized_crop_boxes(torch.tensor([[4.0, 400.0]], dtype=torch.float64))
    assert boxes.tolist() == [[197.0, 0.0, 202.0, 4.0]]  # 4 x round(4 * 4/3), centred


def test_flip_and_boxes_come_from_the_seeded_rng():
    images = [(image, 0) for image in random_images([(48, 64)] * 8)]
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        batch, _ = CropCollate(72)(images)
        draws.append((batch.boxes, batch.flips))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert 0 < int(draws[0][1].sum()) < 8


@pytest.fixture
def image_root(tmp_path):
    rng = np.random.default_rng(0)
    for c in range(3):
        for split, n in (("train", 6), ("val", 2)):
            folder = tmp_path / "data" / split / str(c)
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 28 if i % 2 else 20, 3), np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "data"


@pytest.mark.parametrize("size", [16, 72])
def test_training_with_the_device_path_is_seeded_and_resumes_exactly(image_root, tmp_path, size):
    data = DataConfig(root=image_root, image_size=size, workers=0)
    cfg = TrialConfig(backbone="resnet18", small_input=size <= 16, batch_size=4, lr=0.05, amp=False)

    def run() -> TrainingRun:
        loaders = build_loaders(data, cfg, seed=cfg.seed, device_augment=True)
        assert isinstance(loaders.batch_transform, DeviceAugment)
        return TrainingRun(data, cfg, 3, loaders=loaders)

    uninterrupted = run()
    first = uninterrupted.run_epoch()
    path = save_checkpoint(uninterrupted.state_dict(), tmp_path)
    expected = uninterrupted.run_epoch()
    resumed = run()
    resumed.load_state_dict(load_checkpoint(path))
    got = resumed.run_epoch()
    again = run().run_epoch()
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert got[key] == expected[key], f"{key}: resumed as if never interrupted"
        assert again[key] == first[key], f"{key}: same seed, same epoch"
