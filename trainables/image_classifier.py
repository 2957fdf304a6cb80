"""The default Tune trainable: build from config, train epoch by epoch, report + checkpoint each epoch.

Thin on purpose: everything it calls is plain torch code in ``hpo_cls.train.run``, shared with
``hpo-cls train`` and ``hpo-cls promote``. Torch is imported when a trial starts, not with this module: the
sweep's driver imports it to hand the function to Tune, and has no use for torch's 2-4 s of import.
"""

from __future__ import annotations

import atexit
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import ray
from ray import tune

from hpo_cls.errors import NonFiniteLossError
from hpo_cls.spec import trial_config_from_dict
from hpo_cls.compat import checkpoints_linked
from hpo_cls.sweep.cluster import quiet_stop_in_finalizers, use_assigned_cpus
from hpo_cls.sweep.reuse import TEARDOWN_BOUND_S
from hpo_cls.train.trial_setup import TrialSetup

if TYPE_CHECKING:
    from hpo_cls.train.run import TrainingRun


def trainable(config: dict, setup: TrialSetup) -> None:
    # Tune's reset of a reused actor waits for this thread to end (reuse.RESET_TIMEOUT_S): its teardown
    # stays short. What this trial leaves behind is collected when the worker is reset for the next trial
    # (reuse.release_previous_trial). Tune ends a stopped trial by raising SystemExit in this thread and
    # exiting the actor right away; if the interpreter finalizes while this thread still frees tensors,
    # torch aborts the process.
    join = threading.current_thread().join
    atexit.register(join, TEARDOWN_BOUND_S)
    quiet_stop_in_finalizers()
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per epoch is noise
    use_assigned_cpus()
    # Preloaded by the trial's worker where Ray allows (see the module doc)
    from hpo_cls.train.run import TrainingRun

    cfg = trial_config_from_dict(config, base=setup.fixed)
    run = TrainingRun(setup.data, cfg, setup.epochs, gpu_share=setup.gpu_share)
    try:
        _train(run, setup.epochs)
    finally:
        del run
        atexit.unregister(join)


def _train(run: TrainingRun, epochs: int) -> None:
    from hpo_cls.train.checkpoint import EVALUATION_FILE, load_checkpoint, save_trial_checkpoint

    node_id = ray.get_runtime_context().get_node_id()  # which cluster node ran it (tagged in MLflow)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry or a resumed sweep: continue where the last epoch ended
        with checkpoint.as_directory() as directory:
            run.load_state_dict(load_checkpoint(directory))
    while run.epoch < epochs:
        try:
            metrics = run.run_epoch()
        except NonFiniteLossError as exc:
            # Deterministic: a retry would diverge again, so end the trial instead of raising.
            tune.report({"epoch": run.epoch + 1, "val_acc": 0.0, "val_loss": float("inf"), **run.cost_metrics(),
                         "failure": str(exc)})
            return
        with tempfile.TemporaryDirectory() as directory:
            save_trial_checkpoint(run.state_dict(), directory)
            evaluation = {"confusion": run.last_eval.confusion.tolist(), "per_class": run.class_report(run.last_eval)}
            Path(directory, EVALUATION_FILE).write_text(json.dumps(evaluation))
            run.save_val_predictions(directory)  # for promote's ensemble selection, kept with this checkpoint
            # Every result carries the model's costs (measured once): objectives and constraints may use them.
            # The checkpoint reaches a local experiment folder by hard link, not Tune's copy (compat).
            with checkpoints_linked():
                tune.report({**metrics, **run.cost_metrics(), "node_id": node_id},
                            checkpoint=tune.Checkpoint.from_directory(directory))
