"""``hpo-cls sweep``: the Tuner wiring (searcher, scheduler, run config) and the sweep's MLflow summary."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hpo_cls.cluster import SWEEP_OBJECT_STORE_BYTES, connect_ray
from hpo_cls.config import SweepSpec, TrialConfig, flatten_trial_config, trial_config_from_dict
from hpo_cls.preflight import ParameterBudget
from hpo_cls.search_space import DefineByRun
from hpo_cls.training import TrialSetup

__all__ = ["SweepError", "SweepOutcome", "run_sweep", "resolve_trainable", "sweep_directory"]


class SweepError(Exception):
    """A sweep cannot start or continue (reported to the user as one line, exit status 2)."""


@dataclass
class TrialOutcome:
    trial_id: str
    status: str
    epochs_run: int
    best_score: float | None
    config: dict[str, Any]
    run_id: str | None


@dataclass
class SweepOutcome:
    sweep_id: str
    parent_run_id: str | None
    experiment_path: str
    trials: list[TrialOutcome]


def resolve_trainable(dotted: str) -> Callable:
    """``pkg.module`` (its ``trainable`` function) or ``pkg.module.function``."""
    try:
        module = importlib.import_module(dotted)
        fn = getattr(module, "trainable", None)
    except ModuleNotFoundError:
        module_name, _, attr = dotted.rpartition(".")
        try:
            fn = getattr(importlib.import_module(module_name), attr, None) if module_name else None
        except ModuleNotFoundError:
            fn = None
    if not callable(fn):
        raise SweepError(f"trainable: cannot import {dotted!r} (a module with a trainable() function, or a function)")
    return fn


def sweep_directory(storage: str, spec_name: str, name: str | None, resume: bool) -> tuple[str, str]:
    """The sweep's id and Tune experiment folder (a local path or a URI such as ``s3://bucket/runs``).

    New sweeps get a timestamped id unless ``name`` is given; ``resume`` without a name picks the newest
    sweep of this spec (local storage only: listing a bucket is left to the user)."""
    from ray.tune import Tuner

    remote = "://" in storage
    if name is not None:
        path = f"{storage.rstrip('/')}/{name}" if remote else str(Path(storage) / name)
        if resume and not Tuner.can_restore(path):
            raise SweepError(f"--resume: no interrupted sweep named {name!r} in {storage}")
        if not resume and not remote and Path(path).exists():
            raise SweepError(f"a sweep named {name!r} already exists in {storage}; use --resume to continue it")
        return name, path
    if resume:
        if remote:
            raise SweepError(f"--resume with storage_path {storage}: name the sweep to resume with --name")
        candidates = sorted(
            (p for p in Path(storage).glob(f"{spec_name}-*") if Tuner.can_restore(str(p))),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise SweepError(f"--resume: no sweep of {spec_name!r} to resume in {storage}")
        return candidates[-1].name, str(candidates[-1])
    sweep_id = f"{spec_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return sweep_id, f"{storage.rstrip('/')}/{sweep_id}" if remote else str(Path(storage) / sweep_id)


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_sweep(
    spec: SweepSpec,
    *,
    num_classes: int,
    address: str | None = None,
    name: str | None = None,
    resume: bool = False,
    progress_interval_s: float = 15.0,
    owns_ray: bool = False,
    out=sys.stdout,
) -> SweepOutcome:
    """Run (or resume) a sweep to the end and log its summary to MLflow.

    Joins ``address`` or starts a local Ray unless one is connected already; ``owns_ray``: the caller
    connected it for this sweep, so it is shut down here as soon as the trials have ended."""
    import ray
    from ray import tune

    storage = str(spec.storage_path if isinstance(spec.storage_path, str)
                  else Path(spec.storage_path).expanduser().resolve())
    sweep_id, experiment_path = sweep_directory(storage, spec.name, name, resume)
    trainable_fn = resolve_trainable(spec.trainable)
    setup = TrialSetup(data=spec.data, fixed=spec.fixed, epochs=spec.budget.epochs, gpu_share=spec.resources.gpu)
    trainable = tune.with_resources(
        tune.with_parameters(trainable_fn, setup=setup),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    # Snapshot Tune's experiment state every few seconds (default: adaptive, often much rarer), so that
    # a killed driver loses as little as possible. Cheap next to an epoch of training.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
    # MLflow is the record; Tune's CSV and TensorBoard loggers would only add driver work per result.
    # (result.json stays: Tune's ResultGrid reads the metric history from it.)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # hpo-cls prints its own trial table; Ray's new console output prints banners even when silenced.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune forces a snapshot every keep_checkpoints checkpoints of a trial and then warns, in three lines,
    # that snapshots are frequent; with per-epoch checkpoints that is expected, not a problem.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = connect_ray(address, object_store_bytes=SWEEP_OBJECT_STORE_BYTES) or owns_ray
    print(f"[hpo-cls] sweep {sweep_id}: {spec.budget.num_samples} trials, up to {spec.budget.epochs} epochs each, "
          f"{spec.budget.max_concurrent} at a time, scheduler {spec.scheduler.type}, sampler {spec.search.sampler}",
          file=out, flush=True)
    resources = ray.cluster_resources()
    print(f"[hpo-cls] Ray: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, "
          f"{resources.get('GPU', 0):g} GPUs; each trial takes {spec.resources.cpu:g} CPU, "
          f"{spec.resources.gpu:g} GPU", file=out, flush=True)
    try:
        if resume:
            print(f"[hpo-cls] resuming from {experiment_path}", file=out, flush=True)
            tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
            known = {_trial_id(result) for result in tuner.get_results()}
            discarded = discard_unknown_trial_runs(spec.tracking.uri, spec.tracking.experiment, sweep_id, known)
            if discarded:
                print(f"[hpo-cls] discarded {discarded} MLflow run(s) of trials that started after Tune's last "
                      "experiment snapshot; the searcher, restored to that snapshot, proposes them again",
                      file=out, flush=True)
        else:
            tuner, searcher = _new_tuner(spec, sweep_id, storage, trainable, num_classes, progress_interval_s)
        results = tuner.fit()
        if not resume and searcher.suggestions:
            print(f"[hpo-cls] searcher: {searcher.suggestions} proposals, "
                  f"{1000 * searcher.suggest_seconds / searcher.suggestions:.1f} ms each"
                  + (f", {searcher.rejected_over_budget} over max_params skipped" if searcher.rejected_over_budget else ""),
                  file=out, flush=True)
        print("[hpo-cls] all trials ended; logging checkpoints and the sweep summary to MLflow", file=out, flush=True)
        with ThreadPoolExecutor(max_workers=1) as pool:
            summary = pool.submit(summarize_sweep, spec, sweep_id, experiment_path, results)
            if started:  # the summary needs only local files: let Ray's processes stop meanwhile
                ray.shutdown()
            outcome = summary.result()
    finally:
        if started:
            ray.shutdown()
    _print_summary(spec, outcome, out)
    return outcome


def _new_tuner(spec, sweep_id, storage, trainable, num_classes, progress_interval_s):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from hpo_cls.searcher import BudgetAwareOptunaSearch, build_sampler
    from hpo_cls.tune_callbacks import ProgressTable, SweepTracker

    budget = ParameterBudget(spec.fixed, num_classes)
    searcher = BudgetAwareOptunaSearch(
        DefineByRun(spec.search.space, spec.fixed),
        metric=spec.metric,
        mode=spec.mode,
        sampler=build_sampler(spec.search, spec.budget.num_samples),
        max_epochs=spec.budget.epochs,
        param_count=budget,
        max_params=spec.max_params,
    )
    if spec.scheduler.type == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=spec.budget.epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    spec_text = spec.source.read_text() if spec.source and spec.source.is_file() else ""
    versions = _versions()
    tracker = SweepTracker(
        tracking_uri=spec.tracking.uri,
        experiment=spec.tracking.experiment,
        sweep_id=sweep_id,
        sweep_name=spec.name,
        fixed=spec.fixed,
        epochs=spec.budget.epochs,
        metric=spec.metric,
        mode=spec.mode,
        parent_tags={
            "hpo_cls.spec_file": str(spec.source or ""),
            "hpo_cls.git_commit": (_git_commit(spec.source.parent) if spec.source else None) or "none",
            **{f"hpo_cls.version.{k}": v for k, v in versions.items()},
        },
        parent_params={
            "sampler": spec.search.sampler, "scheduler": spec.scheduler.type, "num_samples": spec.budget.num_samples,
            "epochs": spec.budget.epochs, "max_concurrent": spec.budget.max_concurrent, "metric": spec.metric,
            "data_root": str(spec.data.root), "image_size": spec.data.image_size,
            "searched": ",".join(p.name for p in spec.search.space),
        },
    )
    tracker.start()
    if spec_text:
        tracker.writer.call("parent", lambda client, run_id: client.log_text(run_id, spec_text, "spec.yaml"))
    progress = ProgressTable(
        [p.name for p in spec.search.space], spec.budget.epochs, spec.metric, interval_s=progress_interval_s,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
            scheduler=scheduler,
            num_samples=spec.budget.num_samples,
            time_budget_s=spec.budget.time_budget_s,
            trial_dirname_creator=_trial_dirname,
            # A new trial takes over a finished trial's worker process instead of starting one (and
            # importing torch) again; trials share resources, so every actor fits every trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=sweep_id,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=spec.fault_tolerance.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=spec.fault_tolerance.keep_checkpoints,
                checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode,
            ),
            callbacks=[JsonLoggerCallback(), tracker, progress],
            verbose=0,
        ),
    )
    return tuner, searcher


def _versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    import hpo_cls

    return {"ray": ray.__version__, "optuna": optuna.__version__, "torch": torch.__version__,
            "hpo_cls": hpo_cls.__version__}


# ---------------------------------------------------------------------------------------------
# after the trials: checkpoints, reports and the sweep summary in MLflow


def summarize_sweep(spec: SweepSpec, sweep_id: str, experiment_path: str, results) -> SweepOutcome:
    """Log each trial's best checkpoint and final status, and the parent run's summary. Idempotent, so
    a resumed sweep can run it again over trials that ended before the interruption."""
    from hpo_cls.tracking import MlflowWriter, open_sweep_run, open_trial_run, warn
    from hpo_cls.tune_callbacks import finalize_trial_op, trial_status

    writer = MlflowWriter(spec.tracking.uri, spec.tracking.experiment)
    open_sweep_run(writer, sweep_id)
    trials: list[TrialOutcome] = []
    for result in results:
        trial_id = _trial_id(result)
        history = result.metrics_dataframe
        scores = history[spec.metric].dropna() if history is not None and spec.metric in history else None
        best = None
        if scores is not None and len(scores):
            best = float(scores.max() if spec.mode == "max" else scores.min())
        status, reason = trial_status(result.metrics, spec.budget.epochs, errored=result.error is not None)
        if result.error is not None:
            reason = (str(result.error).strip().splitlines() or ["error"])[-1]
        config = flatten_trial_config(trial_config_from_dict(_sampled(result.config), base=spec.fixed))
        # Bound only: a run finalized when its trial ended keeps its state; the op below skips it.
        open_trial_run(writer, sweep_id, trial_id, {**config, "epochs_budget": spec.budget.epochs}, resume=False)
        best_dir = _best_checkpoint_dir(result, spec)
        writer.call(trial_id, finalize_trial_op(status, reason, best_dir))
        if status == "failed":
            best = None
        trials.append(TrialOutcome(trial_id, status, int((result.metrics or {}).get("epoch", 0)), best,
                                   _sampled(result.config), None))
    # The plots need no run ids: draw them while the writer thread logs the trials' checkpoints.
    plots_dir = tempfile.mkdtemp(prefix="hpo-cls-plots-")
    _draw_optuna_plots(spec, trials, plots_dir)
    writer.flush()
    for t in trials:
        t.run_id = writer.run_ids.get(t.trial_id)
    ranked = _ranked(trials, spec.mode)
    writer.call("parent", _finalize_parent_op(spec, trials, ranked, plots_dir))
    writer.close(timeout=300)
    shutil.rmtree(plots_dir, ignore_errors=True)
    if writer.failed_ops:
        warn(f"{writer.failed_ops} MLflow writes could not be made")
    return SweepOutcome(sweep_id, writer.run_ids.get("parent"), experiment_path, trials)


def _trial_id(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def discard_unknown_trial_runs(tracking_uri: str, experiment: str, sweep_id: str, known: set[str]) -> int:
    """Delete the sweep's trial runs whose trial Tune does not know after a restore (it started after the
    last experiment snapshot), so the sweep keeps exactly one MLflow run per trial."""
    from mlflow.tracking import MlflowClient

    from hpo_cls.tracking import ROLE_TAG, SWEEP_ID_TAG, TRIAL_ID_TAG

    client = MlflowClient(tracking_uri)
    experiment_obj = client.get_experiment_by_name(experiment)
    if experiment_obj is None:
        return 0
    runs = client.search_runs([experiment_obj.experiment_id], max_results=10_000,
                              filter_string=f"tags.`{SWEEP_ID_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'trial'")
    unknown = [r for r in runs if r.data.tags.get(TRIAL_ID_TAG) not in known]
    for run in unknown:
        client.delete_run(run.info.run_id)
    return len(unknown)


def _sampled(config: dict) -> dict:
    """The trial's sampled hyperparameters (Tune may add keys of its own)."""
    fields = TrialConfig.__dataclass_fields__
    return {k: v for k, v in (config or {}).items() if k in fields}


def _status_counts(trials: list[TrialOutcome]) -> dict[str, int]:
    return {s: sum(t.status == s for t in trials) for s in ("completed", "early_stopped", "failed")}


def _ranked(trials: list[TrialOutcome], mode: str) -> list[TrialOutcome]:
    scored = [t for t in trials if t.best_score is not None]
    return sorted(scored, key=lambda t: t.best_score, reverse=(mode == "max"))


def _best_checkpoint_dir(result, spec: SweepSpec) -> str | None:
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if spec.metric in m]
    if not candidates:
        return result.checkpoint.path if result.checkpoint is not None else None
    pick = max if spec.mode == "max" else min
    checkpoint, _ = pick(candidates, key=lambda cm: cm[1][spec.metric])
    return checkpoint.path


def _draw_optuna_plots(spec: SweepSpec, trials: list[TrialOutcome], directory: str) -> None:
    from hpo_cls.reports import optuna_plots  # first: it selects matplotlib's headless backend

    import matplotlib.pyplot as plt  # noqa: I001

    for name, figure in optuna_plots(spec, trials).items():
        figure.savefig(Path(directory, name), dpi=110, bbox_inches="tight")
        plt.close(figure)


def _finalize_parent_op(spec: SweepSpec, trials: list[TrialOutcome], ranked: list[TrialOutcome], plots_dir: str):
    """Status, counts and best trial on the parent run; trials.csv and the plots in ``plots_dir``."""
    from mlflow.entities import Metric, RunTag

    from hpo_cls.reports import trials_frame

    def op(client, run_id):
        now = int(time.time() * 1000)
        metrics = [Metric(f"n_{k}", v, now, 0) for k, v in _status_counts(trials).items()]
        tags = [RunTag("hpo_cls.status", "completed"), RunTag("hpo_cls.n_trials", str(len(trials)))]
        if ranked:
            metrics.append(Metric(f"best_{spec.metric}", ranked[0].best_score, now, 0))
            tags += [RunTag("hpo_cls.best_trial_id", ranked[0].trial_id),
                     RunTag("hpo_cls.best_run_id", ranked[0].run_id or "")]
        client.log_batch(run_id, metrics=metrics, tags=tags)
        trials_frame(trials).to_csv(Path(plots_dir, "trials.csv"), index=False)
        client.log_artifacts(run_id, plots_dir)
        client.set_terminated(run_id, status="FINISHED")

    return op


def _print_summary(spec: SweepSpec, outcome: SweepOutcome, out) -> None:
    from hpo_cls.reports import format_cell, format_table
    from hpo_cls.tracking import redact_uri

    ranked = _ranked(outcome.trials, spec.mode)
    counts = _status_counts(outcome.trials)
    print(f"\n[hpo-cls] sweep {outcome.sweep_id} finished: " + ", ".join(f"{v} {k}" for k, v in counts.items()), file=out)
    names = [p.name for p in spec.search.space][:6]
    rows = [
        [str(i + 1), t.trial_id, t.status, str(t.epochs_run), f"{t.best_score:.4f}",
         *[format_cell(t.config.get(n, "·")) for n in names], t.run_id or "-"]
        for i, t in enumerate(ranked[:5])
    ]
    print(format_table(["#", "trial", "status", "epochs", f"best {spec.metric}", *names, "mlflow run"], rows), file=out)
    uri = redact_uri(spec.tracking.uri)
    print(f"\nMLflow parent run: {outcome.parent_run_id} (experiment {spec.tracking.experiment!r})", file=out)
    print(f"Open the UI:   hpo-cls ui --tracking-uri {uri}", file=out)
    print(f"Promote:       hpo-cls promote --top 2 --sweep {outcome.sweep_id} --tracking-uri {uri}", file=out, flush=True)

