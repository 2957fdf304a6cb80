"""hpo_cls.data.shared_cache: one memory-mapped decoded-image cache per node, read by every trial."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from hpo_cls.data import class_mapping, list_images
from hpo_cls.data.loaders import (
    ChainedImages,
    ImageDataset,
    build_loaders,
    decode_resized,
    load_cache,
)
from hpo_cls.data.shared_cache import (
    MappedImages,
    cache_name,
    image_cache_dir,
    open_shared_cache,
)
from hpo_cls.data.transforms import build_eval_transform, resize_size
from hpo_cls.spec import DataConfig, TrialConfig


def write_image(path: Path, size=(16, 16), seed=0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """train/0..2 (4 PNGs each, two of them non-square), val/0..2 (2 each)."""
    for c in range(3):
        for split, n in (("train", 4), ("val", 2)):
            for i in range(n):
                write_image(tmp_path / "data" / split / str(c) / f"{i}.png", size=(24 if i == 1 else 16, 16),
                            seed=c * 10 + i + (5 if split == "val" else 0))
    return tmp_path / "data"


def samples_of(root: Path, split: str):
    return list_images(root / split, class_mapping(root / "train"))


class CountingDecode:
    """decode_resized that records each decoded path in a file, so other processes' calls count too."""

    def __init__(self, side: int, log: Path):
        self.side, self.log = side, log

    def __call__(self, path: Path) -> torch.Tensor:
        with open(self.log, "a") as out:
            out.write(f"{path}\n")
        return decode_resized(path, v2.Resize(self.side))

    def calls(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.mark.parametrize("size", [16, 72])  # as stored; larger, with a crop margin
def test_mapped_images_equal_decoding_from_files(root, tmp_path, size):
    samples = samples_of(root, "train")
    cache = load_cache(samples, resize_size(size), tmp_path / "cache")
    assert isinstance(cache, MappedImages) and cache.uniform_shape is None  # mixed sizes
    transform = build_eval_transform(size)
    cached, uncached = ImageDataset(samples, transform, cache), ImageDataset(samples, transform)
    for i in range(len(samples)):
        assert torch.equal(cached[i][0], uncached[i][0]), samples[i][0]


def test_second_open_maps_the_written_file_without_decoding(root, tmp_path):
    paths = [p for p, _ in samples_of(root, "train")]
    decode = CountingDecode(16, tmp_path / "decoded.log")
    first = open_shared_cache(paths, 16, tmp_path / "cache", decode)
    second = open_shared_cache(paths, 16, tmp_path / "cache", decode)
    assert decode.calls() == len(paths), "decoded once, then only mapped"
    assert first.path == second.path and len(list((tmp_path / "cache").glob("*.u8"))) == 1
    assert all(torch.equal(first[i], second[i]) for i in range(len(paths)))


def test_changed_file_is_decoded_again_and_old_entry_deleted(root, tmp_path):
    paths = [p for p, _ in samples_of(root, "train")]
    folder = tmp_path / "cache"
    decode = CountingDecode(16, tmp_path / "decoded.log")
    old = open_shared_cache(paths, 16, folder, decode)
    old_first = old[0].clone()
    write_image(paths[0], seed=1234)  # same name and size, new pixels and mtime
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))
    new = open_shared_cache(paths, 16, folder, decode)
    assert decode.calls() == 2 * len(paths)
    assert new.path != old.path and not old.path.exists()
    assert not torch.equal(new[0], old_first)
    assert torch.equal(new[0], decode_resized(paths[0], v2.Resize(16)))
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".lock", ".u8"]


def test_key_depends_on_resize_side_and_file_list(root):
    paths = [p for p, _ in samples_of(root, "train")]
    assert cache_name(paths, 16) == cache_name(list(paths), 16)
    assert cache_name(paths, 16)[1] != cache_name(paths, 18)[1]
    assert cache_name(paths, 16)[1] != cache_name(paths[:-1], 16)[1]


def _open_in_process(paths, folder, log, barrier):
    barrier.wait()
    cache = open_shared_cache(paths, 16, folder, CountingDecode(16, log), workers=1)
    return len(cache)


def test_concurrent_processes_decode_each_image_once(root, tmp_path):
    paths = [p for p, _ in samples_of(root, "train")]
    log = tmp_path / "decoded.log"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            sizes = pool.starmap(_open_in_process, [(paths, tmp_path / "cache", log, barrier)] * 3)
    assert sizes == [len(paths)] * 3
    assert CountingDecode(16, log).calls() == len(paths), "one process decoded, the others waited and mapped"


def test_loaders_of_two_trials_read_one_file(root, tmp_path):
    data = DataConfig(root=root, image_size=16, workers=0, cache_dir=tmp_path / "cache")
    first, second = (build_loaders(data, TrialConfig(batch_size=4)) for _ in range(2))
    for loaders in (first, second):
        assert loaders.cached and isinstance(loaders.train.dataset.cache, MappedImages)
    assert first.train.dataset.cache.path == second.train.dataset.cache.path
    assert len(list(image_cache_dir(tmp_path / "cache").glob("*.u8"))) == 2  # train and val


def test_train_on_val_chains_the_split_caches(root, tmp_path):
    data = DataConfig(root=root, image_size=16, workers=0, cache_dir=tmp_path / "cache")
    build_loaders(data, TrialConfig(batch_size=4))
    loaders = build_loaders(data, TrialConfig(batch_size=4), train_on_val=True)
    cache = loaders.train.dataset.cache
    assert isinstance(cache, ChainedImages) and len(cache) == 12 + 6
    assert len(list(image_cache_dir(tmp_path / "cache").glob("*.u8"))) == 2, "no third copy"
    samples = samples_of(root, "train") + samples_of(root, "val")
    transform = build_eval_transform(16)
    assert torch.equal(ImageDataset(samples, transform, cache)[15][0], ImageDataset(samples, transform)[15][0])


def test_unusable_folder_falls_back_to_this_process(root, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    data = DataConfig(root=root, image_size=16, workers=0, cache_dir=blocker)
    loaders = build_loaders(data, TrialConfig(batch_size=4))
    assert loaders.cached and not isinstance(loaders.train.dataset.cache, MappedImages)
    assert "decoded-image cache not shared" in capsys.readouterr().err


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(tmp_path / "x"))
    assert image_cache_dir() == tmp_path / "x" / "images"
    monkeypatch.delenv("HPO_CLS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache_dir() == tmp_path / "xdg" / "hpo-cls" / "images"


def test_mapped_pages_are_shared_not_copied(root, tmp_path):
    """The dataset's images are views of the file mapping: reading them allocates no private copy."""
    samples = samples_of(root, "val")
    cache = load_cache(samples, 16, tmp_path / "cache")
    image = ImageDataset(samples, None, cache)[0][0]
    base = cache.flat.untyped_storage().data_ptr()
    assert base <= image.untyped_storage().data_ptr() < base + cache.flat.numel()


def test_spec_cache_dir_is_made_absolute(tmp_path, monkeypatch):
    from hpo_cls.spec import parse_spec

    monkeypatch.chdir(tmp_path)
    spec = parse_spec({"name": "x", "data": {"cache_dir": "rel"}}, "inline")
    assert spec.data.cache_dir == tmp_path / "rel"
    assert parse_spec({"name": "x"}, "inline").data.cache_dir is None
