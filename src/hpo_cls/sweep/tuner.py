"""``hpo-cls sweep``: the Tuner wiring (searcher, scheduler, callbacks, run config) and its run to the end."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, TextIO

from hpo_cls.console import say
from hpo_cls.errors import SweepError
from hpo_cls.search.optuna_space import DefineByRun
from hpo_cls.spec import SweepSpec
from hpo_cls.sweep.cluster import SWEEP_OBJECT_STORE_BYTES, connect_ray
from hpo_cls.sweep.estimate import SweepEstimate, format_actual
from hpo_cls.sweep.experiment import git_commit, resolve_trainable, sweep_directory, trial_dirname, versions
from hpo_cls.sweep.outcome import SweepOutcome, print_summary, trial_id_of
from hpo_cls.sweep.preflight import ParameterBudget, check_cluster_resources
from hpo_cls.tracking.runs import constraints_param, objectives_param
from hpo_cls.sweep.reuse import reusable_trainable
from hpo_cls.sweep.stop import GracefulStop
from hpo_cls.train.trial_setup import TrialSetup

__all__ = ["run_sweep"]

# Snapshot Tune's experiment state every few seconds (default: adaptive, often much rarer), so a killed
# driver loses as little as possible. MLflow is the record: Tune's CSV and TensorBoard loggers would only
# add driver work per result (result.json stays: the ResultGrid reads the history from it). hpo-cls
# prints its own trial table; Ray's new console output prints banners even when silenced. With
# per-epoch checkpoints Tune's warning that snapshots are frequent is expected, not a problem.
_TUNE_ENVIRONMENT = {
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def run_sweep(spec: SweepSpec, *, num_classes: int, address: str | None = None, name: str | None = None,
              resume: bool = False, owns_ray: bool = False, quiet: bool = False,
              warm_start: Sequence[str] = (), estimate: SweepEstimate | None = None,
              out: TextIO | None = None) -> SweepOutcome:
    """Run (or resume) a sweep to the end and log its summary to MLflow (SIGTERM: see :mod:`.stop`).

    Joins ``address`` or starts a local Ray unless one is connected already; ``owns_ray``: the caller connected it
    for this sweep, so it is shut down here as soon as the trials have ended. ``quiet``: print the final summary
    only. ``warm_start``: ids of earlier sweeps (same tracking store) whose finished trials the searcher learns
    from before its first proposal. ``estimate``: printed against the time the trials took."""
    if resume and warm_start:
        raise SweepError("{warm_start} starts a new sweep; a resumed sweep keeps its searcher's history")
    import ray

    from hpo_cls.sweep.callbacks import restoring_tracker
    from hpo_cls.sweep.progress import SweepProgress

    out = out or sys.stdout

    def report(message: str) -> None:
        if not quiet:
            say(message, out)

    storage = str(spec.storage_path if isinstance(spec.storage_path, str)
                  else Path(spec.storage_path).expanduser().resolve())
    sweep_id, experiment_path = sweep_directory(storage, spec.name, name, resume)
    trainable, reuse_actors = _trainable(spec)
    for key, value in _TUNE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    started = connect_ray(address, object_store_bytes=SWEEP_OBJECT_STORE_BYTES) or owns_ray
    try:
        check_cluster_resources(spec)  # a trial no node can run would wait forever
    except SweepError:
        if started:
            ray.shutdown()
        raise
    _announce(spec, sweep_id, report)
    progress = SweepProgress(sweep_id, spec.budget.num_samples, spec.budget.epochs, spec.metric, spec.mode,
                             [p.name for p in spec.search.space], spec.budget.time_budget_s, quiet=quiet, stream=out)
    try:
        with GracefulStop(sweep_id) as stop:
            if resume:
                # The interrupted run's callbacks, unpickled, are this run's console and its tracker with the
                # store URI from this run's spec (it was pickled without its password).
                with progress.taking_over(), restoring_tracker(sweep_id, spec.tracking.uri):
                    tuner, searcher = _restored_tuner(spec, sweep_id, experiment_path, trainable, report), None
            else:
                tuner, searcher = _new_tuner(spec, sweep_id, storage, trainable, reuse_actors, num_classes, progress,
                                             warm_start, report)
            outcome, wall_s = _fit_and_summarize(spec, sweep_id, experiment_path, tuner, searcher, progress,
                                                 estimate, report, stop_ray=started, stop=stop)
    finally:
        if started:
            ray.shutdown()
    print_summary(spec, outcome, out)
    if estimate is not None:
        say(format_actual(estimate.wall_s, estimate.trial_epochs, wall_s, sum(t.epochs_run for t in outcome.trials)),
            out)
    return outcome


def _fit_and_summarize(spec: SweepSpec, sweep_id: str, experiment_path: str, tuner, searcher, progress,
                       estimate: SweepEstimate | None, report: Callable[[str], None], stop_ray: bool,
                       stop: GracefulStop):
    """Run the trials, then log the summary to MLflow unless a signal stopped them; ``(outcome, trials' s)``."""
    import ray

    from hpo_cls.sweep.summary import summarize_sweep

    stop.progress = progress  # told of a signal, so it does not report the trials Tune stops as ended
    fit_start = time.monotonic()
    try:
        results = tuner.fit()
    finally:
        progress.close()
    stop.check()
    wall_s = time.monotonic() - fit_start
    _report_searcher(searcher, report)
    report("all trials ended; logging checkpoints, the sweep summary and its report to MLflow")
    cost = {"wall_s": wall_s} if estimate is None else {
        "wall_s": wall_s, "estimated_wall_s": estimate.wall_s, "estimated_trial_epochs": estimate.trial_epochs}
    with ThreadPoolExecutor(max_workers=1) as pool:
        summary = pool.submit(summarize_sweep, spec, sweep_id, experiment_path, results, cost)
        if stop_ray:  # the summary needs only local files: let Ray's processes stop meanwhile
            ray.shutdown()
        return summary.result(), wall_s


def _report_searcher(searcher, report: Callable[[str], None]) -> None:
    if searcher is None or not searcher.suggestions:
        return
    report(f"searcher: {searcher.suggestions} proposals, {1000 * searcher.suggest_seconds / searcher.suggestions:.1f} ms "
        "each" + (f", {searcher.rejected_over_budget} over max_params skipped" if searcher.rejected_over_budget else "")
        + (f", {searcher.rejected_infeasible} outside the constraints skipped" if searcher.rejected_infeasible else ""))


def _trainable(spec: SweepSpec):
    """``(trainable, reuse_actors)``: the spec's trainable with the sweep-wide setup bound and each trial's
    resources attached, and whether trials may reuse a finished trial's worker (:mod:`.reuse`)."""
    from ray import tune

    setup = TrialSetup(data=spec.data, fixed=spec.fixed, epochs=spec.budget.epochs, gpu_share=spec.resources.gpu)
    trainable, reuse_actors = reusable_trainable(tune.with_parameters(resolve_trainable(spec.trainable), setup=setup))
    return tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}), reuse_actors


def _announce(spec: SweepSpec, sweep_id: str, report: Callable[[str], None]) -> None:
    import ray

    report(f"sweep {sweep_id}: {spec.budget.num_samples} trials, up to {spec.budget.epochs} epochs each, "
           f"{spec.budget.max_concurrent} at a time, scheduler {spec.scheduler.type}, sampler {spec.search.sampler}")
    if spec.multi_objective or spec.constraints:
        report(f"objectives {objectives_param(spec.objectives)} (ASHA stops on {spec.metric}); "
               f"constraints {constraints_param(spec.constraints)}")
    resources = ray.cluster_resources()
    report(f"Ray: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
           f"each trial takes {spec.resources.cpu:g} CPU, {spec.resources.gpu:g} GPU")


def _restored_tuner(spec: SweepSpec, sweep_id: str, experiment_path: str, trainable,
                    report: Callable[[str], None]):
    """Tune's own restore, after dropping MLflow runs of trials Tune's last snapshot does not know."""
    from ray import tune

    from hpo_cls.tracking.store import discard_unknown_trial_runs

    report(f"resuming from {experiment_path}")
    tuner = tune.Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    known = {trial_id_of(result) for result in tuner.get_results()}
    discarded = discard_unknown_trial_runs(spec.tracking.uri, spec.tracking.experiment, sweep_id, known)
    if discarded:
        report(f"discarded {discarded} MLflow run(s) of trials that started after Tune's last experiment snapshot; "
               "the searcher, restored to that snapshot, proposes them again")
    return tuner


def _new_tuner(spec: SweepSpec, sweep_id: str, storage: str, trainable, reuse_actors: bool, num_classes: int,
               progress, warm_start: Sequence[str], report: Callable[[str], None]):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import ConcurrencyLimiter

    history, first = _warm_start(spec, warm_start, report)
    searcher = _searcher(spec, num_classes, sweep_id, report, history=history, first=first)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.budget.max_concurrent),
            scheduler=_scheduler(spec),
            num_samples=spec.budget.num_samples,
            time_budget_s=spec.budget.time_budget_s,
            trial_dirname_creator=trial_dirname,
            # A new trial takes over a finished trial's worker process instead of starting one (and
            # importing torch) again; trials share resources, so every actor fits every trial.
            reuse_actors=reuse_actors,
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
            callbacks=[JsonLoggerCallback(), _tracker(spec, sweep_id, {"warm_start_from": ",".join(warm_start) or "none",
                                                                       "warm_start_trials": len(history)}), progress],
            verbose=0,
        ),
    )
    return tuner, searcher


def _searcher(spec: SweepSpec, num_classes: int, sweep_id: str, report: Callable[[str], None],
              history: Sequence = (), first: Sequence[dict] = ()):
    """The sweep's searcher; its Optuna study is named ``sweep_id`` where ``search.storage`` puts it, holding
    ``history`` (earlier sweeps' trials) with the ``first`` points enqueued (see :func:`_warm_start`)."""
    from hpo_cls.search.samplers import build_sampler
    from hpo_cls.search.searcher import StudySearcher
    from hpo_cls.search.optuna_space import baseline_point
    from hpo_cls.search.dashboard import dashboard_command
    from hpo_cls.search.storage import prepare_storage, storage_problem, study_storage
    from hpo_cls.sweep.preflight import FlopsCount
    from hpo_cls.tracking.uri import redact_uri

    storage = study_storage(spec.search.storage, spec.tracking.uri)
    if storage is not None:
        prepare_storage(storage)
        report(f"Optuna study {sweep_id} in {redact_uri(storage)}; live dashboard: "
               f"{dashboard_command(sweep_id, spec.tracking.uri, spec.tracking.experiment)}")
    else:
        stored = "tracking" if storage_problem("tracking", spec.tracking.uri) is None else "sqlite:///optuna.db"
        report("Optuna study in memory: for a live dashboard (hpo-cls dashboard), sweep with "
               f"--set search.storage={stored}")
    flops_constrained = any(c.metric == "flops_g" for c in spec.constraints)
    return StudySearcher(
        DefineByRun(spec.search.space, spec.fixed),
        objectives=spec.objectives,
        constraints=spec.constraints,
        sampler=build_sampler(spec.search, spec.budget.num_samples),
        max_epochs=spec.budget.epochs,
        param_count=ParameterBudget(spec.fixed, num_classes),
        max_params=spec.max_params,
        static_costs=FlopsCount(spec.fixed, num_classes, spec.data.image_size) if flops_constrained else None,
        # The grid sampler reaches the fixed configuration (a grid point, checked at load) by itself;
        # enqueued first, that point would be trained twice and another one never.
        baseline=(baseline_point(spec.search.space, spec.fixed)
                  if spec.search.baseline_first and spec.search.sampler != "grid" else None),
        history=history,
        first=first,
        storage=storage,
        study_name=sweep_id,
    )


def _scheduler(spec: SweepSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", max_t=spec.budget.epochs, grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)


def _warm_start(spec: SweepSpec, sweep_ids: Sequence[str], report: Callable[[str], None]) -> tuple[list, list[dict]]:
    """The finished trials of earlier sweeps that are points of this one (Optuna trials for the study) and
    the parameters of the best of them, which the sweep trains first; both empty without ``sweep_ids``."""
    if not sweep_ids:
        return [], []
    from hpo_cls.search import WARM_START_MEASURED
    from hpo_cls.search.samplers import startup_trials
    from hpo_cls.search.warm_start import first_points, rerun_count, warm_start_trials
    from hpo_cls.tracking.history import load_finished_trials
    from hpo_cls.tracking.score import ScoreRule

    starts = []
    for sweep_id in sweep_ids:
        recorded = load_finished_trials(spec.tracking.uri, spec.tracking.experiment, sweep_id,
                                        history_metric=None if spec.multi_objective else spec.metric)
        starts.append(warm_start_trials(recorded, spec.search.space, spec.fixed, spec.objectives, spec.constraints,
                                        spec.budget.epochs))
        report(f"warm start from {sweep_id}: {starts[-1].describe()}")
    history = [trial for start in starts for trial in start.trials]
    # The grid sampler visits its own points; enqueued ones would be trained twice.
    first = [] if spec.search.sampler == "grid" else first_points(
        starts, ScoreRule(spec.metric, spec.mode), rerun_count(spec.budget.num_samples, spec.budget.max_concurrent))
    if first:
        report(f"warm start: the first {len(first)} trial(s) train the earlier best configuration(s) again")
    startup = startup_trials(spec.search, spec.budget.num_samples)
    if startup and history:
        report(f"warm start: {spec.search.sampler}'s random start-up ({startup} trials) "
               + ("skipped" if len(history) >= startup else f"shortened to {startup - len(history)}")
               + f": the study holds {len(history)} earlier trial(s)")
    report(f"warm start: its benefit in epochs is unproven ({WARM_START_MEASURED})")
    return history, first


def _tracker(spec: SweepSpec, sweep_id: str, extra_params: dict):
    """The MLflow callback, its parent run opened (with the spec as ``spec.yaml``) before trials start."""
    from hpo_cls.search.dashboard import STORAGE_PARAM, recorded_storage
    from hpo_cls.sweep.callbacks import SweepTracker
    from hpo_cls.tracking.uri import redact_text  # a tracking.uri written in the spec may carry a password

    tracker = SweepTracker(
        tracking_uri=spec.tracking.uri, experiment=spec.tracking.experiment, sweep_id=sweep_id,
        sweep_name=spec.name, fixed=spec.fixed, epochs=spec.budget.epochs, metric=spec.metric, mode=spec.mode,
        keep_checkpoints=spec.tracking.keep_checkpoints, image_size=spec.data.image_size,
        parent_tags={
            "hpo_cls.spec_file": str(spec.source or ""),
            "hpo_cls.git_commit": (git_commit(spec.source.parent) if spec.source else None) or "none",
            **{f"hpo_cls.version.{k}": v for k, v in versions().items()},
        },
        parent_params={
            "sampler": spec.search.sampler, "scheduler": spec.scheduler.type, "num_samples": spec.budget.num_samples,
            "epochs": spec.budget.epochs, "max_concurrent": spec.budget.max_concurrent, "metric": spec.metric,
            "objectives": objectives_param(spec.objectives), "constraints": constraints_param(spec.constraints),
            "data_root": str(spec.data.root), "image_size": spec.data.image_size,
            "searched": ",".join(spec.search.names),
            "max_params": spec.max_params, "baseline_first": spec.search.baseline_first,
            STORAGE_PARAM: recorded_storage(spec.search.storage, spec.tracking.uri), **extra_params,
        },
    )
    tracker.start()
    spec_text = redact_text(spec.source.read_text()) if spec.source and spec.source.is_file() else ""
    if spec_text:
        tracker.writer.call("parent", lambda client, run_id: client.log_text(run_id, spec_text, "spec.yaml"))
    return tracker
