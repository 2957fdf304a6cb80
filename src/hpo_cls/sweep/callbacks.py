"""The Tune callback that records a sweep in MLflow: one parent run, one nested run per trial.

It runs in the driver and are pickled into Tune's experiment state, so they hold only plain data
until ``setup`` (a resumed sweep gets them back and calls ``setup`` again).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from ray import tune

from hpo_cls.spec import COST_METRICS, KEEP_CHECKPOINTS, TrialConfig, trial_config_from_dict
from hpo_cls.spec.recipe import active_trial_params
from hpo_cls.sweep.outcome import error_text, trial_status
from hpo_cls.tracking.checkpoints import CheckpointPolicy
from hpo_cls.tracking.runs import (
    NODE_TAG,
    SWEEP_NAME_TAG,
    end_run_op,
    open_sweep_run,
    open_trial_run,
)
from hpo_cls.tracking.score import ScoreRule
from hpo_cls.tracking.ui import sweep_view_op
from hpo_cls.tracking.uri import redact_uri
from hpo_cls.tracking.writer import MlflowWriter

__all__ = ["SweepTracker", "METRIC_KEYS", "restoring_tracker"]

# (sweep id, store URI) of a resuming driver, while Tune unpickles the interrupted run's tracker.
_RESTORING: ContextVar[tuple[str, str] | None] = ContextVar("hpo_cls_restoring_tracker", default=None)

METRIC_KEYS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s", "best_val_acc",
    *COST_METRICS,
)
COST_STEP = 0  # a model's costs do not change over epochs: one point each, not a flat chart per epoch
COST_DIGITS = 4  # 11.6895 M parameters, 0.5561 GFLOPs: what the runs table shows, not float noise


class SweepTracker(tune.Callback):
    """One MLflow parent run per sweep and one nested child run per trial, written asynchronously."""

    image_size: int | None = None  # the data's (which keys act depends on it); None in older pickles

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, sweep_name: str, fixed: TrialConfig,
                 epochs: int, metric: str, mode: str, parent_tags: dict[str, str], parent_params: dict[str, Any],
                 keep_checkpoints: int = KEEP_CHECKPOINTS, image_size: int | None = None):
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.sweep_id, self.sweep_name = sweep_id, sweep_name
        self.fixed, self.epochs, self.image_size = fixed, epochs, image_size
        self.metric, self.mode = metric, mode
        self.rule = ScoreRule(metric, mode)
        self.parent_tags, self.parent_params = parent_tags, parent_params
        self.checkpoints = CheckpointPolicy(sweep_id, self.rule, keep_checkpoints)
        self.writer: MlflowWriter | None = None
        self._opened: set[str] = set()
        self._nodes: dict[str, str] = {}  # trial id -> Ray node id it last ran on
        self._best: dict[str, tuple[float, str]] = {}  # trial id -> (score, path) of its best checkpoint
        self._best_score: dict[str, float] = {}  # trial id -> its best value of the sweep's metric so far

    def __getstate__(self):
        # The writer (a thread) is made again by setup() when a resumed sweep restores this callback. Tune
        # pickles this callback into tuner.pkl: the store URI goes there without its password, and a resumed
        # sweep sets it again from its spec (sweep.tuner) before setup() connects.
        return {**self.__dict__, "writer": None, "_opened": set(), "tracking_uri": redact_uri(self.tracking_uri)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "checkpoints" not in state:  # pickled before tracking.keep_checkpoints: every trial kept its own
            self.checkpoints = CheckpointPolicy(self.sweep_id, self.rule, 1_000_000)
        restoring = _RESTORING.get()
        if restoring is not None and restoring[0] == self.sweep_id:
            self.tracking_uri = restoring[1]

    def setup(self, **info) -> None:
        self.start()

    def start(self) -> None:
        """Connect and open (or reopen) the parent run; idempotent."""
        if self.writer is not None:
            return
        self.writer = MlflowWriter(self.tracking_uri, self.experiment)
        open_sweep_run(self.writer, self.sweep_id,
                       tags={SWEEP_NAME_TAG: self.sweep_name, **self.parent_tags}, params=self.parent_params)
        searched = [name for name in str(self.parent_params.get("searched", "")).split(",") if name]
        self.writer.call("parent", sweep_view_op(self.sweep_id, searched, self.rule))

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._open_child(trial)

    def _open_child(self, trial) -> None:
        if trial.trial_id in self._opened:
            return
        self._opened.add(trial.trial_id)
        cfg = trial_config_from_dict(trial.config, base=self.fixed)
        sampled = set(trial.config) & set(TrialConfig.__dataclass_fields__)
        if self.image_size is None:  # a tracker pickled before it knew the size: crop_scale may have acted
            sampled.add("crop_scale")
        params = active_trial_params(cfg, self.image_size or 0, sampled)
        open_trial_run(self.writer, self.sweep_id, trial.trial_id,
                       {**params, "epochs_budget": self.epochs})

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._open_child(trial)
        metrics = {k: result[k] for k in METRIC_KEYS if isinstance(result.get(k), (int, float))}
        costs = {k: round(float(metrics.pop(k)), COST_DIGITS) for k in COST_METRICS if k in metrics}
        if costs:  # every result carries them; the writer keeps the first of a step, so each is logged once
            self.writer.log_metrics(trial.trial_id, costs, step=COST_STEP)
        score = result.get(self.metric)
        if isinstance(score, (int, float)) and math.isfinite(score):
            # best_<metric> on every trial run: what promote, the report and `sweeps` rank by
            best = self._best_score.get(trial.trial_id)
            if best is None or self.rule.better(score, best):
                self._best_score[trial.trial_id] = best = float(score)
            metrics.setdefault(self.rule.best_metric, best)
        self.writer.log_metrics(trial.trial_id, metrics, step=int(result.get("epoch", 0)))
        node = result.get("node_id")
        if node and self._nodes.get(trial.trial_id) != node:
            self._nodes[trial.trial_id] = node
            self.writer.call(trial.trial_id, lambda client, run_id: client.set_tag(run_id, NODE_TAG, node))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # Tune has just processed the result this checkpoint belongs to.
        score = (trial.last_result or {}).get(self.metric)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            return
        best = self._best.get(trial.trial_id)
        if best is None or self.rule.better(score, best[0]):
            self._best[trial.trial_id] = (float(score), checkpoint.path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = trial_status(trial.last_result, self.epochs, errored=False)
        self._end_child(trial, status, reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end_child(trial, "failed", error_text(trial))

    def _end_child(self, trial, status: str, reason: str | None) -> None:
        self._open_child(trial)
        tags = {"hpo_cls.epochs_run": str(int((trial.last_result or {}).get("epoch", 0)))}
        best = self._best.get(trial.trial_id)
        if best is not None and Path(best[1]).is_dir():
            # Its checkpoint and reports reach MLflow now, while other trials train, not all at the end.
            # Tune keeps a trial's best checkpoint (num_to_keep ranks them by the same metric); MLflow, the
            # best checkpoints of tracking.keep_checkpoints trials.
            self.writer.call(trial.trial_id, self.checkpoints.finalize_op(status, reason, best[1],
                                                                          self._best_score.get(trial.trial_id), tags))
        else:  # the sweep's summary logs whatever checkpoint Tune reports for it
            self.writer.call(trial.trial_id, end_run_op(status, reason, tags))

    def on_experiment_end(self, trials, **info) -> None:
        self.writer.flush()


@contextmanager
def restoring_tracker(sweep_id: str, tracking_uri: str) -> Iterator[None]:
    """Within: a pickled tracker of this sweep unpickles with ``tracking_uri`` (``Tuner.restore`` unpickles
    the callbacks and Tune has no public getter for them; the pickle holds the URI without its password)."""
    token = _RESTORING.set((sweep_id, tracking_uri))
    try:
        yield
    finally:
        _RESTORING.reset(token)
