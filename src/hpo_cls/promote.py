"""``hpo-cls promote``: the sweep's best runs (read from MLflow) -> final retrains (Ray tasks) -> ensemble
-> evaluation -> registered MLflow model with alias ``champion`` -> ``prediction.csv``.

This module only runs the steps in order and records them in MLflow; each step lives in its own
module: :mod:`hpo_cls.selection`, :mod:`hpo_cls.retrain`, :mod:`hpo_cls.evaluation_report` and
:mod:`hpo_cls.registry`.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import yaml
from mlflow.tracking import MlflowClient

from hpo_cls.config import SpecError, TrackingConfig, TrialConfig, flatten_trial_config, parse_overrides, parse_spec
from hpo_cls.registry import CHAMPION_ALIAS, HELD_OUT_TAG, register_ensemble, registered_model_name
from hpo_cls.retrain import MemberResult, plan_members, retrain_members
from hpo_cls.selection import PromoteError, SweepRecord, find_sweep, format_selection, load_candidates, select_top_runs
from hpo_cls.tracking import ROLE_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG, TRIAL_ID_TAG, warn

__all__ = ["PromoteError", "PromoteOptions", "PromoteOutcome", "run_promote"]

PROMOTE_ID_TAG = "hpo_cls.promote_id"
MEMBER_TAG = "hpo_cls.member"
SOURCE_RUN_TAG = "hpo_cls.source_run_id"
_SET_SECTIONS = ("data", "resources", "fixed")
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass
class PromoteOptions:
    top: int
    sweep: str | None = None
    experiment: str = TrackingConfig().experiment
    tracking_uri: str = TrackingConfig().uri
    epochs: int | None = None
    seeds: int = 1
    train_on_val: bool = False
    tta: bool = False
    weighted: bool = False
    include_early_stopped: bool = False
    dedupe: bool = False
    predict: Path | None = None
    out: Path = Path("prediction.csv")
    register_as: str | None = None
    overrides: list[str] = field(default_factory=list)
    address: str | None = None
    workdir: Path | None = None
    batch_size: int = 64


@dataclass
class PromoteOutcome:
    promote_run_id: str
    model_name: str
    model_version: str
    model_uri: str
    members: list[MemberResult]
    val_report: dict
    test_report: dict | None
    prediction_csv: Path | None


def _say(out: TextIO, message: str) -> None:
    print(f"[hpo-cls] {message}", file=out, flush=True)


def _promote_settings(client: MlflowClient, sweep: SweepRecord, overrides: Sequence[str]):
    """``(data, resources, fixed overrides)``: data and resources of the sweep (parent params, its
    spec.yaml), with ``--set data.*|resources.*|fixed.*`` applied and validated like a spec."""
    parsed = parse_overrides(list(overrides))
    bad = [".".join(keys) for keys, _ in parsed if keys[0] not in _SET_SECTIONS or len(keys) != 2]
    if bad:
        raise SpecError([f"--set {k}: promote takes data.<key>, resources.<key> or fixed.<key>" for k in bad])
    spec_raw = _sweep_spec_yaml(client, sweep.run_id)
    data = dict(spec_raw.get("data") or {}) if isinstance(spec_raw.get("data"), dict) else {}
    if "data_root" in sweep.params:
        data["root"] = sweep.params["data_root"]
    if "image_size" in sweep.params:
        data["image_size"] = int(sweep.params["image_size"])
    resources = spec_raw.get("resources") if isinstance(spec_raw.get("resources"), dict) else {}
    spec = parse_spec({"name": "promote", "data": data, "resources": resources}, "--set", list(overrides))
    fixed = {keys[1]: value for keys, value in parsed if keys[0] == "fixed"}  # validated by parse_spec
    return spec.data, spec.resources, fixed


def _sweep_spec_yaml(client: MlflowClient, run_id: str) -> dict:
    """The sweep's logged spec.yaml as a dict; ``{}`` for a sweep without one (its params suffice)."""
    if not any(a.path == "spec.yaml" for a in client.list_artifacts(run_id)):
        return {}
    previous = os.environ.get(_PROGRESS_BAR_ENV)
    os.environ[_PROGRESS_BAR_ENV] = "false"  # one small file: MLflow's progress bar would only clutter stderr
    try:
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(client.download_artifacts(run_id, "spec.yaml", tmp)).read_text()
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR_ENV, None)
        else:
            os.environ[_PROGRESS_BAR_ENV] = previous
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return raw if isinstance(raw, dict) else {}


def run_promote(options: PromoteOptions, out: TextIO = sys.stdout) -> PromoteOutcome:
    """Select, retrain, ensemble, evaluate, register and predict; see the module docstring. Members are
    retrained from scratch and continue from their checkpoints when run again with the same ``workdir``."""
    from hpo_cls.tracking import MlflowWriter, end_run_op

    say = functools.partial(_say, out)
    client = MlflowClient(options.tracking_uri)
    sweep = find_sweep(client, options.experiment, options.sweep)
    data_cfg, resources, fixed = _promote_settings(client, sweep, options.overrides)
    candidates = load_candidates(client, sweep, warn)
    selected = select_top_runs(candidates, options.top, include_early_stopped=options.include_early_stopped,
                               dedupe=options.dedupe)
    searched = [n for n in sweep.params.get("searched", "").split(",") if n in TrialConfig.__dataclass_fields__]
    say(f"sweep {sweep.sweep_id}: {len(candidates)} finished run(s); promoting the top {len(selected)}:")
    print(format_selection(selected, searched), file=out, flush=True)

    if options.epochs is not None and options.epochs < 1:
        raise PromoteError(f"--epochs must be >= 1, got {options.epochs}")
    epochs = options.epochs or int(float(sweep.params.get("epochs", 0)))
    if epochs < 1:
        raise PromoteError("the sweep records no epoch budget; pass --epochs N")
    root = Path(data_cfg.root)
    if not (root / "train").is_dir():
        raise PromoteError(f"{root}/train: no such folder on this machine; pass --set data.root=DIR")
    plans = plan_members(selected, options.seeds, fixed)
    workdir = Path(options.workdir or Path("promote_runs") / sweep.sweep_id).resolve()
    predict_dir = options.predict or (root / "test" if (root / "test").is_dir() else None)
    if options.predict is not None and not Path(options.predict).is_dir():
        raise PromoteError(f"--predict {options.predict}: no such folder")
    if options.train_on_val:
        warn("--train-on-val: members also train on val/, so the validation numbers below are NOT held out")

    promote_id = f"{sweep.sweep_id}-promote-{time.strftime('%Y%m%d-%H%M%S')}"
    writer = MlflowWriter(options.tracking_uri, options.experiment)
    common_tags = {SWEEP_ID_TAG: sweep.sweep_id, SWEEP_NAME_TAG: sweep.name,
                   HELD_OUT_TAG: str(not options.train_on_val).lower()}
    writer.open_run("promote", {PROMOTE_ID_TAG: promote_id, ROLE_TAG: "promote"}, run_name=promote_id,
                    tags={**common_tags, "hpo_cls.sweep_run_id": sweep.run_id},
                    params={"top": options.top, "epochs": epochs, "seeds": options.seeds, "tta": options.tta,
                            "weighted": options.weighted, "train_on_val": options.train_on_val,
                            "include_early_stopped": options.include_early_stopped, "dedupe": options.dedupe,
                            "data_root": str(root), "image_size": data_cfg.image_size, "workdir": str(workdir),
                            "source_run_ids": ",".join(c.run_id for c in selected)})
    for p in plans:
        writer.open_run(p.key, {PROMOTE_ID_TAG: promote_id, MEMBER_TAG: p.key},
                        run_name=f"{promote_id}/{p.key}",
                        tags={**common_tags, ROLE_TAG: "promote_member", SOURCE_RUN_TAG: p.source.run_id,
                              TRIAL_ID_TAG: p.source.trial_id},
                        params={**flatten_trial_config(p.config), "epochs_budget": epochs,
                                "train_on_val": options.train_on_val}, parent_key="promote")
    finished: set[str] = set()
    try:
        def on_epoch(key: str, metrics: dict) -> None:
            writer.log_metrics(key, {k: v for k, v in metrics.items() if k != "epoch"}, step=int(metrics["epoch"]))
            star = "*" if options.train_on_val else ""
            say(f"{key} epoch {metrics['epoch']}/{epochs}  train_loss {metrics['train_loss']:.4f}  "
                f"val_acc{star} {metrics['val_acc']:.4f}  {metrics['epoch_time_s']:.1f}s")

        say(f"retraining {len(plans)} member(s) for {epochs} epoch(s) each on {root} "
            f"({resources.cpu:g} CPU{f', {resources.gpu:g} GPU' if resources.gpu else ''} per member); "
            f"checkpoints in {workdir}")
        results = retrain_members(plans, data_cfg, epochs, workdir, train_on_val=options.train_on_val,
                                  cpus=resources.cpu, gpus=resources.gpu, address=options.address, on_epoch=on_epoch)
        for r in results:
            if r.resumed_from_epoch:
                say(f"{r.key}: continued from the checkpoint of epoch {r.resumed_from_epoch}")
            writer.call(r.key, end_run_op("completed"))
            finished.add(r.key)

        outcome = _evaluate_register_predict(options, sweep, plans, results, data_cfg, predict_dir, searched,
                                             writer, out)
        writer.call("promote", end_run_op("completed"))
        writer.close(timeout=300)
        return outcome
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        for p in plans:
            if p.key not in finished:
                writer.call(p.key, end_run_op("failed", reason))
        writer.call("promote", end_run_op("failed", reason))
        writer.close(timeout=60)
        raise


def _evaluate_register_predict(options, sweep, plans, results, data_cfg, predict_dir, searched, writer, out):
    from hpo_cls.data import list_images, list_test_images
    from hpo_cls.ensemble import load_ensemble, normalize_weights
    from hpo_cls.evaluation_report import evaluate_split, labelled_test_samples, log_split_op, print_split_report
    from hpo_cls.predict import predict_probabilities, prediction_frame, write_prediction_csv

    say = functools.partial(_say, out)

    weights = normalize_weights([p.source.score for p in plans] if options.weighted else None, len(plans))
    loaded = load_ensemble([r.bundle_path for r in results], weights, options.tta)
    names = loaded.class_names
    keys = [p.key for p in plans]
    root = Path(data_cfg.root)
    val_report = evaluate_split("val", loaded, keys, list_images(root / "val", loaded.class_to_idx),
                                options.batch_size, data_cfg.workers)
    print_split_report(val_report, not options.train_on_val, out)
    writer.call("promote", log_split_op(val_report))
    test_report = None
    test_samples = labelled_test_samples(Path(predict_dir), loaded.class_to_idx, warn) if predict_dir else None
    if test_samples:
        test_report = evaluate_split("test", loaded, keys, test_samples, options.batch_size, data_cfg.workers)
        print_split_report(test_report, True, out)
        say("test numbers are for reporting only: nothing was selected or weighted on them")
        writer.call("promote", log_split_op(test_report))
    writer.flush()

    promote_run_id = writer.run_ids["promote"]
    name = registered_model_name(options.register_as or f"{sweep.name}-ensemble")
    info, version = register_ensemble(options.tracking_uri, promote_run_id, name, sweep, plans, results, weights,
                                      names, val_report, searched, tta=options.tta, weighted=options.weighted,
                                      train_on_val=options.train_on_val)
    say(f"registered {name} version {version.version} with alias @{CHAMPION_ALIAS} ({info.model_uri})")

    csv_path = None
    if predict_dir is not None:
        paths = list_test_images(Path(predict_dir))
        probabilities = predict_probabilities(loaded.model, paths, loaded.image_size, options.batch_size)
        labels = prediction_frame(probabilities, names)["pred_label"].tolist()
        csv_path = write_prediction_csv(options.out, paths, labels)
        writer.call("promote", lambda client, run_id: client.log_artifact(run_id, str(csv_path)))
        say(f"wrote {csv_path} ({len(paths)} images from {predict_dir})")
        say(f"same predictions later: hpo-cls predict models:/{name}@{CHAMPION_ALIAS} {predict_dir} "
            f"--tracking-uri {options.tracking_uri}")
    else:
        say(f"no test folder in {root} and no --predict DIR: prediction.csv not written")
    return PromoteOutcome(promote_run_id, name, str(version.version), f"models:/{name}@{CHAMPION_ALIAS}", results,
                          val_report, test_report, csv_path)
