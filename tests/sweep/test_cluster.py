"""Connecting to Ray: a private Ray listens on 127.0.0.1 only; trial workers use the CPUs Ray assigned them."""

from __future__ import annotations

import os

import psutil
import pytest


def _listening_beyond_loopback(processes: list[psutil.Process]) -> list[str]:
    """``process: address`` for each socket of ``processes`` that listens on anything but 127.0.0.1."""
    found = []
    for process in processes:
        try:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.ip not in ("127.0.0.1", "::ffff:127.0.0.1"):
                    found.append(f"{process.name()}: {connection.laddr.ip}:{connection.laddr.port}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.mark.ray
def test_trial_workers_run_one_torch_thread_per_assigned_cpu_even_with_torch_preloaded():
    """A Ray whose workers preload torch (here by Ray's own setting) sized torch's thread pool to the whole
    machine: two 1-CPU trials ran 2 threads each on 2 cores, 3x slower than in a private Ray."""
    import ray

    from hpo_cls.sweep.cluster import use_assigned_cpus

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1", logging_level="ERROR",
             _system_config={"preload_python_modules": ["torch"]})
    try:
        @ray.remote(num_cpus=1)
        def threads_in_a_trial() -> tuple[int, int]:
            import torch

            return use_assigned_cpus(), torch.get_num_threads()

        @ray.remote(num_cpus=2)
        def threads_in_a_two_cpu_trial() -> tuple[int, int]:
            import torch

            return use_assigned_cpus(), torch.get_num_threads()

        one_cpu = ray.get([threads_in_a_trial.remote() for _ in range(2)])
        two_cpus = ray.get(threads_in_a_two_cpu_trial.remote())
    finally:
        ray.shutdown()
    assert one_cpu == [(1, 1), (1, 1)]
    assert two_cpus == (2, 2)


@pytest.mark.ray
def test_a_private_ray_listens_on_loopback_only_and_this_process_can_join_other_clusters_after():
    """Ray turns ray.init's node address 127.0.0.1 into the machine's own, and its servers then listen on every
    interface; a private Ray is kept to 127.0.0.1, by a switch that is Ray's process-wide setting, restored
    once the Ray has started."""
    import ray
    from ray._private import ray_constants

    from hpo_cls.sweep.cluster import connect_ray, shutdown_ray

    before = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    assert connect_ray(None, object_store_bytes=80 * 2**20)
    try:
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        started = [psutil.Process(info.process.pid)  # GCS, raylet, monitors: what this ray.init started
                   for infos in ray._private.worker._global_node.all_processes.values() for info in infos]
        ray_processes = started + [child for process in started for child in process.children(recursive=True)]
        assert len(ray_processes) >= 3 and not _listening_beyond_loopback(ray_processes)
        assert (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)) == before
    finally:
        shutdown_ray()
