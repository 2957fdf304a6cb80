"""Connecting to Ray: join a cluster, or start a private local instance bound to this machine."""

from __future__ import annotations

import os
import sys

from hpo_cls.compat import RAY_CLUSTER_SWITCH, loopback_only, quiet_ray_auth_notice
from hpo_cls.sweep.reuse import trial_process_environment

__all__ = ["SWEEP_OBJECT_STORE_BYTES", "PRIVATE_ADDRESS", "joins_running_ray", "before_importing_ray", "connect_ray",
           "shutdown_ray", "use_assigned_cpus", "quiet_stop_in_finalizers"]

SWEEP_OBJECT_STORE_BYTES = 512 * 1024**2  # a local Ray's object store only carries trial setups and results
PRIVATE_ADDRESS = "local"  # --address local: a private Ray for this command, as without --address


def joins_running_ray(address: str | None) -> bool:
    """Whether ``address`` names a Ray that is already running, rather than asking for a private one."""
    return bool(address) and address != PRIVATE_ADDRESS


def before_importing_ray(address: str | None) -> None:
    """For a command that will start a private Ray (no ``address``): Ray's public switch that keeps a
    one-machine Ray on 127.0.0.1 (:func:`hpo_cls.compat.loopback_only`), set before this process imports
    Ray, which reads it then."""
    if not joins_running_ray(address):
        os.environ[RAY_CLUSTER_SWITCH] = "0"


def connect_ray(address: str | None, object_store_bytes: int) -> bool:
    """Join ``address``, or start a local Ray of our own without one or with ``"local"``. True when this call
    connected (so must shut down: from a cluster that only disconnects).

    The local Ray is always a fresh instance (``address="local"``), never one that `ray start` left running
    here; it listens on 127.0.0.1 only (:func:`~hpo_cls.compat.loopback_only`) with the dashboard off, and its
    object store is kept small (it only carries small trial setups and results). The trial processes get
    :func:`~hpo_cls.sweep.reuse.trial_process_environment`: on a cluster as the job's runtime environment,
    locally through this process's environment, which the local Ray's workers inherit (a runtime
    environment would cost every worker a second or two to start).
    """
    import ray

    if ray.is_initialized():
        return False
    if joins_running_ray(address):
        _check_address_answers(address)
        ray.init(address=address, logging_level="WARNING", runtime_env={"env_vars": trial_process_environment()})
    else:
        os.environ.update(trial_process_environment())
        quiet_ray_auth_notice()
        with loopback_only():
            ray.init(address="local", include_dashboard=False, object_store_memory=object_store_bytes,
                     logging_level="WARNING")
    return True


def _check_address_answers(address: str, timeout_s: float = 5.0) -> None:
    """A ConnectionError (the CLI's one line) within seconds when ``host:port`` does not answer: Ray itself
    retries an address that is down for minutes. ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError, OverflowError) as exc:
        raise ConnectionError(f"nothing answers at {address} ({getattr(exc, 'strerror', None) or exc}); start "
                              "the cluster (`ray start --head`) or fix --address") from None


def shutdown_ray() -> None:
    import ray

    ray.shutdown()


def use_assigned_cpus() -> int:
    """In a Ray worker: give torch one thread per CPU Ray assigned to this task or actor; returns the count.

    Ray sets ``OMP_NUM_THREADS`` for a worker process it starts for a task, but a worker that imported torch
    before (a cluster started with torch preloaded into its workers) sized torch's thread pool to the whole
    machine: two trials on a 2-core node then ran four busy threads and took 3x as long. Setting the count
    explicitly makes every worker alike."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    threads = max(1, int(cpus)) if cpus else torch.get_num_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def quiet_stop_in_finalizers() -> None:
    """In a Ray worker that trains (a sweep's trial, a promote member): Ray stops a worker with SIGTERM,
    whose handler raises ``SystemExit`` wherever the main thread is. When that is a finalizer or a weakref
    callback (the garbage collector runs them anywhere), Python ignores the exception and prints it as a
    traceback, which Ray forwards to the driver's console ("Exception ignored in: ... SystemExit: 1") as if
    something had failed. The worker is being stopped either way: print nothing for that one. Any other
    ignored exception prints as before."""
    if getattr(sys.unraisablehook, "quiet_stop", False):
        return
    report = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            return
        report(unraisable)

    hook.quiet_stop = True
    sys.unraisablehook = hook
