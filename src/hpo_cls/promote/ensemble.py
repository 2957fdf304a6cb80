"""Ensembles of retrained members: :class:`EnsembleModel` averages their softmax probabilities (optionally
weighted, optionally with horizontal-flip TTA); :class:`EnsemblePyfunc` ships one as an MLflow model.

Members are stored as model bundles (:func:`hpo_cls.checkpoint.model_bundle`) and always loaded with
``weights_only=True``; class mapping, image size and config travel inside each bundle, and the eval
transform (resize mode, normalisation) is built from that config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import mlflow.pyfunc
import pandas as pd
import torch
from torch import nn

from hpo_cls.errors import CheckpointError, SpecError
from hpo_cls.models.classifier import build_model
from hpo_cls.promote.predict import (
    DEFAULT_BATCH_SIZE,
    image_sources,
    predict_probabilities,
    prediction_frame,
)
from hpo_cls.data.transforms import PREPROCESSING_FIELDS
from hpo_cls.spec import TrialConfig, trial_config_from_dict
from hpo_cls.train.checkpoint import load_checkpoint
from hpo_cls.train.engine import EvalResult, evaluate, use_channels_last

__all__ = [
    "EnsembleModel",
    "LoadedEnsemble",
    "normalize_weights",
    "load_member",
    "load_ensemble",
    "evaluate_ensemble",
    "EnsemblePyfunc",
    "write_pyfunc_code",
]

# The pyfunc is logged "from code" (this script, not a pickled object), so loading the registered model
# unpickles nothing: the code is hpo_cls's own and the member weights load with weights_only=True.
_PYFUNC_CODE = """\
import mlflow
from hpo_cls.promote.ensemble import EnsemblePyfunc

mlflow.models.set_model(EnsemblePyfunc())
"""


def normalize_weights(scores: Sequence[float] | None, count: int) -> list[float]:
    """Weights proportional to ``scores`` summing to 1; uniform without scores or when all are 0."""
    if scores is None:
        return [1.0 / count] * count
    if len(scores) != count:
        raise ValueError(f"{len(scores)} weights for {count} members")
    if any(s < 0 for s in scores):
        raise ValueError(f"weights must be >= 0, got {list(scores)}")
    total = float(sum(scores))
    if total <= 0:
        return [1.0 / count] * count
    return [float(s) / total for s in scores]


class EnsembleModel(nn.Module):
    """Weighted mean of the members' softmax probabilities.

    With ``tta`` a member's probabilities are the mean over the image and its horizontal flip.
    ``forward`` returns log-probabilities, so the ensemble fits wherever logits are expected
    (argmax, cross-entropy, :func:`hpo_cls.engine.evaluate`); :meth:`probabilities` gives them directly.
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None, tta: bool = False):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(normalize_weights(weights, len(members)), dtype=torch.float32))
        self.tta = tta

    def member_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``[members, batch, classes]`` softmax probabilities (flip-averaged with ``tta``)."""
        out = []
        for member in self.members:
            probs = member(images).float().softmax(dim=1)
            if self.tta:
                probs = (probs + member(images.flip(-1)).float().softmax(dim=1)) / 2
            out.append(probs)
        return torch.stack(out)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch, classes]``: the weighted mean of :meth:`member_probabilities`, in float32 also under
        autocast (which would run the einsum in bf16 and round every probability to 3 digits)."""
        members = self.member_probabilities(images)
        with torch.autocast(images.device.type, enabled=False):
            return torch.einsum("m,mbc->bc", self.weights.to(images.device), members.float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Clamped so a class every member rules out costs a large, finite loss instead of inf.
        return self.probabilities(images).clamp_min(1e-12).log()


@dataclass
class LoadedEnsemble:
    """An ensemble with what predicting needs besides weights: class mapping and input size."""

    model: EnsembleModel
    class_to_idx: dict[str, int]
    image_size: int
    configs: list[dict]
    eval_config: TrialConfig = TrialConfig()  # the members' shared eval preprocessing (resize, mean, std)

    @property
    def class_names(self) -> list[str]:
        """Original class folder names in index order (``class_names[i]`` is predicted index ``i``)."""
        return sorted(self.class_to_idx, key=self.class_to_idx.get)

    @property
    def device(self) -> torch.device:
        return self.model.weights.device


def load_member(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a classifier from a model bundle (``weights_only`` load); returns ``(model, bundle)``."""
    bundle = load_checkpoint(path, map_location=map_location)
    for key in ("config", "image_size"):
        if key not in bundle:
            raise CheckpointError(f"{path}: not a model bundle (no {key})")
    try:
        cfg = trial_config_from_dict(bundle["config"])
    except SpecError as exc:
        raise CheckpointError(f"{path}: invalid config in bundle: {'; '.join(exc.problems)}") from None
    # The bundle's weights replace everything; never fetch ImageNet weights just to overwrite them.
    model = build_model(dataclasses.replace(cfg, pretrained=False), len(bundle["class_to_idx"]))
    try:
        model.load_state_dict(bundle["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the bundle's config: {str(exc).splitlines()[0]}") from None
    return model.eval(), bundle


def load_ensemble(paths: Sequence[str | Path], weights: Sequence[float] | None = None, tta: bool = False,
                  device: torch.device | str | None = None) -> LoadedEnsemble:
    """An ensemble of the model bundles at ``paths``; they must agree on classes and image size."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    members, configs = [], []
    class_to_idx = image_size = eval_config = None
    for path in paths:
        model, bundle = load_member(path)
        cfg = trial_config_from_dict(bundle["config"])  # keys a bundle predates take their defaults
        if class_to_idx is None:
            class_to_idx, image_size, eval_config = dict(bundle["class_to_idx"]), int(bundle["image_size"]), cfg
        elif bundle["class_to_idx"] != class_to_idx or int(bundle["image_size"]) != image_size:
            raise CheckpointError(f"{path}: classes or image size differ from the first member's ({paths[0]})")
        else:
            differ = [k for k in PREPROCESSING_FIELDS if getattr(cfg, k) != getattr(eval_config, k)]
            if differ:
                raise CheckpointError(f"{path}: preprocessing ({', '.join(differ)}) differs from the first "
                                      f"member's ({paths[0]})")
        members.append(model)
        configs.append(bundle["config"])
    if not members:
        raise ValueError("an ensemble needs at least one member")
    model = EnsembleModel(members, weights, tta).to(device).eval()
    if use_channels_last(device.type, eval_config.channels_last):  # as the members trained on a GPU
        model = model.to(memory_format=torch.channels_last)
    return LoadedEnsemble(model, class_to_idx, image_size, configs, eval_config)


def evaluate_ensemble(ensemble: EnsembleModel, loader, num_classes: int) -> tuple[list[EvalResult], EvalResult]:
    """Each member alone (with the ensemble's TTA) and the whole ensemble over a labelled loader."""
    device = ensemble.weights.device
    criterion = nn.CrossEntropyLoss()
    members = [evaluate(EnsembleModel([m], tta=ensemble.tta), loader, criterion, device, num_classes)
               for m in ensemble.members]
    return members, evaluate(ensemble, loader, criterion, device, num_classes)


class EnsemblePyfunc(mlflow.pyfunc.PythonModel):
    """The registered model: a DataFrame with ``image_path`` (or ``image`` bytes) in, and ``pred_label``,
    ``pred_index`` and ``prob_<class>`` columns out. Member bundles are the model's artifacts; their
    order, weights and TTA are in ``model_config``."""

    def load_context(self, context) -> None:
        config = context.model_config or {}
        keys = config.get("members") or sorted(context.artifacts)
        self.ensemble = load_ensemble([context.artifacts[k] for k in keys], config.get("weights"),
                                      bool(config.get("tta", False)))
        self.batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        given = (params or {}).get("batch_size")
        batch_size = self.batch_size if given is None else int(given)  # 0 is refused, not taken as the default
        probabilities = predict_probabilities(self.ensemble.model, image_sources(model_input),
                                              self.ensemble.image_size, batch_size, cfg=self.ensemble.eval_config)
        return prediction_frame(probabilities, self.ensemble.class_names)


def write_pyfunc_code(directory: str | Path) -> Path:
    """Write the script that ``mlflow.pyfunc.log_model(python_model=<path>)`` logs for :class:`EnsemblePyfunc`."""
    path = Path(directory) / "ensemble_pyfunc.py"
    path.write_text(_PYFUNC_CODE)
    return path
