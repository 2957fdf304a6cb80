"""hpo_cls.data: folder layout and class order, bad-image scan, transforms, cache, sampling, mixing, loaders."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hpo_cls.data import (
    class_mapping,
    describe_dataset,
    list_images,
    list_test_images,
    scan_images,
)
from hpo_cls.data.loaders import (
    ImageDataset,
    balanced_sampler,
    build_cache,
    build_loaders,
    build_mix_collate,
    build_test_loader,
)
from hpo_cls.data.transforms import (
    build_eval_transform,
    build_train_transform,
    resize_size,
)
from hpo_cls.errors import DataError
from hpo_cls.spec import DataConfig, TrialConfig

NUM_CLASSES = 12
TRAIN_PER_CLASS = 4
VAL_PER_CLASS = 2


def write_image(path: Path, size=(16, 16), seed=0, value=None) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.full((h, w, 3), value, np.uint8) if value is not None else rng.integers(0, 256, (h, w, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def image_root(tmp_path) -> Path:
    """train/0..11 (4 images each, JPEG and PNG), val/0..11 (2 each), flat test/ (3 images)."""
    root = tmp_path / "data"
    seed = 0
    for c in range(NUM_CLASSES):
        for split, n in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
            for i in range(n):
                seed += 1
                write_image(root / split / str(c) / f"img{i}.{'png' if i % 2 else 'jpg'}", seed=seed)
    for name in ("b", "a", "c"):
        write_image(root / "test" / f"{name}.jpg", seed=ord(name))
    return root


def data_config(root: Path, **overrides) -> DataConfig:
    return dataclasses.replace(DataConfig(root=root, image_size=16, workers=0), **overrides)


# ---------------------------------------------------------------------------------------------
# folders


def test_integer_class_folders_are_ordered_numerically(image_root):
    (image_root / "train" / ".ipynb_checkpoints").mkdir()
    mapping = class_mapping(image_root / "train")
    assert mapping["2"] == 2 and mapping["10"] == 10  # string order would put "10" at index 2
    assert list(mapping) == [str(i) for i in range(NUM_CLASSES)]  # hidden folder ignored


def test_named_class_folders_are_ordered_alphabetically(tmp_path):
    for name in ("dog", "cat", "ant", "7"):
        (tmp_path / name).mkdir()
    assert class_mapping(tmp_path) == {"7": 0, "ant": 1, "cat": 2, "dog": 3}


def test_train_without_class_folders_is_an_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        class_mapping(tmp_path / "train")


def test_val_class_unknown_to_train_is_named(image_root):
    write_image(image_root / "val" / "zebra" / "x.jpg")
    with pytest.raises(DataError, match="zebra"):
        list_images(image_root / "val", class_mapping(image_root / "train"))


def test_list_images_filters_extensions_and_is_sorted(image_root):
    folder = image_root / "train" / "3"
    write_image(folder / "UPPER.JPG")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"")
    samples = list_images(image_root / "train", class_mapping(image_root / "train"))
    assert len(samples) == NUM_CLASSES * TRAIN_PER_CLASS + 1
    assert [y for _, y in samples] == sorted(y for _, y in samples)
    assert (folder / "UPPER.JPG", 3) in samples
    assert samples[:2] == [(image_root / "train" / "0" / "img0.jpg", 0), (image_root / "train" / "0" / "img1.png", 0)]


def test_test_images_are_flat_and_sorted_by_name(image_root):
    assert [p.name for p in list_test_images(image_root / "test")] == ["a.jpg", "b.jpg", "c.jpg"]


# ---------------------------------------------------------------------------------------------
# scanning for bad files


@pytest.fixture
def bad_files(image_root) -> dict[str, Path]:
    folder = image_root / "train" / "5"
    full = write_image(folder / "big.jpg", size=(64, 64), seed=99).read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, I am not a JPEG\n")
    return {
        "truncated": folder / "truncated.jpg",
        "empty file": folder / "empty.jpg",
        "not an image": folder / "text.jpg",
    }


def test_scan_reports_each_bad_file_with_its_reason(image_root, bad_files):
    samples = list_images(image_root / "train", class_mapping(image_root / "train"))
    found = scan_images([p for p, _ in samples], workers=2)
    assert {path: reason for path, reason in found} == {path: reason for reason, path in bad_files.items()}


def test_a_scan_that_passed_is_not_decoded_again_until_a_file_changes(image_root, tmp_path, monkeypatch):
    """Every sweep scans the data set before it starts (21k JPEGs: a minute on 2 cores); the same files,
    unchanged, passed last time. A file rewritten since (here: truncated) is decoded and reported."""
    from hpo_cls.data import folders

    paths = [p for p, _ in list_images(image_root / "train", class_mapping(image_root / "train"))]
    remembered = tmp_path / "scanned"
    assert scan_images(paths, workers=2, remember_in=remembered) == []
    decoded = []
    real_problem = folders._problem
    monkeypatch.setattr(folders, "_problem", lambda path: decoded.append(path) or real_problem(path))
    assert scan_images(paths, workers=2, remember_in=remembered) == [] and decoded == []
    paths[0].write_bytes(paths[0].read_bytes()[:-64])
    assert [path for path, _ in scan_images(paths, workers=2, remember_in=remembered)] == [paths[0]]
    assert len(decoded) == len(paths)
    assert [path for path, _ in scan_images(paths, workers=2, remember_in=remembered)] == [paths[0]]  # never remembered


def test_describe_dataset_counts_splits_and_lists_bad_files(image_root, bad_files):
    summary = describe_dataset(image_root, workers=2)
    assert summary.train_counts["5"] == TRAIN_PER_CLASS + 4  # big.jpg and the three bad files
    assert summary.train_counts["0"] == TRAIN_PER_CLASS and set(summary.val_counts.values()) == {VAL_PER_CLASS}
    assert summary.num_test == 3
    assert len(summary.bad_files) == 3
    report = summary.report()
    assert "12 classes" in report and "bad files: 3" in report and "truncated" in report


# ---------------------------------------------------------------------------------------------
# transforms and cache


@pytest.mark.parametrize("size", [16, 96])
@pytest.mark.parametrize("input_kind", ["pil", "uint8"])
def test_transforms_give_normalised_square_float_images(size, input_kind):
    image = Image.fromarray(np.full((20, 30, 3), 128, np.uint8))  # non-square on purpose
    if input_kind == "uint8":
        image = torch.full((3, 20, 30), 128, dtype=torch.uint8)
    cfg = TrialConfig(rotation=15, color_jitter=0.3, trivial_augment=True, random_erasing=0.5)
    for transform in (build_train_transform(cfg, size), build_train_transform(TrialConfig(), size)):
        out = transform(image)
        assert out.shape == (3, size, size) and out.dtype == torch.float32 and type(out) is torch.Tensor
    out = build_eval_transform(size)(image)
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("size", [16, 32, 72])  # small as stored, small upscaled, large with crop margin
def test_cached_images_match_decoding_from_files(image_root, size):
    samples = list_images(image_root / "val", class_mapping(image_root / "val"))
    side = resize_size(size)
    cache = build_cache(samples, side, workers=2)
    assert isinstance(cache, torch.Tensor) and cache.dtype == torch.uint8
    assert cache.shape == (len(samples), 3, side, side)
    transform = build_eval_transform(size)
    cached, uncached = ImageDataset(samples, transform, cache), ImageDataset(samples, transform)
    for i in range(len(samples)):
        assert torch.equal(cached[i][0], uncached[i][0])
        assert cached[i][1] == uncached[i][1]


def test_cache_of_mixed_sizes_is_a_list(tmp_path):
    samples = [(write_image(tmp_path / "a.png", size=(40, 20)), 0), (write_image(tmp_path / "b.png", size=(20, 20)), 1)]
    cache = build_cache(samples, 10, workers=1)
    assert isinstance(cache, list) and [tuple(t.shape) for t in cache] == [(3, 10, 20), (3, 10, 10)]
    transform = build_eval_transform(10)
    assert torch.equal(ImageDataset(samples, transform, cache)[0][0], ImageDataset(samples, transform)[0][0])


# ---------------------------------------------------------------------------------------------
# sampling and mixing


def test_balanced_sampler_draws_minority_class_as_often_as_majority():
    labels = [0] * 90 + [1] * 10
    sampler = balanced_sampler(labels, num_samples=20_000, generator=torch.Generator().manual_seed(0))
    drawn = torch.tensor(labels)[torch.tensor(list(sampler))]
    assert abs((drawn == 1).float().mean().item() - 0.5) < 0.02
    assert len(balanced_sampler(labels)) == len(labels)


def _batch(n=16, num_classes=NUM_CLASSES):
    torch.manual_seed(0)
    return [(torch.rand(3, 8, 8), i % num_classes) for i in range(n)]


@pytest.mark.parametrize("mix", ["mixup", "cutmix", "both"])
def test_mix_collate_gives_soft_targets(mix):
    collate = build_mix_collate(TrialConfig(mix=mix, mix_prob=1.0), NUM_CLASSES)
    collate = pickle.loads(pickle.dumps(collate))  # DataLoader workers need to pickle it
    images, targets = collate(_batch())
    assert images.shape == (16, 3, 8, 8)
    assert targets.shape == (16, NUM_CLASSES) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(16))
    assert (targets.max(dim=1).values < 1).any()  # some rows really are mixed


def test_unmixed_batches_still_get_one_hot_targets():
    collate = build_mix_collate(TrialConfig(mix="both", mix_prob=0.0), NUM_CLASSES)
    images, targets = collate(_batch())
    expected = torch.nn.functional.one_hot(torch.arange(16) % NUM_CLASSES, NUM_CLASSES).float()
    assert torch.equal(targets, expected)
    assert torch.equal(images, torch.stack([x for x, _ in _batch()]))


def test_no_mixing_means_no_collate():
    assert build_mix_collate(TrialConfig(mix="none"), NUM_CLASSES) is None


# ---------------------------------------------------------------------------------------------
# loaders


def test_train_loader_drops_incomplete_batch_and_val_keeps_it(image_root):
    loaders = build_loaders(data_config(image_root), TrialConfig(batch_size=10))
    assert loaders.num_classes == NUM_CLASSES and loaders.cached
    assert [len(y) for _, y in loaders.train] == [10] * (NUM_CLASSES * TRAIN_PER_CLASS // 10)
    val = list(loaders.val)
    assert [len(y) for _, y in val] == [20, NUM_CLASSES * VAL_PER_CLASS - 20]
    images, targets = val[0]
    assert images.shape == (20, 3, 16, 16) and targets.dtype == torch.int64


def test_batch_larger_than_train_set_still_gives_one_batch(image_root):
    loaders = build_loaders(data_config(image_root), TrialConfig(batch_size=1000), cache=False)
    assert [len(y) for _, y in loaders.train] == [NUM_CLASSES * TRAIN_PER_CLASS]
    assert not loaders.cached


def test_loader_order_is_seeded(image_root):
    def first_labels(seed):
        torch.manual_seed(0)
        loaders = build_loaders(data_config(image_root, balanced_sampling=True), TrialConfig(batch_size=8), seed=seed)
        return next(iter(loaders.train))[1].tolist()

    assert first_labels(1) == first_labels(1) != first_labels(2)


def test_workers_get_cache_and_mix_collate(image_root):
    cfg = TrialConfig(batch_size=8, mix="cutmix")
    loaders = build_loaders(data_config(image_root, workers=1), cfg)
    assert not loaders.train.persistent_workers  # fresh workers per epoch keep resumes exact
    for _ in range(2):
        batches = list(loaders.train)
        assert len(batches) == NUM_CLASSES * TRAIN_PER_CLASS // 8
        assert all(targets.shape == (8, NUM_CLASSES) for _, targets in batches)


@pytest.mark.parametrize("cache", [True, False])
def test_unreadable_image_names_the_file(image_root, cache):
    (image_root / "train" / "4" / "broken.jpg").write_text("not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        loaders = build_loaders(data_config(image_root), TrialConfig(batch_size=8), cache=cache)
        list(loaders.train)


def test_test_loader_yields_images_with_file_stems(image_root):
    loader = build_test_loader(image_root / "test", image_size=16, batch_size=2)
    batches = list(loader)
    assert [list(names) for _, names in batches] == [["a", "b"], ["c"]]
    assert batches[0][0].shape == (2, 3, 16, 16)


def test_class_names_come_from_class_names_csv_else_the_folders(tmp_path):
    from hpo_cls.data.folders import class_names

    mapping = {"0": 0, "1": 1, "2": 2, "10": 3}
    assert class_names(tmp_path, mapping) == ["0", "1", "2", "10"], "no file: the folder names"
    (tmp_path / "class_names.csv").write_text("index,name\n0,airplane\n1,automobile\n10,truck\nx,bad\n")
    assert class_names(tmp_path, mapping) == ["airplane", "automobile", "2", "truck"]
    assert class_names(tmp_path, {"cat": 0, "dog": 1}) == ["cat", "dog"], "named folders keep their names"


def test_the_embedded_cifar10_mini_names_its_classes():
    from hpo_cls.data.folders import class_mapping, class_names

    root = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini"
    names = class_names(root, class_mapping(root / "train"))
    assert names[0] == "airplane" and names[9] == "truck"
