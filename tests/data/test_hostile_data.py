"""Hostile data folders and images (issue 15): refused by ``validate`` with one line naming the folder,
or decoded right; never a traceback in ``train`` later or a silently wrong result."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from sweep_helpers import make_images

from hpo_cls.cli import main
from hpo_cls.data import describe_dataset
from hpo_cls.data.folders import to_rgb
from hpo_cls.data.loaders import _load_rgb
from hpo_cls.errors import DataError

SPEC = """\
name: hostile
data: {{root: {root}, image_size: 16, workers: 0}}
budget: {{epochs: 1, num_samples: 1, max_concurrent: 1}}
fixed: {{backbone: resnet18, small_input: true, batch_size: 2}}
"""


def _validate_error(tmp_path, capsys, root) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(root=root))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _empty_split(root, split):
    for folder in (root / split).iterdir():
        shutil.rmtree(folder)
        folder.mkdir()


# ---------------------------------------------------------------------------------------------
# 7. folders that would train on nothing, or on the wrong classes


@pytest.mark.parametrize("split", ["val", "train"])
def test_every_class_folder_of_a_split_empty_is_refused(tmp_path, capsys, split):
    root = make_images(tmp_path / "data", train=2, val=1)
    _empty_split(root, split)
    line = _validate_error(tmp_path, capsys, root)
    assert f"{root / split}" in line and "no images" in line


def test_one_class_is_refused(tmp_path, capsys):
    root = make_images(tmp_path / "data", classes=1, train=2, val=1)
    line = _validate_error(tmp_path, capsys, root)
    assert f"{root / 'train'}" in line and "at least 2 classes" in line


def test_empty_train_class_folder_is_refused(tmp_path, capsys):
    root = make_images(tmp_path / "data", train=2, val=1)
    (root / "train" / "3").mkdir()
    line = _validate_error(tmp_path, capsys, root)
    assert f"{root / 'train' / '3'}" in line and "no images" in line


def test_val_class_without_images_is_accepted_with_a_note(tmp_path, capsys):
    root = make_images(tmp_path / "data", train=2, val=1)
    shutil.rmtree(root / "val" / "2")
    (root / "val" / "2").mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(root=root))
    assert main(["validate", str(spec)]) == 0
    assert "classes without images: 2" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["..", ".", "../..", "../../data/train"])
def test_class_folder_linking_upward_is_refused(tmp_path, capsys, target):
    root = make_images(tmp_path / "data", train=2, val=1)
    os.symlink(target, root / "train" / "loop", target_is_directory=True)
    line = _validate_error(tmp_path, capsys, root)
    assert f"{root / 'train' / 'loop'}" in line and "links to a folder above it" in line


def test_class_folder_linking_elsewhere_is_a_class(tmp_path):
    root = make_images(tmp_path / "data", train=2, val=1)
    elsewhere = make_images(tmp_path / "more", classes=1, train=2, val=1)
    os.symlink(elsewhere / "train" / "0", root / "train" / "linked", target_is_directory=True)
    summary = describe_dataset(root, scan=False)
    assert summary.train_counts["linked"] == 2


@pytest.mark.parametrize("split", ["val", "train"])
def test_train_on_an_empty_split_is_one_line(tmp_path, capsys, split):
    root = make_images(tmp_path / "data", train=2, val=1)
    _empty_split(root, split)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(root=root))
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1 and "no images" in err


def test_describe_dataset_raises_data_error_for_one_class(tmp_path):
    root = make_images(tmp_path / "data", classes=1, train=2, val=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        describe_dataset(root, scan=False)


# ---------------------------------------------------------------------------------------------
# 8. 16-bit images


VALUES_16 = np.array([[0, 257, 32768], [40000, 65280, 65535]], dtype=np.uint16)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(VALUES_16).save(path)
    with Image.open(path) as reread:
        assert reread.mode in ("I;16", "I")  # a real 16-bit PNG, as PIL decodes it
    decoded = np.asarray(_load_rgb(path))
    assert decoded.dtype == np.uint8 and decoded.shape == (2, 3, 3)
    np.testing.assert_array_equal(decoded[..., 0], np.round(VALUES_16 / 257).astype(np.uint8))
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 0] == decoded[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16", "I", "I;16B"])
def test_every_16_bit_mode_is_scaled_to_8_bit(mode):
    image = Image.fromarray(VALUES_16).convert("I") if mode != "I;16" else Image.fromarray(VALUES_16)
    if mode == "I;16B":
        image = Image.frombytes("I;16B", (3, 2), VALUES_16.astype(">u2").tobytes())
    assert image.mode == mode
    decoded = np.asarray(to_rgb(image))
    np.testing.assert_array_equal(decoded[..., 0], np.round(VALUES_16 / 257).astype(np.uint8))


def test_16_bit_gradient_is_not_clipped(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    path = tmp_path / "gradient.png"
    Image.fromarray(gradient).save(path)
    decoded = np.asarray(_load_rgb(path))[..., 0]
    assert (decoded == 255).mean() < 0.01  # PIL's own conversion made 99.6% of them 255
    assert len(np.unique(decoded)) == 256


def test_8_bit_images_decode_as_before(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    for name, image in (("rgb.png", Image.fromarray(pixels)), ("grey.png", Image.fromarray(pixels[..., 0]))):
        image.save(tmp_path / name)
        np.testing.assert_array_equal(np.asarray(_load_rgb(tmp_path / name)), np.asarray(image.convert("RGB")))


# ---------------------------------------------------------------------------------------------
# issue 36, class 6: file names that are not UTF-8


def _badly_named(folder, name: bytes, content: bytes | None = None):
    """A file named by raw bytes: a copy of an image of ``folder`` (a good one), or ``content``."""
    content = content if content is not None else (folder / "0.png").read_bytes()
    target = os.path.join(os.fsencode(folder), name)
    with open(target, "wb") as f:
        f.write(content)
    return target


def test_a_good_image_named_by_bytes_that_are_not_utf8_is_read(tmp_path, capsys):
    root = make_images(tmp_path / "data", train=2, val=1)
    _badly_named(root / "train" / "0", b"\xff\xfe.png")
    _badly_named(root / "val" / "1", b"caf\xe9.png")  # latin-1
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(root=root))
    assert main(["validate", str(spec)]) == 0
    assert "train: 7 images" in capsys.readouterr().out
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 0
    assert "7 train / 4 val images" in capsys.readouterr().out


@pytest.mark.parametrize("split, name", [("train/0", b"\xff\xfe.png"), ("val/1", b"\x80.jpg"),
                                         ("test", b"bad\xc3(.png")])
def test_a_corrupt_image_named_by_bytes_that_are_not_utf8_is_listed_escaped(tmp_path, capsys, split, name):
    root = make_images(tmp_path / "data", train=2, val=1)
    (root / "test").mkdir()
    _badly_named(root / split, name, content=b"no image at all")
    line = _validate_error(tmp_path, capsys, root)
    shown = name.decode("utf-8", "backslashreplace")
    assert f"{root / split}/{shown} (not an image)" in line


def test_a_class_folder_named_by_bytes_that_are_not_utf8_is_refused_naming_it(tmp_path, capsys):
    root = make_images(tmp_path / "data", train=2, val=1)
    os.rename(root / "train" / "2", os.path.join(os.fsencode(root / "train"), b"z\xff"))
    line = _validate_error(tmp_path, capsys, root)
    assert f"{root / 'train'}/z\\xff: a class folder whose name is not UTF-8" in line
