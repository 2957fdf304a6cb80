"""The data folder: class mapping, image listing, and a full decode scan of every file (torch-free).

Layout: ``root/train/<class>/*.jpg``, ``root/val/<class>/*.jpg``, optional flat ``root/test/*.jpg``.
Class folders named by integers are ordered numerically, so folder ``"10"`` never lands before ``"2"``.

File names: an image whose name is not UTF-8 (``b'\\xff\\xfe.jpg'``) is read like any other; wherever its name
is shown or written (messages, the bad-file list, ``prediction.csv``) it is :func:`shown_name`, the bytes
that are not UTF-8 escaped as ``\\xNN``. A class folder's name is its label, so a class folder whose name is
not UTF-8 is refused, naming it, rather than given a label that is not its name.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from hpo_cls.cache_dir import default_cache_root
from hpo_cls.errors import DataError, printable

__all__ = [
    "IMAGE_EXTENSIONS", "default_threads", "shown_name", "image_name", "file_stamp", "to_rgb", "class_mapping",
    "CLASS_NAMES_FILE", "class_names", "list_images",
    "list_test_images", "scan_images", "DatasetSummary", "describe_dataset",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def default_threads() -> int:
    return min(8, len(os.sched_getaffinity(0)))


def shown_name(path: Path | str) -> str:
    """A file's path or name as shown and written: valid UTF-8, bytes that are not UTF-8 escaped (module doc)."""
    return printable(str(path))


def image_name(path: Path) -> str:
    """An image's row name in ``prediction.csv`` and ``test_labels.csv``: its file name without extension, as
    shown (so the CSV stays UTF-8)."""
    return shown_name(Path(path).stem)


def file_stamp(path: Path) -> bytes:
    """``path``'s absolute name, size and modification time, for a digest of a list of files (its bytes as
    they are: a name need not be UTF-8). OSError if it is gone."""
    stat = path.stat()
    return os.fsencode(path.absolute()) + f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()


# ---------------------------------------------------------------------------------------------
# folders


def _visible(entries) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _refuse_upward_links(folders: list[Path]) -> None:
    """A class folder that links to its own split folder or above (``train/loop -> ..``) would be listed as a
    class of its own, holding no images, or the whole data set again."""
    for folder in folders:
        if folder.is_symlink():
            target = folder.resolve()
            if folder.parent.resolve().is_relative_to(target):
                raise DataError(f"{folder}: links to a folder above it ({target}), not a class folder; remove the link")


def _refuse_unreadable_names(folders: list[Path]) -> None:
    for folder in folders:
        if shown_name(folder.name) != folder.name:
            raise DataError(f"{shown_name(folder)}: a class folder whose name is not UTF-8; its name is the class's "
                            "label, so rename it")


def class_mapping(train_dir: Path) -> dict[str, int]:
    """Class folder name -> index: numeric order if every name is an integer, else alphabetical."""
    train_dir = Path(train_dir)
    if not train_dir.is_dir():
        raise DataError(f"{train_dir}: no such folder (expected train/<class>/ image folders)")
    folders = [p for p in _visible(train_dir.iterdir()) if p.is_dir()]
    _refuse_upward_links(folders)
    _refuse_unreadable_names(folders)
    names = [p.name for p in folders]
    if not names:
        raise DataError(f"{train_dir}: no class folders (expected train/<class>/ image folders)")
    if all(n.isascii() and n.isdigit() for n in names):
        names.sort(key=lambda n: (int(n), n))
    return {name: i for i, name in enumerate(names)}


CLASS_NAMES_FILE = "class_names.csv"  # optional, beside train/: ``index,name`` per class (e.g. 0,airplane)


def class_names(root: Path, class_to_idx: dict[str, int]) -> list[str]:
    """The classes' names in index order, for reports and plots: a numbered class folder's name from
    ``root/class_names.csv`` where that file names it, else the folder's name. The labels themselves stay
    the folder names (``class_to_idx``); this is only what a person reads."""
    import csv

    folders = sorted(class_to_idx, key=class_to_idx.get)
    named: dict[str, str] = {}
    path = Path(root, CLASS_NAMES_FILE)
    if path.is_file():
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                index, name = (row.get("index") or "").strip(), (row.get("name") or "").strip()
                if index.isdigit() and name:
                    named[str(int(index))] = name
    return [named.get(str(int(folder)), folder) if folder.isascii() and folder.isdigit() else folder
            for folder in folders]


def _image_files(folder: Path) -> list[Path]:
    return [p for p in _visible(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]


def list_images(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[Path, int]]:
    """(path, class index) of every image in ``split_dir/<class>/``, in class then file-name order."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: no such folder")
    folders = [p for p in _visible(split_dir.iterdir()) if p.is_dir()]
    _refuse_upward_links(folders)
    unknown = [shown_name(p.name) for p in folders if p.name not in class_to_idx]
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) not in train/: {', '.join(unknown)}")
    folders.sort(key=lambda p: class_to_idx[p.name])
    return [(path, class_to_idx[folder.name]) for folder in folders for path in _image_files(folder)]


def list_test_images(test_dir: Path) -> list[Path]:
    """Images of the flat, unlabelled test folder, sorted by name."""
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise DataError(f"{test_dir}: no such folder")
    return _image_files(test_dir)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit greyscale (modes I;16*, and I as PNG decodes them) is scaled from 0..65535:
    PIL's own conversion clips it at 255, turning nearly every pixel white."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":  # floats: 0..1 if they fit, else 0..255 like PIL
            full_scale = 1.0 if values.size and values.max() <= 1.0 else 255.0
        else:  # a 32-bit image beyond 16 bits: its own maximum is white
            full_scale = max(65535.0, float(values.max()) if values.size else 0.0)
        scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    return image.convert("RGB")


# ---------------------------------------------------------------------------------------------
# checking images


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be decoded, or None. Relies on PIL's LOAD_TRUNCATED_IMAGES being False."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as image:
            image.load()
    except UnidentifiedImageError:
        return "not an image"
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        message = str(exc) or type(exc).__name__
        return "truncated" if "truncated" in message else f"corrupt: {message[:80]}"
    return None


def scan_images(paths: Sequence[Path], workers: int | None = None,
                remember_in: Path | None = None) -> list[tuple[Path, str]]:
    """Fully decode every image (in a thread pool); return ``(path, reason)`` for the bad ones. With
    ``remember_in``, a list of files that all decoded is remembered there (each file's path, size and
    modification time): the same files, unchanged, are not decoded again."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images would pass the scan")
    paths = [Path(p) for p in paths]
    passed = Path(remember_in) / f"{_files_digest(paths)}.ok" if remember_in is not None else None
    if passed is not None and passed.is_file():
        return []
    with ThreadPoolExecutor(workers or default_threads()) as pool:
        problems = list(pool.map(_problem, paths))
    bad = [(p, reason) for p, reason in zip(paths, problems) if reason is not None]
    if passed is not None and not bad:
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()
        except OSError:  # an unwritable cache folder: the next scan decodes again, nothing else
            pass
    return bad


def _files_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha1(f"{len(paths)}".encode())
    for path in paths:
        try:
            digest.update(file_stamp(path))
        except OSError:
            digest.update(os.fsencode(path.absolute()) + b"\0missing\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class DatasetSummary:
    """Images per class and split, test image count, and the files that fail to decode."""

    root: Path
    class_to_idx: dict[str, int]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    num_test: int
    bad_files: list[tuple[Path, str]] = field(default_factory=list)

    def report(self) -> str:
        """Readable multi-line report, as printed by ``validate``."""
        lines = [f"{self.root}: {len(self.class_to_idx)} classes"]
        for split, counts in (("train", self.train_counts), ("val", self.val_counts)):
            values = list(counts.values())
            lines.append(f"  {split}: {sum(values)} images, {min(values)}-{max(values)} per class")
            empty = [name for name, n in counts.items() if n == 0]
            if empty:
                lines.append(f"    classes without images: {', '.join(empty)}")
        lines.append(f"  test: {self.num_test} images")
        lines.append(f"  bad files: {len(self.bad_files)}")
        lines += [f"    {shown_name(path)}: {reason}" for path, reason in self.bad_files]
        return "\n".join(lines)


def describe_dataset(root: Path, *, scan: bool = True, workers: int | None = None) -> DatasetSummary:
    """Summarise ``root`` (train/, val/, optional test/); with ``scan`` every image is decoded (once per
    machine while the files stay as they are: remembered in the hpo-cls cache folder)."""
    root = Path(root)
    class_to_idx = class_mapping(root / "train")
    train = list_images(root / "train", class_to_idx)
    val = list_images(root / "val", class_to_idx)
    test = list_test_images(root / "test") if (root / "test").is_dir() else []

    def counts(samples):
        per_index = Counter(y for _, y in samples)
        return {name: per_index[i] for name, i in class_to_idx.items()}

    _check_trainable(root, class_to_idx, train, val)
    paths = [p for p, _ in train] + [p for p, _ in val] + test
    bad = scan_images(paths, workers, remember_in=default_cache_root() / "scanned") if scan else []
    return DatasetSummary(root, class_to_idx, counts(train), counts(val), len(test), bad)


def _check_trainable(root: Path, class_to_idx: dict[str, int], train: list, val: list) -> None:
    """At least two classes, images in every train class folder and in val/: else a model "trains" on
    one class to val_acc 1.0, has outputs no image trains, or fails on an empty loader after training."""
    if len(class_to_idx) < 2:
        raise DataError(f"{root / 'train'}: {len(class_to_idx)} class folder ({', '.join(class_to_idx)}); "
                        "classification needs at least 2 classes")
    with_images = {y for _, y in train}
    empty = [name for name, i in class_to_idx.items() if i not in with_images]
    if empty:
        more = f" (and {len(empty) - 1} more: {', '.join(empty[1:6])})" if len(empty) > 1 else ""
        raise DataError(f"{root / 'train' / empty[0]}: no images{more}; remove the folder or add images")
    if not val:
        raise DataError(f"{root / 'val'}: no images in any class folder; validation needs some")
