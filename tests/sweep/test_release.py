"""A reused worker process starts its next trial with the previous one's leftovers collected, and Ray's stop
of a worker prints no traceback where it lands in a finalizer."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from hpo_cls.sweep.reuse import FreshWorkerOnFailedReset


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


_STOPPED_IN_A_CALLBACK = """
import os, signal, sys, weakref
from hpo_cls.sweep.cluster import quiet_stop_in_finalizers
if sys.argv[1] == "quiet":
    quiet_stop_in_finalizers()
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # what Ray's worker handler does

class Thing:
    pass

class Broken:
    def __del__(self):
        raise ValueError("a real bug in a finalizer")

thing = Thing()
ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGTERM))  # the stop lands in a callback
del thing
Broken()
print("ran on")
"""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_stop_landing_in_a_finalizer_prints_no_traceback_and_other_errors_still_do(quiet):
    result = subprocess.run([sys.executable, "-c", _STOPPED_IN_A_CALLBACK, "quiet" if quiet else "default"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ran on"  # Python ignores both exceptions
    assert "ValueError: a real bug in a finalizer" in result.stderr
    assert ("SystemExit" in result.stderr) is not quiet, result.stderr
