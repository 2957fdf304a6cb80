"""The MLflow runs of hpo-cls: the tags that identify them, and the ops that find, open and close them.

A sweep has one parent run and one nested child run per trial; runs are found again by tags (sweep id,
trial id), so a retried trial or a resumed sweep reuses its run. Every op here is a function
``(client, run_id)`` for :meth:`hpo_cls.tracking.writer.MlflowWriter.call`.
"""

from __future__ import annotations

import json
import tempfile
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from hpo_cls.spec import Constraint, Objective, TrialConfig, format_value
from hpo_cls.train.checkpoint import EVALUATION_FILE, MODEL_FILE
from hpo_cls.train.val_predictions import PREDICTIONS_FILE

if TYPE_CHECKING:  # mlflow is imported where it is used: printing a URI should not cost a second
    from mlflow.tracking import MlflowClient

    from hpo_cls.tracking.writer import MlflowWriter

__all__ = [
    "SWEEP_ID_TAG", "SWEEP_NAME_TAG", "TRIAL_ID_TAG", "STATUS_TAG", "ERROR_TAG", "FINALIZED_TAG", "ROLE_TAG",
    "NODE_TAG", "PARENT_TAG", "BASELINE_TAG", "EARLY_STOPPED_MARK", "EXPERIMENT_KIND_TAG", "MODEL_TRAINING",
    "param_value", "find_or_create_experiment", "find_run", "open_sweep_run",
    "trial_run_name", "open_trial_run", "end_run_op", "finalize_trial_op", "typed_params",
    "objectives_param", "objectives_from_param", "constraints_param", "PREDICTIONS_ARTIFACT",
]

SWEEP_ID_TAG = "hpo_cls.sweep_id"
SWEEP_NAME_TAG = "hpo_cls.sweep.tuner"
TRIAL_ID_TAG = "hpo_cls.trial_id"
STATUS_TAG = "hpo_cls.status"
ERROR_TAG = "hpo_cls.error"
PREDICTIONS_ARTIFACT_DIR = "predictions"
PREDICTIONS_ARTIFACT = f"{PREDICTIONS_ARTIFACT_DIR}/{PREDICTIONS_FILE}"  # a finished trial's val predictions
FINALIZED_TAG = "hpo_cls.finalized"  # the run's checkpoint and reports are logged, its status final
ROLE_TAG = "hpo_cls.role"
NODE_TAG = "hpo_cls.node_id"
PARENT_TAG = "mlflow.parentRunId"
BASELINE_TAG = "hpo_cls.baseline"  # "true" on trial 0's run: the spec's fixed configuration
EARLY_STOPPED_MARK = "(stopped early)"  # appended to the run name of a trial the scheduler stopped
# The experiment tag MLflow 3's "experiment type" selector writes (docs/mlflow.md: what its 3.17 UI reads).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


def param_value(value: Any) -> str:
    """MLflow params are strings; numbers stay parseable so the UI plots them on numeric axes."""
    return str(format_value(value))


def typed_params(params: Mapping[str, str]) -> dict[str, Any]:
    """Logged param strings -> typed values of the TrialConfig fields (others are dropped); the one reader of
    what :func:`param_value` wrote.

    Types come from the TrialConfig annotations, not from the text, so a string field holding
    ``"1e-3"`` or ``"on"`` stays a string; lists (``"[1024, 512]"``) are read as YAML. Text that is not
    of its field's type is kept as it is, for the config's checker to name.
    """
    hints = typing.get_type_hints(TrialConfig)
    typed: dict[str, Any] = {}
    for name, text in params.items():
        if name not in hints:
            continue
        tp, optional = _type_of(hints[name])
        if optional and text == "None":
            typed[name] = None
        elif tp is bool:
            typed[name] = {"true": True, "false": False}.get(text.lower(), text)
        elif tp is int:
            typed[name] = int(float(text)) if _is_number(text) and float(text).is_integer() else text
        elif tp is float:
            typed[name] = float(text) if _is_number(text) else text
        elif typing.get_origin(tp) is tuple:
            try:
                typed[name] = yaml.safe_load(text)
            except yaml.YAMLError:
                typed[name] = text
        else:
            typed[name] = text
    return typed


def _type_of(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of a field annotation, unwrapping ``X | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def objectives_param(objectives: tuple[Objective, ...]) -> str:
    """The parent run's ``objectives`` param: ``val_acc:max,params_m:min``."""
    return ",".join(f"{o.metric}:{o.mode}" for o in objectives)


def objectives_from_param(text: str | None) -> tuple[Objective, ...]:
    """The objectives a parent run records (empty for sweeps made before they were recorded)."""
    pairs = [item.split(":", 1) for item in (text or "").split(",") if ":" in item]
    return tuple(Objective(metric, mode) for metric, mode in pairs)


def constraints_param(constraints: tuple[Constraint, ...]) -> str:
    """The parent run's ``constraints`` param: ``params_m<=15,latency_ms>=0.1`` (``none``)."""
    bounds = [f"{c.metric}{op}{bound:g}" for c in constraints
              for op, bound in (("<=", c.max), (">=", c.min)) if bound is not None]
    return ",".join(bounds) or "none"


def find_or_create_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:  # a model-training experiment from the start, not one MLflow asks the type of
        return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str | None:
    """Id of the oldest run in the experiment carrying all ``tags``, or None."""
    filters = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=filters, order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0].info.run_id if runs else None


def open_sweep_run(writer: MlflowWriter, sweep_id: str, **kwargs) -> None:
    """Bind the writer key ``"parent"`` to the sweep's parent run (found again by its sweep id)."""
    writer.open_run("parent", {SWEEP_ID_TAG: sweep_id, ROLE_TAG: "sweep"}, run_name=sweep_id, **kwargs)


def trial_run_name(trial_id: str, params: dict[str, Any]) -> str:
    """``<trial id> <backbone> <attention>``: what tells trials apart at a glance in the UI's runs table."""
    return " ".join(str(part) for part in (trial_id, params.get("backbone"), params.get("attention")) if part)


def open_trial_run(writer: MlflowWriter, sweep_id: str, trial_id: str, params: dict[str, Any],
                   resume: bool = True) -> None:
    """Bind the writer key ``trial_id`` to the trial's run, nested under the sweep's parent run."""
    writer.open_run(trial_id, {TRIAL_ID_TAG: trial_id, SWEEP_ID_TAG: sweep_id},
                    run_name=trial_run_name(trial_id, params), tags={ROLE_TAG: "trial"}, params=params,
                    parent_key="parent", resume=resume)


def end_run_op(status: str, error: str | None = None, extra_tags: dict[str, str] | None = None):
    """An op for :meth:`MlflowWriter.call` that tags the final status and closes the run."""

    def op(client: MlflowClient, run_id: str | None) -> None:
        from mlflow.entities import RunTag

        tags = {STATUS_TAG: status, **(extra_tags or {})}
        if error:
            tags[ERROR_TAG] = error[:4000]
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if status == "early_stopped":  # MLflow shows it FINISHED, like a completed run: say it in the name
            name = client.get_run(run_id).info.run_name or ""
            if EARLY_STOPPED_MARK not in name:
                epochs = tags.get("hpo_cls.epochs_run")
                client.update_run(run_id, name=f"{name} {EARLY_STOPPED_MARK}" + (f" at epoch {epochs}" if epochs else ""))
        client.set_terminated(run_id, status="FAILED" if status == "failed" else "FINISHED")

    return op


def finalize_trial_op(status: str, reason: str | None, checkpoint_dir: str | None,
                      extra_tags: dict[str, str] | None = None, *, log_model: bool = True):
    """An :meth:`MlflowWriter.call` op that closes a trial's run with its status and logs its best
    checkpoint's model bundle (for ``promote``; unless ``log_model`` is False: see
    :mod:`hpo_cls.tracking.checkpoints`), confusion matrix and per-class report, and that epoch's
    validation predictions under ``predictions/`` (apart from ``checkpoint/``: every finished trial keeps
    them, whichever checkpoints are kept). Idempotent: a run already finalized is left alone."""
    end_run = end_run_op(status, reason, {FINALIZED_TAG: "1", **(extra_tags or {})})

    def op(client, run_id):
        tags = client.get_run(run_id).data.tags
        if tags.get(FINALIZED_TAG) == "1":
            return
        if checkpoint_dir and Path(checkpoint_dir).is_dir():
            predictions_file = Path(checkpoint_dir, PREDICTIONS_FILE)
            if predictions_file.is_file():
                client.log_artifact(run_id, str(predictions_file), PREDICTIONS_ARTIFACT_DIR)
            if log_model:
                _log_model_file(client, run_id, Path(checkpoint_dir))
            evaluation_file = Path(checkpoint_dir, EVALUATION_FILE)
            if evaluation_file.is_file():
                client.log_artifact(run_id, str(evaluation_file), "checkpoint")
                if status == "completed":
                    _log_evaluation_report(client, run_id, json.loads(evaluation_file.read_text()))
        end_run(client, run_id)

    return op


def _log_model_file(client, run_id: str, checkpoint_dir: Path) -> None:
    """The checkpoint's model bundle as ``checkpoint/model.pt``: the trial's own file, logged as it is."""
    with tempfile.TemporaryDirectory() as tmp:
        model_file = checkpoint_dir / MODEL_FILE
        if not model_file.is_file():  # a one-file checkpoint (a sweep begun before they were split)
            from hpo_cls.train.checkpoint import load_checkpoint, model_bundle, save_checkpoint

            model_file = save_checkpoint(model_bundle(load_checkpoint(checkpoint_dir, mmap=True)), Path(tmp, MODEL_FILE))
        client.log_artifact(run_id, str(model_file), "checkpoint")


def _log_evaluation_report(client, run_id: str, evaluation: dict) -> None:
    """The per-class report (CSV) and confusion matrix (PNG) of the checkpoint's epoch, under ``evaluation/``."""
    # Imported here, in the writer's thread: matplotlib takes a second to import the first time, which
    # Tune's loop (where the op is made, as a trial ends) would otherwise wait for.
    from hpo_cls.tracking.plots import confusion_matrix_figure, per_class_frame

    with tempfile.TemporaryDirectory() as tmp:
        per_class_frame(evaluation["per_class"]).to_csv(Path(tmp, "per_class_report.csv"), index=False)
        names = [row["class"] for row in evaluation["per_class"]]
        figure = confusion_matrix_figure(evaluation["confusion"], names)
        figure.savefig(Path(tmp, "confusion_matrix.png"), dpi=110)
        client.log_artifacts(run_id, tmp, "evaluation")
