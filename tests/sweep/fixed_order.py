"""A test trainable whose scores are fixed by the order its trials first start in.

Trial k (1-based) reports ``val_acc = 1/k`` at every epoch, so with one trial at a time ASHA's decisions
are known in advance (the first trial completes, every later one is below the rung's cutoff). Once
stopped, a trial's thread sleeps ``FIXED_ORDER_TEARDOWN_S`` before it ends, the slow teardown that
Tune's reset of a reused worker waits for. Each start is appended to ``starts.log`` in
``FIXED_ORDER_DIR`` (trial id, process id), which the trial processes inherit from the driver.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ray import tune


def _rank(folder: Path, trial_id: str) -> int:
    """1 for the first trial ever started, 2 for the next...; a retried trial keeps its rank."""
    marker = folder / f"rank-{trial_id}"
    if not marker.exists():
        marker.write_text(str(len(list(folder.glob("rank-*"))) + 1))
    return int(marker.read_text())


def trainable(config: dict, setup) -> None:
    folder = Path(os.environ["FIXED_ORDER_DIR"])
    trial_id = tune.get_context().get_trial_id()
    with open(folder / "starts.log", "a") as log:
        log.write(f"{trial_id} {os.getpid()}\n")
    score = 1.0 / _rank(folder, trial_id)
    try:
        for epoch in range(1, setup.epochs + 1):
            tune.report({"epoch": epoch, "val_acc": score, "val_loss": 1.0 - score, "train_loss": 1.0 - score})
    finally:
        time.sleep(float(os.environ.get("FIXED_ORDER_TEARDOWN_S", "0")))
