"""hpo_cls.promote.retrain.member_task: a member trained on a GPU share leaves no worker holding its memory."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.ray


@pytest.fixture
def ray_with_a_gpu():
    """A private Ray on 127.0.0.1 that declares one GPU (Ray schedules GPU shares by the declared count)."""
    import ray

    from hpo_cls.sweep.cluster import loopback_only

    with loopback_only():
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, object_store_memory=80 * 2**20,
                 logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_each_member_on_a_gpu_share_gets_a_fresh_worker(ray_with_a_gpu):
    from hpo_cls.promote.retrain import member_task

    def worker_pid() -> int:  # defined here, so Ray ships it by value (the workers cannot import this module)
        return os.getpid()

    task = member_task(worker_pid, cpus=1, gpus=0.5)
    pids = [ray_with_a_gpu.get(task.remote()) for _ in range(3)]  # one after another: a worker could be reused
    assert len(set(pids)) == 3, "a GPU member's worker process must exit after it, releasing the card's memory"
