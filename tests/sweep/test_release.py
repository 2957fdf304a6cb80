"""A reused worker process starts its next trial with the previous one's leftovers collected, and a trial
trains with the imported objects left out of Python's full collections."""

from __future__ import annotations

import gc
import weakref

from hpo_cls.sweep.reuse import FreshWorkerOnFailedReset, imports_frozen


class _Node:
    other: _Node


def _cycle_left_behind() -> weakref.ref:
    """A reference cycle, as a finished trial's objects leave; alive until a collection finds it."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


class _TuneTrainable:
    """Stands for Tune's FunctionTrainable under the mixin: its reset succeeds or fails as told."""

    def __init__(self, reset_succeeds: bool):
        self.reset_succeeds = reset_succeeds

    def reset_config(self, new_config) -> bool:
        return self.reset_succeeds


class _Trainable(FreshWorkerOnFailedReset, _TuneTrainable):
    pass


def test_a_reused_worker_collects_the_previous_trials_cycles_before_the_next_trial():
    gc.disable()  # no automatic collection may find the cycle first
    try:
        left_behind = _cycle_left_behind()
        assert left_behind() is not None
        assert _Trainable(reset_succeeds=True).reset_config({"lr": 0.1}) is True
        assert left_behind() is None, "collected when the worker was reset for the next trial"
    finally:
        gc.enable()


def test_a_trial_trains_with_the_imports_frozen_and_leaves_the_process_unfrozen():
    assert gc.get_freeze_count() == 0
    with imports_frozen():
        assert gc.get_freeze_count() > 0, "what the process held before the trial is out of the collections"
        left_behind = _cycle_left_behind()
        gc.collect()
        assert left_behind() is None, "the trial's own garbage is still collected"
    assert gc.get_freeze_count() == 0


def test_the_freeze_is_undone_when_a_trial_raises():
    try:
        with imports_frozen():
            raise SystemExit(1)  # how Tune ends a stopped trial's thread
    except SystemExit:
        pass
    assert gc.get_freeze_count() == 0
