"""Tune callbacks of a sweep: MLflow runs per trial, and a readable progress table.

Both run in the driver and are pickled into Tune's experiment state, so they hold only plain data
until ``setup`` (a resumed sweep gets them back and calls ``setup`` again).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

from hpo_cls.config import TrialConfig, flatten_trial_config, trial_config_from_dict
from hpo_cls.reports import format_cell, format_table
from hpo_cls.tracking import (
    FINALIZED_TAG,
    NODE_TAG,
    SWEEP_NAME_TAG,
    MlflowWriter,
    end_run_op,
    open_sweep_run,
    open_trial_run,
)

__all__ = ["SweepTracker", "ProgressTable", "trial_status", "finalize_trial_op", "METRIC_KEYS"]

METRIC_KEYS = (
    "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s", "best_val_acc",
)


def trial_status(last_result: dict | None, epochs: int, errored: bool) -> tuple[str, str | None]:
    """``(status, reason)`` of a finished trial: completed | early_stopped | failed."""
    if errored:
        return "failed", None
    if last_result and last_result.get("failure"):
        return "failed", str(last_result["failure"])
    if not last_result or last_result.get("epoch", 0) < epochs:
        return "early_stopped", None
    return "completed", None


def finalize_trial_op(status: str, reason: str | None, checkpoint_dir: str | None,
                      extra_tags: dict[str, str] | None = None):
    """An :meth:`MlflowWriter.call` op that closes a trial's run with its status and logs its best
    checkpoint (as a model bundle, for ``promote``), confusion matrix and per-class report. Idempotent:
    a run already finalized is left alone."""
    from hpo_cls.checkpoint import EVALUATION_FILE, MODEL_FILE, load_checkpoint, model_bundle, save_checkpoint
    from hpo_cls.reports import confusion_matrix_figure, per_class_frame

    end_run = end_run_op(status, reason, {FINALIZED_TAG: "1", **(extra_tags or {})})

    def op(client, run_id):
        tags = client.get_run(run_id).data.tags
        if tags.get(FINALIZED_TAG) == "1":
            return
        if checkpoint_dir and Path(checkpoint_dir).is_dir():
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(model_bundle(load_checkpoint(checkpoint_dir)), Path(tmp, MODEL_FILE))
                evaluation_file = Path(checkpoint_dir, EVALUATION_FILE)
                if evaluation_file.is_file():
                    shutil.copy(evaluation_file, tmp)
                client.log_artifacts(run_id, tmp, "checkpoint")
            if status == "completed" and evaluation_file.is_file():
                evaluation = json.loads(evaluation_file.read_text())
                with tempfile.TemporaryDirectory() as tmp:
                    per_class_frame(evaluation["per_class"]).to_csv(Path(tmp, "per_class_report.csv"), index=False)
                    names = [row["class"] for row in evaluation["per_class"]]
                    figure = confusion_matrix_figure(evaluation["confusion"], names)
                    figure.savefig(Path(tmp, "confusion_matrix.png"), dpi=110)
                    client.log_artifacts(run_id, tmp, "evaluation")
        end_run(client, run_id)

    return op


def _error_text(trial) -> str:
    try:
        with open(trial.error_file) as f:
            lines = [line for line in f.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else "trial raised an error"
    except (OSError, TypeError):
        return "trial raised an error"


class SweepTracker(tune.Callback):
    """One MLflow parent run per sweep and one nested child run per trial, written asynchronously."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_id: str, sweep_name: str, fixed: TrialConfig,
                 epochs: int, metric: str, mode: str, parent_tags: dict[str, str], parent_params: dict[str, Any]):
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.sweep_id, self.sweep_name = sweep_id, sweep_name
        self.fixed, self.epochs = fixed, epochs
        self.metric, self.mode = metric, mode
        self.parent_tags, self.parent_params = parent_tags, parent_params
        self.writer: MlflowWriter | None = None
        self._opened: set[str] = set()
        self._nodes: dict[str, str] = {}  # trial id -> Ray node id it last ran on
        self._best: dict[str, tuple[float, str]] = {}  # trial id -> (score, path) of its best checkpoint

    def __getstate__(self):
        # The writer (a thread) is made again by setup() when a resumed sweep restores this callback.
        return {**self.__dict__, "writer": None, "_opened": set()}

    def setup(self, **info) -> None:
        self.start()

    def start(self) -> None:
        """Connect and open (or reopen) the parent run; idempotent."""
        if self.writer is not None:
            return
        self.writer = MlflowWriter(self.tracking_uri, self.experiment)
        open_sweep_run(self.writer, self.sweep_id,
                       tags={SWEEP_NAME_TAG: self.sweep_name, **self.parent_tags}, params=self.parent_params)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._open_child(trial)

    def _open_child(self, trial) -> None:
        if trial.trial_id in self._opened:
            return
        self._opened.add(trial.trial_id)
        params = flatten_trial_config(trial_config_from_dict(trial.config, base=self.fixed))
        open_trial_run(self.writer, self.sweep_id, trial.trial_id,
                       {**params, "epochs_budget": self.epochs})

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._open_child(trial)
        metrics = {k: result[k] for k in METRIC_KEYS if isinstance(result.get(k), (int, float))}
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
        if best is None or (score > best[0] if self.mode == "max" else score < best[0]):
            self._best[trial.trial_id] = (float(score), checkpoint.path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = trial_status(trial.last_result, self.epochs, errored=False)
        self._end_child(trial, status, reason)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end_child(trial, "failed", _error_text(trial))

    def _end_child(self, trial, status: str, reason: str | None) -> None:
        self._open_child(trial)
        tags = {"hpo_cls.epochs_run": str(int((trial.last_result or {}).get("epoch", 0)))}
        best = self._best.get(trial.trial_id)
        if best is not None and Path(best[1]).is_dir():
            # Its checkpoint and reports reach MLflow now, while other trials train, not all at the end.
            # Tune keeps a trial's best checkpoint (num_to_keep ranks them by the same metric).
            self.writer.call(trial.trial_id, finalize_trial_op(status, reason, best[1], tags))
        else:  # the sweep's summary logs whatever checkpoint Tune reports for it
            self.writer.call(trial.trial_id, end_run_op(status, reason, tags))

    def on_experiment_end(self, trials, **info) -> None:
        self.writer.flush()


class ProgressTable(tune.Callback):
    """Prints a compact trial table when something changed, at most every ``interval_s`` seconds,
    plus one line per finished trial. Plain text: readable in a terminal and in CI logs alike."""

    def __init__(self, param_names: list[str], epochs: int, metric: str, interval_s: float = 15.0,
                 stream=None):
        self.param_names, self.epochs, self.metric = param_names, epochs, metric
        self.interval_s = interval_s
        self.stream = stream
        self._last_print = 0.0
        self._dirty = False

    def __getstate__(self):
        state = self.__dict__.copy()
        state["stream"] = None
        return state

    def _out(self) -> Any:
        return self.stream or sys.stdout

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._dirty = True

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = trial_status(trial.last_result, self.epochs, errored=False)
        self._line(trial, status + (f" ({reason})" if reason else ""))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trial, f"failed ({_error_text(trial)})")

    def _line(self, trial, what: str) -> None:
        result = trial.last_result or {}
        score = result.get(self.metric)
        score_text = f"{self.metric} {score:.4f}" if isinstance(score, float) else ""
        print(f"[hpo-cls] trial {trial.trial_id} {what} after {result.get('epoch', 0)}/{self.epochs} epochs "
              f"{score_text}", file=self._out(), flush=True)
        self._dirty = True

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if self._dirty and now - self._last_print >= self.interval_s:
            self._last_print, self._dirty = now, False
            print(self.render(trials), file=self._out(), flush=True)

    def on_experiment_end(self, trials, **info) -> None:
        print(self.render(trials), file=self._out(), flush=True)

    def render(self, trials) -> str:
        rows = []
        for trial in trials:
            result = trial.last_result or {}
            score = result.get(self.metric)
            status = trial.status.lower()
            if status == "terminated":
                status = trial_status(result, self.epochs, errored=False)[0]
            rows.append([
                trial.trial_id,
                status,
                f"{result.get('epoch', 0)}/{self.epochs}",
                f"{score:.4f}" if isinstance(score, float) else "-",
                *[format_cell(trial.config.get(name, "·")) for name in self.param_names],
            ])
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.status.lower()] = counts.get(trial.status.lower(), 0) + 1
        header = ["trial", "status", "epoch", self.metric, *self.param_names]
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"[hpo-cls] {len(trials)} trials: {summary}\n" + format_table(header, rows)

