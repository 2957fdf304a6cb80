"""Predicting with an ensemble: images -> class probabilities -> ``prediction.csv``.

One code path for ``hpo-cls promote`` (in-memory ensemble) and ``hpo-cls predict`` (the registered
MLflow model, whose pyfunc calls the same functions), so both give the same rows for the same folder.
No Ray here: predicting needs torch, MLflow and the model only.
"""

from __future__ import annotations

import csv
import io
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from hpo_cls.data import image_name, list_test_images, scan_images, shown_name
from hpo_cls.data.loaders import ImageDataset
from hpo_cls.data.transforms import build_eval_transform
from hpo_cls.errors import CheckpointError, DataError
from hpo_cls.outputs import PREDICTION_CSV, atomic_write, check_output_file
from hpo_cls.spec import TrialConfig
from hpo_cls.train.engine import resolve_precision, use_channels_last

__all__ = [
    "PREDICTION_HEADER",
    "PROBABILITY_PREFIX",
    "image_sources",
    "inference_settings",
    "predict_probabilities",
    "prediction_frame",
    "write_prediction_csv",
    "check_prediction_names",
    "PredictOutcome",
    "predict_folder",
]

PREDICTION_HEADER = ("image_name", "pred_label")
PROBABILITY_PREFIX = "prob_"
DEFAULT_BATCH_SIZE = 64


def image_sources(frame: pd.DataFrame) -> list[Path | io.BytesIO]:
    """The images of a pyfunc input frame: column ``image_path`` (file paths) or ``image`` (encoded bytes)."""
    if "image_path" in frame.columns and frame["image_path"].notna().all():
        return [Path(p) for p in frame["image_path"]]
    if "image" in frame.columns and frame["image"].notna().all():
        return [io.BytesIO(bytes(b)) for b in frame["image"]]
    raise ValueError("input needs a column 'image_path' (paths to image files) or 'image' (encoded image bytes), "
                     f"with a value in every row; got columns {list(frame.columns)}")


def inference_settings(device: torch.device, cfg: TrialConfig) -> tuple[torch.dtype | None, torch.memory_format]:
    """(autocast dtype or None, memory format) for predicting on ``device`` with members trained with ``cfg``:
    on CUDA their training precision (bf16 autocast; fp16 on cards without bf16) and channels_last, as
    their validation ran; fp32 in the default layout elsewhere."""
    cuda = device.type == "cuda"
    precision = resolve_precision(device.type, cfg.amp, cuda and torch.cuda.is_bf16_supported())
    layout = torch.channels_last if use_channels_last(device.type, cfg.channels_last) else torch.contiguous_format
    return precision.autocast_dtype, layout


@torch.inference_mode()
def predict_probabilities(model: nn.Module, sources: Sequence[Path | io.BytesIO], image_size: int,
                          batch_size: int = DEFAULT_BATCH_SIZE, device: torch.device | None = None, *,
                          cfg: TrialConfig | None = None,
                          on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Class probabilities ``[N, C]`` of ``model`` (an :class:`~hpo_cls.ensemble.EnsembleModel`) for the
    images, in the given order; decoded and transformed exactly like the validation images of the
    members' config ``cfg`` (resize mode, normalisation; None: the defaults). ``on_batch(images done so
    far)`` follows each batch."""
    if not sources:
        raise DataError("no images to predict")
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    device = device or next(model.parameters()).device
    dataset = _NamedImageDataset([(source, i) for i, source in enumerate(sources)],
                                 build_eval_transform(image_size, cfg))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    autocast_dtype, memory_format = inference_settings(device, cfg or TrialConfig())
    model.eval()
    batches = []
    for images, _ in loader:
        images = images.to(device, memory_format=memory_format)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            batches.append(model.probabilities(images).float().cpu())
        if on_batch is not None:
            on_batch(sum(len(b) for b in batches))
    return torch.cat(batches)


class _NamedImageDataset(ImageDataset):
    """An image PIL refuses as a decompression bomb (far more pixels than its file suggests) is a DataError
    naming the file, not a traceback."""

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except Image.DecompressionBombError as exc:
            path = self.samples[index][0]
            raise DataError(f"{shown_name(path)}: refused to decode ({exc}); remove it from the folder") from None


def prediction_frame(probabilities: torch.Tensor, class_names: Sequence[str]) -> pd.DataFrame:
    """``pred_label`` (class folder name), ``pred_index`` and one ``prob_<class>`` column per class."""
    index = probabilities.argmax(dim=1)
    frame = pd.DataFrame({
        "pred_label": [class_names[i] for i in index.tolist()],
        "pred_index": index.numpy().astype("int64"),
    })
    probs = pd.DataFrame(probabilities.numpy(), columns=[f"{PROBABILITY_PREFIX}{c}" for c in class_names])
    return pd.concat([frame, probs], axis=1)


def check_prediction_names(image_paths: Sequence[Path]) -> None:
    """A DataError if two images share a name without extension (their prediction.csv rows would clash)."""
    names = sorted(image_name(p) for p in image_paths)
    clashes = sorted({a for a, b in zip(names, names[1:]) if a == b})
    if clashes:
        raise DataError(f"images share a name without extension, so prediction.csv would be ambiguous: "
                        f"{', '.join(clashes[:5])}")


def write_prediction_csv(path: Path, image_paths: Sequence[Path], labels: Sequence[str]) -> Path:
    """``image_name,pred_label`` rows (:func:`image_name`), sorted by image name."""
    if len(image_paths) != len(labels):
        raise ValueError(f"{len(image_paths)} images but {len(labels)} labels")
    check_prediction_names(image_paths)
    rows = sorted(zip(map(image_name, image_paths), labels))
    path = Path(path)
    with atomic_write(path, newline="") as f:  # a failed write leaves the old file whole
        writer = csv.writer(f)
        writer.writerow(PREDICTION_HEADER)
        writer.writerows(rows)
    return path


def _local_folder(model_uri: str) -> Path | None:
    """The folder a model URI names on this machine (a path, a ``file:`` URI); None for a store's URI."""
    parsed = urllib.parse.urlparse(model_uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(model_uri) if not parsed.scheme else None


def _require_mlmodel(model_uri: str, folder: Path) -> None:
    if not (folder / "MLmodel").is_file():
        found = "no such folder" if not folder.exists() else "not an MLflow model (no MLmodel file)"
        raise CheckpointError(f"{model_uri}: {found}; pass a registered model (models:/NAME@champion) or the "
                              "folder of one")


def _load_verified(model_uri: str, tracking_uri: str | None):
    """The pyfunc model, loaded from a local copy whose files match the checksums recorded at registration
    (loading a model runs its code: a tampered copy is refused before any of it runs). A folder that is no
    model is refused before anything is copied (a store's URI: once downloaded); the copy is removed on
    every path."""
    import shutil
    import tempfile

    import mlflow
    from mlflow.tracking import MlflowClient

    from hpo_cls.console import warn
    from hpo_cls.promote.integrity import registered_checksums, verify_model_files

    local = _local_folder(model_uri)
    if local is not None:
        _require_mlmodel(model_uri, local)
    expected = registered_checksums(model_uri, MlflowClient(tracking_uri))
    tmp = tempfile.mkdtemp(prefix="hpo-cls-model-")
    try:
        copy = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        _require_mlmodel(model_uri, copy)
        verify_model_files(model_uri, copy, expected, warn)
        return mlflow.pyfunc.load_model(str(copy))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_input(paths: Sequence[Path]) -> pd.DataFrame:
    """The pyfunc's input for ``paths``: their paths, or, where one is not UTF-8 (no string column holds it:
    pandas and the model's signature refuse it), the files' bytes, checked first so a broken one is named."""
    if all(shown_name(p) == str(p) for p in paths):
        return pd.DataFrame({"image_path": [str(p) for p in paths]})
    for path, reason in scan_images(paths, workers=1):
        raise DataError(f"{shown_name(path)}: cannot decode image ({reason})")
    return pd.DataFrame({"image": [Path(p).read_bytes() for p in paths]})


@dataclass(frozen=True)
class PredictOutcome:
    path: Path
    num_images: int
    seconds: float
    label_counts: dict[str, int]

    @property
    def images_per_s(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("inf")


def predict_folder(model_uri: str, folder: Path, out: Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                   tracking_uri: str | None = None, force: bool = False,
                   on_progress: Callable[[int, int], None] | None = None) -> PredictOutcome:
    """Load an MLflow model (e.g. ``models:/name@champion``), predict every image of ``folder``, write ``out``.
    The model sees one batch of paths at a time, so ``on_progress(images done, total)`` follows them."""
    import mlflow

    paths = list_test_images(folder)
    if not paths:
        raise DataError(f"{folder}: no images")
    check_output_file(out, PREDICTION_CSV, force=force)  # before the model loads and predicts, not after
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    model = _load_verified(model_uri, tracking_uri)
    start = time.perf_counter()
    frames = []
    for first in range(0, len(paths), batch_size):
        chunk = paths[first : first + batch_size]
        frames.append(model.predict(_model_input(chunk), params={"batch_size": batch_size}))
        if on_progress is not None:
            on_progress(first + len(chunk), len(paths))
    frame = pd.concat(frames, ignore_index=True)
    seconds = time.perf_counter() - start
    labels = [str(label) for label in frame["pred_label"]]
    write_prediction_csv(out, paths, labels)
    counts = pd.Series(labels).value_counts().to_dict()
    return PredictOutcome(Path(out), len(paths), seconds, {str(k): int(v) for k, v in counts.items()})
