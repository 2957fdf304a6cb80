"""Registering a promoted ensemble in the MLflow Model Registry.

The ensemble is logged as one pyfunc model in the promote run, registered with tags and a description
that name its members, and the alias ``champion`` is pointed at the new version.
"""

from __future__ import annotations

import json
import re
import tempfile
from typing import Sequence

from mlflow.tracking import MlflowClient

from hpo_cls.console import format_cell
from hpo_cls.promote.integrity import CHECKSUM_TAG, model_checksums
from hpo_cls.promote.retrain import MemberPlan, MemberResult
from hpo_cls.promote.select import SweepRecord
from hpo_cls.spec import flatten_trial_config
from hpo_cls.tracking.runs import SWEEP_ID_TAG, SWEEP_NAME_TAG

__all__ = ["CHAMPION_ALIAS", "HELD_OUT_TAG", "registered_model_name", "register_ensemble"]

CHAMPION_ALIAS = "champion"
HELD_OUT_TAG = "hpo_cls.val_held_out"


def registered_model_name(name: str) -> str:
    """A registry-safe name: letters, digits, '-', '_' and '.'; anything else becomes '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return cleaned or "ensemble"


def _model_signature(class_names: Sequence[str]):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from hpo_cls.promote.predict import DEFAULT_BATCH_SIZE, PROBABILITY_PREFIX

    inputs = Schema([ColSpec("string", "image_path", required=False), ColSpec("binary", "image", required=False)])
    outputs = Schema([ColSpec("string", "pred_label"), ColSpec("long", "pred_index"),
                      *[ColSpec("float", f"{PROBABILITY_PREFIX}{c}") for c in class_names]])
    return ModelSignature(inputs, outputs, ParamSchema([ParamSpec("batch_size", "long", DEFAULT_BATCH_SIZE)]))


def _requirements() -> list[str]:
    from importlib import metadata

    pins = []
    for package in ("hpo-cls", "torch", "torchvision", "mlflow", "pandas", "pillow", "pyyaml"):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def register_ensemble(tracking_uri: str, promote_run_id: str, name: str, sweeps: Sequence[SweepRecord],
                      plans: Sequence[MemberPlan], results: Sequence[MemberResult], weights: list[float],
                      class_names: list[str], val_report: dict, param_names: Sequence[str], *,
                      tta: bool, weighted: bool, train_on_val: bool, extra_tags: dict[str, str] | None = None):
    """Register the ensemble as model ``name`` with its version tags and description and point
    ``champion`` at the new version; returns ``(model info, model version)``. ``sweeps``: those the
    members come from, the first one's id and name tag the version. The tags record the members, their
    weights and the ensemble's score on ``val_report``'s split (``hpo_cls.val_heldout_acc`` when the
    selection left half of val unseen), plus ``extra_tags``."""
    tags = {**_version_tags(sweeps, promote_run_id, plans, weights, val_report, tta=tta, train_on_val=train_on_val),
            **(extra_tags or {})}
    description = _description(sweeps, plans, weights, val_report, param_names, tta=tta, weighted=weighted,
                               train_on_val=train_on_val)
    return _register(tracking_uri, promote_run_id, name, results, plans, weights, tta, class_names, tags, description)


def _register(tracking_uri: str, promote_run_id: str, name: str, results: Sequence[MemberResult],
              plans: Sequence[MemberPlan], weights: list[float], tta: bool, class_names: list[str],
              tags: dict[str, str], description: str):
    """Log the ensemble as one pyfunc model in the promote run, register it, point ``champion`` at it."""
    import warnings

    import mlflow

    from hpo_cls.promote.ensemble import write_pyfunc_code

    keys = [f"member_{i:02d}" for i in range(len(results))]
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=promote_run_id), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # An input example would be a path on this machine; the signature documents the input instead.
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="ensemble",
            python_model=str(write_pyfunc_code(tmp)),
            artifacts={k: r.bundle_path for k, r in zip(keys, results)},
            model_config={"members": keys, "weights": weights, "tta": tta,
                          "member_keys": [p.key for p in plans]},
            signature=_model_signature(class_names),
            pip_requirements=_requirements(),
        )
    client = MlflowClient(tracking_uri)
    tags = {**tags, CHECKSUM_TAG: json.dumps(_logged_checksums(info.model_uri), sort_keys=True)}
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=description)
    # The model's own page: what it is and which version to read; each version's page has its members,
    # weights, scores and source sweeps.
    client.update_registered_model(name, description=f"Image-classifier ensembles registered by `hpo-cls promote`. "
                                   f"Version {version.version} (@{CHAMPION_ALIAS}): {description.splitlines()[0]} "
                                   "Each version's description lists its members, weights and scores.")
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return info, version


def champion_version(tracking_uri: str, name: str) -> str | None:
    """The version ``@champion`` of model ``name`` points at now (None: no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient(tracking_uri).get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def restore_champion(tracking_uri: str, name: str, previous: str | None) -> None:
    """Point ``@champion`` back at version ``previous`` (None: remove the alias), after a failed promote."""
    client = MlflowClient(tracking_uri)
    if previous is None:
        client.delete_registered_model_alias(name, CHAMPION_ALIAS)
    else:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, previous)


def _logged_checksums(model_uri: str) -> dict[str, str]:
    """SHA-256 of every file of the model as logged (read back from the store, exactly what predict gets)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        return model_checksums(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))


def _version_tags(sweeps: Sequence[SweepRecord], promote_run_id: str, plans: Sequence[MemberPlan],
                  weights: list[float], val_report: dict, *, tta: bool, train_on_val: bool) -> dict[str, str]:
    tags = {
        SWEEP_ID_TAG: sweeps[0].sweep_id,
        SWEEP_NAME_TAG: sweeps[0].name,
        "hpo_cls.sweep_ids": ",".join(s.sweep_id for s in sweeps),
        "hpo_cls.promote_run_id": promote_run_id,
        "hpo_cls.members": ",".join(p.key for p in plans),
        "hpo_cls.source_run_ids": ",".join(dict.fromkeys(p.source.run_id for p in plans)),
        "hpo_cls.weights": json.dumps([round(w, 6) for w in weights]),
        "hpo_cls.tta": str(tta).lower(),
        HELD_OUT_TAG: str(not train_on_val).lower(),
        f"hpo_cls.{val_report['split']}_acc": f"{val_report['ensemble']['accuracy']:.6f}",
        f"hpo_cls.{val_report['split']}_loss": f"{val_report['ensemble']['loss']:.6f}",
    }
    for p in plans:
        tags[f"hpo_cls.member.{p.key}.source_run_id"] = p.source.run_id
        tags[f"hpo_cls.member.{p.key}.config"] = json.dumps(flatten_trial_config(p.config), sort_keys=True)
    return tags


def _description(sweeps: Sequence[SweepRecord], plans: Sequence[MemberPlan], weights: list[float],
                 val_report: dict, param_names: Sequence[str], *, tta: bool, weighted: bool,
                 train_on_val: bool) -> str:
    held = "" if not train_on_val else " (not held out: members were trained on train+val)"
    how = ("flip TTA, " if tta else "") + ("weighted by val score" if weighted else "equal weights")
    where = ", ".join(f"`{s.sweep_id}`" for s in sweeps)
    lines = [f"Ensemble of {len(plans)} member(s) retrained from sweep{'s' if len(sweeps) > 1 else ''} {where} "
             f"({how}).",
             f"Validation accuracy ({val_report['split']}) {val_report['ensemble']['accuracy']:.4f}{held}, "
             f"{val_report['gain_over_best_member']:+.4f} over the best member.", "",
             f"| member | source run | weight | sweep {plans[0].source.rule.best_metric} | " + " | ".join(param_names)
             + " |",
             "|---" * (4 + len(param_names)) + "|"]
    for p, w in zip(plans, weights):
        values = [format_cell(getattr(p.config, n)) for n in param_names]
        lines.append(f"| {p.key} | {p.source.run_id} | {w:.3f} | {p.source.score:.4f} | " + " | ".join(values) + " |")
    return "\n".join(lines)
