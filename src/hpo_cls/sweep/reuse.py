"""Tune's actor reuse without losing a trial.

With ``reuse_actors`` Tune hands a finished trial's worker process to the next trial: its
``FunctionTrainable.reset_config`` stops the previous trial's thread and waits
``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (Tune's default: 2 s) for it to end. A teardown slower than that
(a stopped trial unwinding on a busy machine) makes the reset return False, and Tune then aborts the
*next* trial before it starts: no retry, no callback, so no MLflow run. Here the trial processes get a
timeout that covers the trainables' bounded teardown (:data:`TEARDOWN_BOUND_S`), and a reset that still
fails sends the trial to a fresh worker through Tune's own retry path (``FailureConfig``), where its
MLflow run records it like any other trial. Where Tune's hook for that is unavailable
(:func:`hpo_cls.compat.with_tune_mixin`), actors are not reused: every trial starts in a fresh worker.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Callable

from hpo_cls.compat import release_cuda_memory, with_tune_mixin

__all__ = ["TEARDOWN_BOUND_S", "RESET_TIMEOUT_S", "trial_process_environment", "FreshWorkerOnFailedReset",
           "reusable_trainable", "release_previous_trial"]

TEARDOWN_BOUND_S = 10  # the longest a trainable's thread may take to end once Tune stops it
RESET_TIMEOUT_S = 3 * TEARDOWN_BOUND_S  # what a reset waits for it: the bound, with room for a busy machine
_RESET_TIMEOUT_VAR = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # read by Tune inside each trial process


def trial_process_environment() -> dict[str, str]:
    """Environment variables the trial processes need (a value already set here wins, e.g. in a test): the
    reset timeout, read by Tune in each trial process."""
    return {_RESET_TIMEOUT_VAR: os.environ.get(_RESET_TIMEOUT_VAR, str(RESET_TIMEOUT_S))}


def release_previous_trial() -> None:
    """In a reused worker process, before its next trial allocates: collect what the previous trial left
    behind (in that trial's own teardown it would hold up Tune's reset, above). Trials with a fractional
    GPU share the device, so the memory goes back to it rather than staying in torch's cache (cf. ray#23971).
    A fresh worker's first trial has nothing to release and skips the full collection (~0.3 s on a CPU)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        release_cuda_memory(torch)


class FreshWorkerOnFailedReset:
    """Mixed into the trainable's Tune class (:func:`reusable_trainable`).

    A reset that fails (the previous trial's thread still running) is reported to Tune as a success, and
    the trial's first training step then raises: the trial is RUNNING by then, so Tune retries it on a
    fresh worker process within ``FailureConfig.max_failures``, and its MLflow run is opened and closed
    as for any trial. Tune's own handling of a failed reset would abort the trial unrecorded."""

    _reuse_failed = False

    def reset_config(self, new_config) -> bool:
        self._reuse_failed = not super().reset_config(new_config)
        if not self._reuse_failed:
            release_previous_trial()
        return True

    def step(self):
        if self._reuse_failed:
            timeout = trial_process_environment()[_RESET_TIMEOUT_VAR]
            raise RuntimeError(f"this worker process could not be reused: the previous trial's thread was still "
                               f"running {timeout} s after it was stopped; retrying the trial on a fresh worker")
        return super().step()


def reusable_trainable(trainable: Callable[[dict], None]) -> tuple[Callable[[dict], None], bool]:
    """``(trainable for Tune, reuse_actors)``: ``trainable`` (a function for Tune) with
    :class:`FreshWorkerOnFailedReset` mixed into its Tune class, and actor reuse on; where Tune's hook for the
    mixin is unavailable, ``trainable`` as it is and actor reuse off (each trial then starts a fresh worker
    process, seconds of imports each, and none can be lost to a failed reset)."""
    mixed = with_tune_mixin(trainable, FreshWorkerOnFailedReset)
    return (trainable, False) if mixed is None else (mixed, True)
