"""``hpo-cls promote``: the sweep's best runs (read from MLflow) -> final retrains (Ray tasks) -> ensemble
-> evaluation -> registered MLflow model with alias ``champion`` -> ``prediction.csv``.

Selection reads MLflow only, never Ray's result files, so promote works on any machine that sees the
tracking server. Members are retrained from scratch; each checkpoints every epoch into the work folder
and continues from there when promote is run again with the same ``--workdir``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import re
import sys
import tempfile
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import yaml
from mlflow.tracking import MlflowClient

from hpo_cls.checkpoint import CHECKPOINT_FILE, MODEL_FILE, load_checkpoint, model_bundle, save_checkpoint
from hpo_cls.config import (
    DataConfig,
    SpecError,
    TrackingConfig,
    TrialConfig,
    flatten_trial_config,
    format_value,
    parse_overrides,
    parse_spec,
    trial_config_from_dict,
)
from hpo_cls.tracking import ROLE_TAG, STATUS_TAG, SWEEP_ID_TAG, SWEEP_NAME_TAG, TRIAL_ID_TAG

__all__ = [
    "PromoteError",
    "PromoteOptions",
    "SweepRecord",
    "Candidate",
    "MemberPlan",
    "MemberResult",
    "find_sweep",
    "load_candidates",
    "select_top_runs",
    "format_selection",
    "typed_params",
    "plan_members",
    "train_member",
    "retrain_members",
    "registered_model_name",
    "read_test_labels",
    "run_promote",
]

SCORE_METRIC = "best_val_acc"
SELECTABLE = ("completed", "early_stopped")
DEDUPE_TOLERANCE = 0.05  # numeric params within 5% (relative) count as the same value
CHAMPION_ALIAS = "champion"
PROMOTE_ID_TAG = "hpo_cls.promote_id"
MEMBER_TAG = "hpo_cls.member"
SOURCE_RUN_TAG = "hpo_cls.source_run_id"
HELD_OUT_TAG = "hpo_cls.val_held_out"
TEST_LABELS_FILE = "test_labels.csv"
_SET_SECTIONS = ("data", "resources", "fixed")
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class PromoteError(Exception):
    """Promote cannot go on (unknown sweep, too few runs, ...): one readable message, exit status 2."""


# ---------------------------------------------------------------------------------------------
# finding the sweep and its runs in MLflow


@dataclass(frozen=True)
class SweepRecord:
    """The parent run of a sweep."""

    run_id: str
    sweep_id: str
    name: str
    experiment_id: str
    start_time: int
    params: dict[str, str]


@dataclass(frozen=True)
class Candidate:
    """A trial run of the sweep with its score and the TrialConfig rebuilt from its params."""

    run_id: str
    trial_id: str
    status: str
    score: float
    config: TrialConfig
    start_time: int


def _filter(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by: list[str]) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None) -> SweepRecord:
    """The sweep's parent run: by sweep id, else the newest sweep of that spec name; without ``sweep``
    the newest sweep of the experiment."""
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = [e.name for e in client.search_experiments()]
        raise PromoteError(f"no MLflow experiment {experiment!r} at {client.tracking_uri} "
                           f"(experiments: {', '.join(names) or 'none'}); pass --experiment or --tracking-uri")
    parents = _search_all(client, found.experiment_id, _filter({ROLE_TAG: "sweep"}), ["attributes.start_time DESC"])
    if not parents:
        raise PromoteError(f"experiment {experiment!r} holds no sweeps; run `hpo-cls sweep` first")
    if sweep is None:
        match = parents[0]
    else:
        match = next((r for r in parents if r.data.tags.get(SWEEP_ID_TAG) == sweep), None)
        match = match or next((r for r in parents if r.data.tags.get(SWEEP_NAME_TAG) == sweep), None)
    if match is None:
        listed = [f"{r.data.tags.get(SWEEP_ID_TAG)} ({r.data.tags.get(SWEEP_NAME_TAG, '?')})" for r in parents[:20]]
        more = f" and {len(parents) - 20} more" if len(parents) > 20 else ""
        raise PromoteError(f"no sweep {sweep!r} in experiment {experiment!r}; sweeps there (newest first): "
                           f"{', '.join(listed)}{more}")
    tags = match.data.tags
    return SweepRecord(match.info.run_id, tags.get(SWEEP_ID_TAG, match.info.run_id),
                       tags.get(SWEEP_NAME_TAG, tags.get(SWEEP_ID_TAG, "sweep")), found.experiment_id,
                       match.info.start_time or 0, dict(match.data.params))


def _type_of(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` of a field annotation, unwrapping ``X | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def typed_params(params: Mapping[str, str]) -> dict[str, Any]:
    """MLflow param strings -> typed values of the TrialConfig fields (others are dropped).

    Types come from the TrialConfig annotations, not from the text, so a string field holding
    ``"1e-3"`` or ``"on"`` stays a string; lists (``"[1024, 512]"``) are read as YAML.
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
            typed[name] = {"true": True, "false": False}.get(text.lower(), text)  # bad text: config reports it
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _score(client: MlflowClient, run) -> float | None:
    """The sweep's score of a run: its best_val_acc, or the max of its val_acc history."""
    if SCORE_METRIC in run.data.metrics:
        return run.data.metrics[SCORE_METRIC]
    history = client.get_metric_history(run.info.run_id, "val_acc")
    return max((m.value for m in history), default=None)


def load_candidates(client: MlflowClient, sweep: SweepRecord, warn: Callable[[str], None] = print) -> list[Candidate]:
    """Finished trial runs (completed or early stopped) of the sweep that have a score."""
    runs = _search_all(client, sweep.experiment_id, _filter({SWEEP_ID_TAG: sweep.sweep_id, ROLE_TAG: "trial"}),
                       ["attributes.start_time ASC"])
    candidates = []
    for run in runs:
        status = run.data.tags.get(STATUS_TAG)
        if status not in SELECTABLE:
            continue
        score = _score(client, run)
        if score is None:
            continue
        try:
            cfg = trial_config_from_dict(typed_params(run.data.params))
        except SpecError as exc:
            warn(f"skipping run {run.info.run_id}: its params are not a valid config: {'; '.join(exc.problems)}")
            continue
        candidates.append(Candidate(run.info.run_id, run.data.tags.get(TRIAL_ID_TAG, run.info.run_id[:8]), status,
                                    float(score), cfg, run.info.start_time or 0))
    return candidates


def _near_duplicate(a: TrialConfig, b: TrialConfig, tolerance: float = DEDUPE_TOLERANCE) -> bool:
    """Same categorical values, numeric values within ``tolerance`` (relative); the seed is ignored."""
    for f in dataclasses.fields(TrialConfig):
        if f.name == "seed":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            if x != y:
                return False
        elif abs(x - y) > tolerance * max(abs(x), abs(y)):
            return False
    return True


def select_top_runs(candidates: Sequence[Candidate], top: int, *, include_early_stopped: bool = False,
                    dedupe: bool = False) -> list[Candidate]:
    """The ``top`` best candidates by score (ties: earlier run first); raises PromoteError if too few qualify."""
    if top < 1:
        raise PromoteError(f"--top must be >= 1, got {top}")
    statuses = SELECTABLE if include_early_stopped else ("completed",)
    ranked = sorted((c for c in candidates if c.status in statuses), key=lambda c: (-c.score, c.start_time, c.run_id))
    kept: list[Candidate] = []
    for c in ranked:
        if not dedupe or not any(_near_duplicate(c.config, k.config) for k in kept):
            kept.append(c)
    if len(kept) >= top:
        return kept[:top]
    early = sum(c.status == "early_stopped" for c in candidates)
    what = "completed or early-stopped" if include_early_stopped else "completed"
    message = f"--top {top}: only {len(kept)} {what} run(s) with a score qualify"
    if dedupe and len(ranked) > len(kept):
        message += f" ({len(ranked) - len(kept)} near-duplicate config(s) removed by --dedupe)"
    hints = ["lower --top"]
    if early and not include_early_stopped:
        hints.insert(0, f"add --include-early-stopped ({early} early-stopped run(s) available)")
    raise PromoteError(f"{message}; {' or '.join(hints)}")


def format_selection(selected: Sequence[Candidate], param_names: Sequence[str]) -> str:
    """The chosen runs as a table: rank, trial, status, score, the searched params, run id."""
    from hpo_cls.reports import format_table

    rows = [[str(i), c.trial_id, c.status, f"{c.score:.4f}", *[_short(getattr(c.config, n)) for n in param_names],
             c.run_id] for i, c in enumerate(selected, 1)]
    return format_table(["#", "trial", "status", SCORE_METRIC, *param_names, "mlflow run"], rows)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(format_value(value))


# ---------------------------------------------------------------------------------------------
# what to retrain


@dataclass(frozen=True)
class MemberPlan:
    """One member to retrain: a selected run's config with one seed."""

    key: str  # "<trial id>-seed<seed>": the member's folder and MLflow identity
    source: Candidate
    config: TrialConfig


@dataclass
class MemberResult:
    key: str
    bundle_path: str
    history: list[dict]
    resumed_from_epoch: int
    seconds: float


def plan_members(selected: Sequence[Candidate], seeds: int,
                 overrides: Mapping[str, Any] | None = None) -> list[MemberPlan]:
    """``seeds`` members per selected run (seed, seed + 1, ...), with ``fixed.*`` overrides applied."""
    if seeds < 1:
        raise PromoteError(f"--seeds must be >= 1, got {seeds}")
    plans = []
    for c in selected:
        base = trial_config_from_dict(overrides or {}, base=c.config)
        for offset in range(seeds):
            cfg = dataclasses.replace(base, seed=base.seed + offset)
            plans.append(MemberPlan(f"{c.trial_id}-seed{cfg.seed}", c, cfg))
    return plans


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


# ---------------------------------------------------------------------------------------------
# retraining (runs inside Ray tasks; plain torch otherwise)


def _member_identity(cfg: TrialConfig, epochs: int, image_size: int, train_on_val: bool) -> dict:
    return {"config": flatten_trial_config(cfg), "epochs": epochs, "image_size": image_size,
            "train_on_val": train_on_val}


def train_member(data_cfg: DataConfig, cfg: TrialConfig, epochs: int, member_dir: str | Path, *,
                 train_on_val: bool = False, gpu_share: float = 0.0,
                 report: Callable[[dict], None] = lambda metrics: None, key: str = "") -> MemberResult:
    """Train one member from scratch for ``epochs`` (checkpoint each epoch in ``member_dir``), or continue
    a checkpoint there made with the same settings; write its model bundle. ``report`` gets every
    epoch's metrics, including those of epochs restored from the checkpoint."""
    from hpo_cls.data import build_loaders
    from hpo_cls.engine import resolve_device
    from hpo_cls.training import TrainingRun

    start = time.perf_counter()
    member_dir = Path(member_dir)
    loaders = build_loaders(data_cfg, cfg, device_is_cuda=resolve_device(gpu_share).type == "cuda", seed=cfg.seed,
                            train_on_val=train_on_val)
    run = TrainingRun(data_cfg, cfg, epochs, gpu_share=gpu_share, loaders=loaders)
    identity = _member_identity(cfg, epochs, data_cfg.image_size, train_on_val)
    history: list[dict] = []
    checkpoint = member_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        if state.get("promote") == identity and state["class_to_idx"] == run.class_to_idx:
            run.load_state_dict(state)
            history = list(state.get("history") or [])
        else:
            print(f"[hpo-cls] {checkpoint}: made with other settings; retraining from scratch", flush=True)
    resumed_from = run.epoch
    for metrics in history:
        report(metrics)
    while run.epoch < epochs:
        metrics = run.run_epoch()
        history.append(metrics)
        save_checkpoint({**run.state_dict(), "promote": identity, "history": history}, checkpoint)
        report(metrics)
    bundle = save_checkpoint(model_bundle(run.state_dict()), member_dir / MODEL_FILE)
    return MemberResult(key, str(bundle), history, resumed_from, time.perf_counter() - start)


def _train_member_task(plan_key, data_cfg, cfg, epochs, member_dir, train_on_val, gpu_share, queue):
    return train_member(data_cfg, cfg, epochs, member_dir, train_on_val=train_on_val, gpu_share=gpu_share,
                        report=lambda metrics: queue.put((plan_key, metrics)), key=plan_key)


def _start_ray(address: str | None) -> bool:
    """Join ``address`` or start a small local Ray; True when this call started it (so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:
        # address="local": always a fresh instance of our own, never a cluster `ray start` left running here.
        ray.init(address="local", include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="WARNING")
    return True


def retrain_members(plans: Sequence[MemberPlan], data_cfg: DataConfig, epochs: int, workdir: Path, *,
                    train_on_val: bool = False, cpus: float = 1.0, gpus: float = 0.0, address: str | None = None,
                    on_epoch: Callable[[str, dict], None] = lambda key, metrics: None) -> list[MemberResult]:
    """Retrain every member as a Ray task (in parallel as resources allow); ``on_epoch(key, metrics)``
    runs in the caller's process as epochs finish. Results come back in the order of ``plans``."""
    import ray
    from ray.exceptions import RayError, RayTaskError
    from ray.util.queue import Queue

    started = _start_ray(address)
    try:
        queue = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(_train_member_task).options(num_cpus=cpus, num_gpus=gpus)
        refs = {task.remote(p.key, data_cfg, p.config, epochs, str(workdir / p.key), train_on_val, gpus, queue): p.key
                for p in plans}
        results: dict[str, MemberResult] = {}
        pending = list(refs)

        def drain():
            while not queue.empty():
                for key, metrics in queue.get_nowait_batch(queue.qsize()):
                    on_epoch(key, metrics)

        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                for ref in done:
                    try:
                        results[refs[ref]] = ray.get(ref)
                    except RayTaskError as exc:
                        for other in pending:
                            ray.cancel(other, force=True)
                        cause = exc.cause if exc.cause is not None else exc
                        raise PromoteError(f"retraining member {refs[ref]} failed: {type(cause).__name__}: "
                                           f"{_last_line(cause)}") from None
                drain()
            drain()
        except RayError as exc:  # a worker, actor or node died: the checkpoints written so far stay usable
            raise PromoteError(f"Ray failed while retraining ({type(exc).__name__}: {_last_line(exc)}); run the "
                               f"same command again to continue from the checkpoints in {workdir}") from None
        return [results[p.key] for p in plans]
    finally:
        if started:
            ray.shutdown()


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# ---------------------------------------------------------------------------------------------
# evaluation


def read_test_labels(path: Path) -> dict[str, str]:
    """``image_name,label`` rows (name without extension, label = class folder name) -> dict."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"image_name", "label"} <= set(reader.fieldnames):
            raise PromoteError(f"{path}: expected a header image_name,label, got {reader.fieldnames}")
        return {row["image_name"]: row["label"] for row in reader}


def _labelled_loader(samples, image_size: int, batch_size: int, workers: int):
    from torch.utils.data import DataLoader

    from hpo_cls.data import ImageDataset, build_eval_transform

    dataset = ImageDataset(samples, build_eval_transform(image_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


def _test_samples(test_dir: Path, class_to_idx: dict[str, int], warn: Callable[[str], None]):
    """(path, class index) of the labelled test images, or None without test_labels.csv."""
    from hpo_cls.data import list_test_images

    labels_file = test_dir.parent / TEST_LABELS_FILE
    if not labels_file.is_file():
        return None
    labels = read_test_labels(labels_file)
    unknown = sorted({v for v in labels.values() if v not in class_to_idx})
    if unknown:
        raise PromoteError(f"{labels_file}: labels that are no class folder of train/: {', '.join(unknown[:10])}")
    images = list_test_images(test_dir)
    samples = [(p, class_to_idx[labels[p.stem]]) for p in images if p.stem in labels]
    if len(samples) < len(images):
        warn(f"{labels_file}: {len(images) - len(samples)} of {len(images)} test images have no label; "
             "they are left out of the test evaluation")
    return samples or None


def _split_report(name: str, member_keys: Sequence[str], members, ensemble, class_names) -> dict:
    from hpo_cls.engine import per_class_report

    best = max(r.accuracy for r in members)
    return {
        "split": name,
        "members": {k: {"accuracy": r.accuracy, "loss": r.loss, "per_class": per_class_report(r.confusion, class_names),
                        "confusion": r.confusion.tolist()} for k, r in zip(member_keys, members)},
        "ensemble": {"accuracy": ensemble.accuracy, "loss": ensemble.loss},
        "best_member_accuracy": best,
        "gain_over_best_member": ensemble.accuracy - best,
        "per_class": per_class_report(ensemble.confusion, class_names),
        "confusion": ensemble.confusion.tolist(),
        "class_names": list(class_names),
    }


def _print_split(report: dict, held_out: bool, out: TextIO) -> None:
    from hpo_cls.reports import format_table

    note = "" if held_out else "  (NOT held out: the members were trained on it)"
    print(f"\n[hpo-cls] evaluation on {report['split']}{note}", file=out)
    rows = [[k, f"{v['accuracy']:.4f}", f"{v['loss']:.4f}"] for k, v in report["members"].items()]
    rows.append(["ensemble", f"{report['ensemble']['accuracy']:.4f}", f"{report['ensemble']['loss']:.4f}"])
    print(format_table(["model", "accuracy", "loss"], rows), file=out)
    print(f"ensemble gain over the best member: {report['gain_over_best_member']:+.4f}", file=out)
    rows = [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
            for r in report["per_class"]]
    print(format_table(["class", "precision", "recall", "f1", "support"], rows), file=out)
    names = report["class_names"]
    if len(names) <= 20:
        print("confusion matrix (rows: true class, columns: predicted)", file=out)
        print(format_table(["", *names], [[n, *map(str, row)] for n, row in zip(names, report["confusion"])]),
              file=out)
    out.flush()


def _log_split_op(report: dict):
    import matplotlib.pyplot as plt
    from mlflow.entities import Metric

    from hpo_cls.reports import confusion_matrix_figure, per_class_frame

    split = report["split"]

    def op(client, run_id):
        now = int(time.time() * 1000)
        values = {f"{split}_acc": report["ensemble"]["accuracy"], f"{split}_loss": report["ensemble"]["loss"],
                  f"{split}_acc_best_member": report["best_member_accuracy"],
                  f"{split}_gain_over_best_member": report["gain_over_best_member"],
                  **{f"{split}_acc.{k}": v["accuracy"] for k, v in report["members"].items()}}
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, f"{split}_evaluation.json").write_text(json.dumps(report, indent=1))
            per_class_frame(report["per_class"]).to_csv(Path(tmp, f"{split}_per_class_report.csv"), index=False)
            figure = confusion_matrix_figure(report["confusion"], report["class_names"])
            figure.savefig(Path(tmp, f"{split}_confusion_matrix.png"), dpi=110)
            plt.close(figure)
            client.log_artifacts(run_id, tmp, "evaluation")

    return op


# ---------------------------------------------------------------------------------------------
# registry


def registered_model_name(name: str) -> str:
    """A registry-safe name: letters, digits, '-', '_' and '.'; anything else becomes '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return cleaned or "ensemble"


def _model_signature(class_names: Sequence[str]):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from hpo_cls.predict import DEFAULT_BATCH_SIZE, PROBABILITY_PREFIX

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


def _register(tracking_uri: str, promote_run_id: str, name: str, results: Sequence[MemberResult],
              plans: Sequence[MemberPlan], weights: list[float], tta: bool, class_names: list[str],
              tags: dict[str, str], description: str):
    """Log the ensemble as one pyfunc model in the promote run, register it, point ``champion`` at it."""
    import warnings

    import mlflow

    from hpo_cls.ensemble import write_pyfunc_code

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
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=description)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version.version)
    return info, version


def _version_tags(sweep: SweepRecord, promote_run_id: str, plans, weights, options, val_report) -> dict[str, str]:
    tags = {
        SWEEP_ID_TAG: sweep.sweep_id,
        SWEEP_NAME_TAG: sweep.name,
        "hpo_cls.promote_run_id": promote_run_id,
        "hpo_cls.members": ",".join(p.key for p in plans),
        "hpo_cls.source_run_ids": ",".join(dict.fromkeys(p.source.run_id for p in plans)),
        "hpo_cls.weights": json.dumps([round(w, 6) for w in weights]),
        "hpo_cls.tta": str(options.tta).lower(),
        HELD_OUT_TAG: str(not options.train_on_val).lower(),
        "hpo_cls.val_acc": f"{val_report['ensemble']['accuracy']:.6f}",
    }
    for p in plans:
        tags[f"hpo_cls.member.{p.key}.source_run_id"] = p.source.run_id
        tags[f"hpo_cls.member.{p.key}.config"] = json.dumps(flatten_trial_config(p.config), sort_keys=True)
    return tags


def _description(sweep: SweepRecord, plans, weights, options, val_report, param_names) -> str:
    held = "" if not options.train_on_val else " (not held out: members were trained on train+val)"
    how = ("flip TTA, " if options.tta else "") + ("weighted by val score" if options.weighted else "equal weights")
    lines = [f"Ensemble of {len(plans)} member(s) retrained from sweep `{sweep.sweep_id}` "
             f"({how}).",
             f"Validation accuracy {val_report['ensemble']['accuracy']:.4f}{held}, "
             f"{val_report['gain_over_best_member']:+.4f} over the best member.", "",
             "| member | source run | weight | sweep best_val_acc | " + " | ".join(param_names) + " |",
             "|---" * (4 + len(param_names)) + "|"]
    for p, w in zip(plans, weights):
        values = [_short(getattr(p.config, n)) for n in param_names]
        lines.append(f"| {p.key} | {p.source.run_id} | {w:.3f} | {p.source.score:.4f} | " + " | ".join(values) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the whole command


def _say(out: TextIO, message: str) -> None:
    print(f"[hpo-cls] {message}", file=out, flush=True)


def _warn(message: str) -> None:
    print(f"[hpo-cls] warning: {message}", file=sys.stderr, flush=True)


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


def run_promote(options: PromoteOptions, out: TextIO = sys.stdout) -> PromoteOutcome:
    """Select, retrain, ensemble, evaluate, register and predict; see the module docstring."""
    from hpo_cls.tracking import MlflowWriter, end_run_op, find_or_create_experiment

    say = functools.partial(_say, out)
    client = MlflowClient(options.tracking_uri)
    sweep = find_sweep(client, options.experiment, options.sweep)
    data_cfg, resources, fixed = _promote_settings(client, sweep, options.overrides)
    candidates = load_candidates(client, sweep, _warn)
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
        _warn("--train-on-val: members also train on val/, so the validation numbers below are NOT held out")

    promote_id = f"{sweep.sweep_id}-promote-{time.strftime('%Y%m%d-%H%M%S')}"
    writer = MlflowWriter(options.tracking_uri, warn=_warn)
    experiment_id = find_or_create_experiment(writer.client, options.experiment)
    common_tags = {SWEEP_ID_TAG: sweep.sweep_id, SWEEP_NAME_TAG: sweep.name,
                   HELD_OUT_TAG: str(not options.train_on_val).lower()}
    writer.open_run("promote", experiment_id, {PROMOTE_ID_TAG: promote_id, ROLE_TAG: "promote"}, run_name=promote_id,
                    tags={**common_tags, "hpo_cls.sweep_run_id": sweep.run_id},
                    params={"top": options.top, "epochs": epochs, "seeds": options.seeds, "tta": options.tta,
                            "weighted": options.weighted, "train_on_val": options.train_on_val,
                            "include_early_stopped": options.include_early_stopped, "dedupe": options.dedupe,
                            "data_root": str(root), "image_size": data_cfg.image_size, "workdir": str(workdir),
                            "source_run_ids": ",".join(c.run_id for c in selected)})
    for p in plans:
        writer.open_run(p.key, experiment_id, {PROMOTE_ID_TAG: promote_id, MEMBER_TAG: p.key},
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
    from hpo_cls.ensemble import evaluate_ensemble, load_ensemble, normalize_weights
    from hpo_cls.predict import predict_probabilities, prediction_frame, write_prediction_csv

    say = functools.partial(_say, out)

    weights = normalize_weights([p.source.score for p in plans] if options.weighted else None, len(plans))
    loaded = load_ensemble([r.bundle_path for r in results], weights, options.tta)
    names = loaded.class_names
    keys = [p.key for p in plans]
    root = Path(data_cfg.root)
    val_loader = _labelled_loader(list_images(root / "val", loaded.class_to_idx), loaded.image_size,
                                  options.batch_size, data_cfg.workers)
    val_report = _split_report("val", keys, *evaluate_ensemble(loaded.model, val_loader, len(names)), names)
    _print_split(val_report, not options.train_on_val, out)
    writer.call("promote", _log_split_op(val_report))
    test_report = None
    test_samples = _test_samples(Path(predict_dir), loaded.class_to_idx, _warn) if predict_dir else None
    if test_samples:
        test_loader = _labelled_loader(test_samples, loaded.image_size, options.batch_size, data_cfg.workers)
        test_report = _split_report("test", keys, *evaluate_ensemble(loaded.model, test_loader, len(names)), names)
        _print_split(test_report, True, out)
        say("test numbers are for reporting only: nothing was selected or weighted on them")
        writer.call("promote", _log_split_op(test_report))
    writer.flush()

    promote_run_id = writer.run_ids["promote"]
    name = registered_model_name(options.register_as or f"{sweep.name}-ensemble")
    info, version = _register(options.tracking_uri, promote_run_id, name, results, plans, weights, options.tta, names,
                              _version_tags(sweep, promote_run_id, plans, weights, options, val_report),
                              _description(sweep, plans, weights, options, val_report, searched))
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
