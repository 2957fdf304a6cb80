"""A reused worker process starts each trial with what the previous one left behind collected, cheaply."""

from __future__ import annotations

import gc
import weakref

from hpo_cls.sweep.reuse import release_previous_trial


class _Node:
    other: _Node


def test_each_trial_start_collects_the_previous_trials_cycles_and_the_imports_are_frozen_once():
    gc.unfreeze()
    try:
        release_previous_trial()  # the process's first trial
        frozen = gc.get_freeze_count()
        assert frozen > 0, "what the process imported is frozen"

        a, b = _Node(), _Node()  # a reference cycle, as a finished trial's objects leave
        a.other, b.other = b, a
        left_behind = weakref.ref(a)
        del a, b
        release_previous_trial()  # the next trial on the same worker
        assert left_behind() is None, "the previous trial's cycle is collected despite the freeze"
        assert gc.get_freeze_count() == frozen, "frozen once per process, not the later trials' objects"
    finally:
        gc.unfreeze()
