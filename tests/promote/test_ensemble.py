"""hpo_cls.promote.ensemble and hpo_cls.promote.predict: probability averaging, TTA, safe bundle loading, the pyfunc model
and the prediction.csv format."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from hpo_cls.data import class_mapping
from hpo_cls.errors import CheckpointError
from hpo_cls.models.classifier import build_model
from hpo_cls.promote.ensemble import (
    EnsembleModel,
    EnsemblePyfunc,
    load_ensemble,
    load_member,
    normalize_weights,
    write_pyfunc_code,
)
from hpo_cls.promote.predict import (
    PREDICTION_HEADER,
    image_sources,
    inference_settings,
    predict_probabilities,
    prediction_frame,
    write_prediction_csv,
)
from hpo_cls.spec import TrialConfig, flatten_trial_config
from hpo_cls.train.checkpoint import model_bundle, save_checkpoint

NUM_CLASSES = 4
TINY = TrialConfig(backbone="wrn16_4", small_input=True)


def _linear_members(n: int, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, NUM_CLASSES)) for _ in range(n)]


def _images(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(1))


def _write_bundle(path: Path, seed: int, class_to_idx: dict[str, int], image_size: int = 16) -> Path:
    torch.manual_seed(seed)
    model = build_model(TINY, len(class_to_idx))
    state = {"format": "hpo-cls/1", "model": model.state_dict(), "epoch": 1, "best_val_acc": 0.5, "best_epoch": 1,
             "config": flatten_trial_config(TINY), "image_size": image_size, "class_to_idx": class_to_idx}
    return save_checkpoint(model_bundle(state), path)


def _write_image(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# EnsembleModel


def test_probabilities_are_the_mean_of_member_softmax():
    members = _linear_members(3)
    x = _images()
    expected = torch.stack([m(x).softmax(dim=1) for m in members]).mean(dim=0)
    ensemble = EnsembleModel(members).eval()
    with torch.no_grad():
        assert torch.allclose(ensemble.probabilities(x), expected, atol=1e-6)
        assert torch.allclose(ensemble(x).exp(), expected, atol=1e-6)  # forward: log-probabilities
        assert torch.allclose(ensemble.probabilities(x).sum(dim=1), torch.ones(len(x)))


def test_weighted_probabilities_are_the_normalised_weighted_mean():
    members = _linear_members(3)
    x = _images()
    scores = [0.2, 0.3, 0.5]
    expected = sum(s * m(x).softmax(dim=1) for s, m in zip(scores, members)) / sum(scores)
    ensemble = EnsembleModel(members, weights=[2.0, 3.0, 5.0])  # scale does not matter
    with torch.no_grad():
        assert torch.allclose(ensemble.probabilities(x), expected, atol=1e-6)
    assert ensemble.weights.tolist() == pytest.approx([0.2, 0.3, 0.5])


def test_tta_averages_each_member_over_image_and_horizontal_flip():
    members = _linear_members(2)
    x = _images()

    def flip_mean(m):
        return (m(x).softmax(dim=1) + m(torch.flip(x, dims=[3])).softmax(dim=1)) / 2

    expected = (flip_mean(members[0]) + flip_mean(members[1])) / 2
    with torch.no_grad():
        assert torch.allclose(EnsembleModel(members, tta=True).probabilities(x), expected, atol=1e-6)
        assert not torch.allclose(EnsembleModel(members).probabilities(x), expected, atol=1e-4)


@pytest.mark.parametrize("scores,expected", [
    (None, [1 / 3] * 3),
    ([0.0, 0.0, 0.0], [1 / 3] * 3),
    ([1.0, 1.0, 2.0], [0.25, 0.25, 0.5]),
])
def test_normalize_weights(scores, expected):
    assert normalize_weights(scores, 3) == pytest.approx(expected)


def test_normalize_weights_rejects_wrong_length_and_negative_scores():
    with pytest.raises(ValueError, match="2 weights for 3 members"):
        normalize_weights([1.0, 2.0], 3)
    with pytest.raises(ValueError, match=">= 0"):
        normalize_weights([1.0, -1.0], 2)


# ---------------------------------------------------------------------------------------------
# loading member bundles


class _Payload:
    """Unpickling this would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_load_member_refuses_a_pickle_payload(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    torch.save({"model": _Payload(marker), "class_to_idx": {"a": 0}, "config": {}, "image_size": 16}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_member(path)
    assert not marker.exists()


def test_load_member_reports_a_truncated_bundle(tmp_path):
    path = _write_bundle(tmp_path / "model.pt", 0, {"a": 0, "b": 1})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_member(path)


def test_load_ensemble_matches_the_members_and_checks_their_classes(tmp_path):
    classes = {"cat": 0, "dog": 1, "eel": 2}
    paths = [_write_bundle(tmp_path / f"m{i}" / "model.pt", i, classes) for i in range(2)]
    loaded = load_ensemble(paths, device="cpu")
    assert loaded.class_names == ["cat", "dog", "eel"] and loaded.image_size == 16
    x = torch.randn(2, 3, 16, 16)
    members = [load_member(p)[0] for p in paths]
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(dim=1) for m in members]).mean(dim=0)
        assert torch.allclose(loaded.model.probabilities(x), expected, atol=1e-6)
    other = _write_bundle(tmp_path / "other" / "model.pt", 2, {"cat": 0, "dog": 1, "fox": 2})
    with pytest.raises(CheckpointError, match="classes or image size differ"):
        load_ensemble([paths[0], other], device="cpu")


# ---------------------------------------------------------------------------------------------
# predictions and prediction.csv


def test_labels_are_class_folder_names_in_numeric_order(tmp_path):
    for c in range(12):
        (tmp_path / "train" / str(c)).mkdir(parents=True)
    names = sorted(class_mapping(tmp_path / "train"), key=class_mapping(tmp_path / "train").get)
    probabilities = torch.zeros(3, 12)
    probabilities[0, 10] = probabilities[1, 2] = probabilities[2, 11] = 1.0
    frame = prediction_frame(probabilities, names)
    assert frame["pred_label"].tolist() == ["10", "2", "11"]  # alphabetical order would give "2" for index 10
    assert frame["pred_index"].tolist() == [10, 2, 11]
    assert list(frame.columns[2:]) == [f"prob_{c}" for c in range(12)]


def test_prediction_csv_header_sorted_rows_and_stems(tmp_path):
    paths = [Path("x/b.png"), Path("x/a.jpg"), Path("x/10.jpeg"), Path("x/2.jpg")]
    out = write_prediction_csv(tmp_path / "sub" / "prediction.csv", paths, ["1", "0", "10", "2"])
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == PREDICTION_HEADER == ("image_name", "pred_label")
    assert rows[1:] == [["10", "10"], ["2", "2"], ["a", "0"], ["b", "1"]]


def test_prediction_csv_refuses_names_that_clash_without_extension(tmp_path):
    with pytest.raises(ValueError, match="share a name"):
        write_prediction_csv(tmp_path / "p.csv", [Path("a.jpg"), Path("a.png")], ["0", "1"])


def test_input_frame_needs_image_path_or_image_column():
    with pytest.raises(ValueError, match="image_path"):
        image_sources(pd.DataFrame({"file": ["a.jpg"]}))


def test_pyfunc_predicts_from_paths_and_bytes_like_the_ensemble(tmp_path):
    import mlflow

    classes = {"0": 0, "1": 1, "2": 2, "10": 3}
    paths = [_write_bundle(tmp_path / f"m{i}" / "model.pt", i, classes) for i in range(2)]
    images = [_write_image(tmp_path / "images" / f"{i}.png", i) for i in range(5)]
    model_dir = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        model_dir, python_model=str(write_pyfunc_code(tmp_path)),
        artifacts={"member_00": str(paths[0]), "member_01": str(paths[1])},
        model_config={"members": ["member_00", "member_01"], "weights": [0.25, 0.75], "tta": True},
        pip_requirements=["torch"],
    )
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    by_path = pyfunc.predict(pd.DataFrame({"image_path": [str(p) for p in images]}))
    by_bytes = pyfunc.predict(pd.DataFrame({"image": [p.read_bytes() for p in images]}), params={"batch_size": 2})

    loaded = load_ensemble(paths, [0.25, 0.75], tta=True, device="cpu")
    expected = prediction_frame(predict_probabilities(loaded.model, images, loaded.image_size), loaded.class_names)
    pd.testing.assert_frame_equal(by_path, expected)
    pd.testing.assert_frame_equal(by_bytes, expected, atol=1e-5)
    assert set(by_path["pred_label"]) <= set(classes)
    assert isinstance(pyfunc.unwrap_python_model(), EnsemblePyfunc)


def test_a_model_registered_before_the_layout_change_still_loads_and_predicts(tmp_path):
    """Models registered by hpo-cls 0.1 carry a script that imports ``hpo_cls.ensemble``."""
    import mlflow

    script = tmp_path / "ensemble_pyfunc.py"
    script.write_text("import mlflow\nfrom hpo_cls.ensemble import EnsemblePyfunc\n\n"
                      "mlflow.models.set_model(EnsemblePyfunc())\n")  # verbatim what 0.1 logged
    bundle = _write_bundle(tmp_path / "m0" / "model.pt", 0, {"0": 0, "1": 1})
    mlflow.pyfunc.save_model(tmp_path / "old-model", python_model=str(script),
                             artifacts={"member_00": str(bundle)}, model_config={"members": ["member_00"]},
                             pip_requirements=["torch"])
    images = [_write_image(tmp_path / "images" / f"{i}.png", i) for i in range(3)]
    frame = mlflow.pyfunc.load_model(str(tmp_path / "old-model")).predict(
        pd.DataFrame({"image_path": [str(p) for p in images]}))
    loaded = load_ensemble([bundle], device="cpu")
    expected = prediction_frame(predict_probabilities(loaded.model, images, loaded.image_size), loaded.class_names)
    pd.testing.assert_frame_equal(frame, expected)


def test_predict_probabilities_decodes_bytes_like_files(tmp_path):
    image = _write_image(tmp_path / "a.png", 3)
    model = EnsembleModel([build_model(TINY, 3)]).eval()
    from_file = predict_probabilities(model, [image], 16)
    from_bytes = predict_probabilities(model, [io.BytesIO(image.read_bytes())], 16)
    assert torch.equal(from_file, from_bytes)


def test_probabilities_are_averaged_in_float32_under_autocast():
    """On a GPU, predict runs the members under bf16 autocast; the weighted mean of their probabilities must
    still be float32 (an einsum under autocast would round every probability to bf16's 3 digits)."""
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(12, NUM_CLASSES)) for _ in range(3)]
    ensemble = EnsembleModel(members, [0.2, 0.3, 0.5]).eval()
    images = torch.randn(64, 3, 2, 2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast: the same rules
        per_member = ensemble.member_probabilities(images)
        averaged = ensemble.probabilities(images)
    assert averaged.dtype == torch.float32
    expected = torch.einsum("m,mbc->bc", ensemble.weights, per_member.float())
    assert torch.allclose(averaged, expected, atol=1e-6)


def test_prediction_on_the_cpu_is_float32_in_the_default_layout():
    # bf16 and channels_last are for CUDA only, whatever the members' config says (CPU autocast is slower).
    assert inference_settings(torch.device("cpu"), TrialConfig(amp=True, channels_last=True)) == (
        None, torch.contiguous_format)
