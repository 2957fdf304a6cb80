"""After the trials: each trial's best checkpoint and final status, and the sweep's parent run summary
(counts, best trial, trials.csv, Optuna plots) in MLflow."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from hpo_cls.console import warn
from hpo_cls.spec import SweepSpec, trial_config_from_dict
from hpo_cls.spec.recipe import active_trial_params
from hpo_cls.sweep.outcome import (
    SweepOutcome,
    TrialOutcome,
    find_baseline,
    gain_over,
    pareto_members,
    ranked,
    sampled,
    status_counts,
    trial_id_of,
    trial_status,
    trial_values,
)
from hpo_cls.tracking.checkpoints import CheckpointPolicy
from hpo_cls.tracking.runs import BASELINE_TAG, finalize_trial_op, open_sweep_run, open_trial_run
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.writer import MlflowWriter

__all__ = ["summarize_sweep", "BASELINE_TAG"]



def summarize_sweep(spec: SweepSpec, sweep_id: str, experiment_path: str, results,
                    cost: dict[str, float] | None = None) -> SweepOutcome:
    """Log each trial's best checkpoint and final status, and the parent run's summary (with the ``cost``
    metrics: wall time, and the estimate made before). Idempotent, so a resumed sweep can run it again over
    trials that ended before the interruption."""
    writer = MlflowWriter(spec.tracking.uri, spec.tracking.experiment)
    open_sweep_run(writer, sweep_id)
    trials: list[TrialOutcome] = []
    rule = ScoreRule(spec.metric, spec.mode)
    checkpoints = CheckpointPolicy(sweep_id, rule, spec.tracking.keep_checkpoints)
    for result in results:
        trial_id = trial_id_of(result)
        history = result.metrics_dataframe
        best = rule.best(history[spec.metric].dropna()) if history is not None and spec.metric in history else None
        status, reason = trial_status(result.metrics, spec.budget.epochs, errored=result.error is not None)
        if result.error is not None:
            reason = (str(result.error).strip().splitlines() or ["error"])[-1]
        chosen = sampled(result.config)
        config = active_trial_params(trial_config_from_dict(chosen, base=spec.fixed), spec.data.image_size, set(chosen))
        # Bound only: a run finalized when its trial ended keeps its state; the op below skips it.
        open_trial_run(writer, sweep_id, trial_id, {**config, "epochs_budget": spec.budget.epochs}, resume=False)
        best_dir = _best_checkpoint_dir(result, spec)
        writer.call(trial_id, checkpoints.finalize_op(status, reason, best_dir, best))
        if status == "failed":
            best = None
        trials.append(TrialOutcome(trial_id, status, int((result.metrics or {}).get("epoch", 0)), best,
                                   sampled(result.config), None, trial_values(history, result.metrics, spec)))
    # The plots need no run ids: draw them while the writer thread logs the trials' checkpoints.
    plots_dir = tempfile.mkdtemp(prefix="hpo-cls-plots-")
    try:
        _draw_optuna_plots(spec, trials, plots_dir)
        writer.flush()
        for t in trials:
            t.run_id = writer.run_ids.get(t.trial_id)
        best_first = ranked(trials, rule)
        baseline = find_baseline(spec, trials)
        if baseline is not None:
            writer.call(baseline.trial_id, lambda client, run_id: client.set_tag(run_id, BASELINE_TAG, "true"))
        writer.call("parent", checkpoints.prune_op())
        writer.call("parent", _finalize_parent_op(spec, trials, best_first, baseline, plots_dir, cost or {}))
        writer.close(timeout=300)
    finally:
        shutil.rmtree(plots_dir, ignore_errors=True)
    if writer.failed_ops:
        warn(f"{writer.failed_ops} MLflow writes could not be made")
    report = _log_report(spec, sweep_id)
    return SweepOutcome(sweep_id, writer.run_ids.get("parent"), experiment_path, trials,
                        experiment_id=writer.experiment_id if "parent" in writer.run_ids else None, report=report)


def _log_report(spec: SweepSpec, sweep_id: str) -> bool:
    """The sweep's HTML report, read back from MLflow like ``hpo-cls report`` does, on the parent run."""
    from hpo_cls.tracking.report import REPORT_ARTIFACT, log_sweep_report

    try:
        log_sweep_report(spec.tracking.uri, spec.tracking.experiment, sweep_id)
    except Exception as exc:  # noqa: BLE001 - the report is a view of what is logged; never fail the sweep
        warn(f"the sweep's {REPORT_ARTIFACT} could not be made: {type(exc).__name__}: {str(exc)[:300]}")
        return False
    return True


def _best_checkpoint_dir(result, spec: SweepSpec) -> str | None:
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if spec.metric in m]
    if not candidates:
        return result.checkpoint.path if result.checkpoint is not None else None
    rule = ScoreRule(spec.metric, spec.mode)
    checkpoint, _ = min(candidates, key=lambda cm: rule.key(cm[1][spec.metric]))
    return checkpoint.path


def _draw_optuna_plots(spec: SweepSpec, trials: list[TrialOutcome], directory: str) -> None:
    import matplotlib.pyplot as plt  # noqa: I001

    from hpo_cls.sweep.study_plots import (
        optuna_plots,  # first: it selects matplotlib's headless backend
    )
    from hpo_cls.tracking.pareto_plots import pareto_figure

    for name, figure in optuna_plots(spec, trials).items():
        figure.savefig(Path(directory, name), dpi=110, bbox_inches="tight")
        plt.close(figure)
    front = pareto_members(spec, trials)
    if spec.multi_objective and front:
        pareto_figure(spec.objectives, trials, front).savefig(Path(directory, "pareto_front.png"), dpi=110)


def _finalize_parent_op(spec: SweepSpec, trials: list[TrialOutcome], ranked: list[TrialOutcome],
                        baseline: TrialOutcome | None, plots_dir: str, cost: dict[str, float]):
    """Status, counts, best trial and baseline on the parent run; trials.csv and the plots in ``plots_dir``."""
    from mlflow.entities import Metric, RunTag

    from hpo_cls.sweep.study_plots import trials_frame
    from hpo_cls.tracking.pareto_plots import pareto_frame

    def op(client, run_id):
        now = int(time.time() * 1000)
        metrics = [Metric(f"n_{k}", v, now, 0) for k, v in status_counts(trials).items()]
        metrics += [Metric(k, v, now, 0) for k, v in cost.items()]
        if spec.multi_objective:
            front = pareto_members(spec, trials)
            metrics.append(Metric("n_pareto", len(front), now, 0))
            pareto_frame(spec.objectives, trials, front).to_csv(Path(plots_dir, "pareto_front.csv"), index=False)
        tags = [RunTag("hpo_cls.status", "completed"), RunTag("hpo_cls.n_trials", str(len(trials)))]
        if ranked:
            metrics.append(Metric(f"best_{spec.metric}", ranked[0].best_score, now, 0))
            tags += [RunTag("hpo_cls.best_trial_id", ranked[0].trial_id),
                     RunTag("hpo_cls.best_run_id", ranked[0].run_id or "")]
        if baseline is not None and baseline.best_score is not None and ranked:
            tags.append(RunTag("hpo_cls.baseline_trial_id", baseline.trial_id))
            metrics += [Metric(f"baseline_{spec.metric}", baseline.best_score, now, 0),
                        Metric("gain_over_baseline", round(gain_over(baseline, ranked[0], spec.mode), 4), now, 0)]
        client.log_batch(run_id, metrics=metrics, tags=tags)
        trials_frame(trials).to_csv(Path(plots_dir, "trials.csv"), index=False)
        client.log_artifacts(run_id, plots_dir)
        client.set_terminated(run_id, status="FINISHED")

    return op
