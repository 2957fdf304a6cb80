"""Trial worker processes started before the trials ask for them.

A Ray actor needs a worker process of its driver's job; Ray starts one when the first trial asks, and that
process then imports torch, torchvision and Ray Tune: seconds on every sweep, with the trials waiting.
Ray's raylet has a request for exactly this (``PrestartWorkers``: N processes, kept idle for a while). For a
job (:func:`prestart_trial_workers`), asked right after the driver connects, the processes import while the
driver checks the data and measures the estimate, and the first trials start in them at once. For no job yet
(:func:`prestart_ready_workers`), the first job that asks in the same environment takes them: the
``hpo-cls cluster up`` daemon keeps such workers ready between sweeps (:func:`ready_trial_workers` counts them).

Ray offers no public call for it, so it is used the way Ray's own clients call the raylet (its gRPC
channel, with the cluster's token when token auth is on). Best effort: anything that fails only costs
the seconds it would have saved.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

__all__ = ["PRELOADED", "prestart_trial_workers", "prestart_ready_workers", "ready_trial_workers", "raylet_stub",
           "tune_trial_env_vars"]

PRELOADED = ("torch", "torchvision", "ray.tune", "hpo_cls.train.run")  # what every trial process imports
KEEP_ALIVE_S = 600  # how long Ray keeps a prestarted worker that no trial has taken

_log = logging.getLogger(__name__)


def prestart_trial_workers(count: int, keep_alive_s: int = KEEP_ALIVE_S) -> bool:
    """Ask this driver's raylet for ``count`` worker processes of this job in the environment Tune gives its
    trial actors, started now. True when asked."""
    if count < 1:
        return False
    try:
        import grpc  # noqa: F401  (without grpcio there is no raylet to ask)
        import ray
    except ImportError:
        return False
    if not ray.is_initialized():  # asking for the context would start a Ray
        return False
    context = ray.get_runtime_context()
    if context.runtime_env:  # a trial's environment would be the job's merged with Tune's: not matched here
        return False
    return _request_workers(count, keep_alive_s, job_id=bytes.fromhex(context.get_job_id()))


def prestart_ready_workers(count: int, keep_alive_s: int) -> bool:
    """Ask this node's raylet for ``count`` worker processes in the environment Tune gives trial actors and of
    no job yet: the ``hpo-cls cluster up`` daemon keeps them ready between sweeps, and the next sweep's trial
    actors (any job whose own runtime environment is empty) take them. True when asked."""
    return count >= 1 and _request_workers(count, keep_alive_s, job_id=None)


def _request_workers(count: int, keep_alive_s: int, job_id: bytes | None) -> bool:
    """``PrestartWorkers`` for ``job_id`` (None: for whichever job asks first), best effort."""
    try:
        import grpc
        from ray._private.utils import get_runtime_env_info
        from ray.core.generated import common_pb2, node_manager_pb2
        from ray.runtime_env import RuntimeEnv
    except ImportError as exc:  # grpcio missing, or Ray moved its modules
        _log.debug("no worker prestart: %s", exc)
        return False
    try:
        info = get_runtime_env_info(RuntimeEnv(env_vars=tune_trial_env_vars()), is_job_runtime_env=False)
    except (ImportError, AttributeError, TypeError) as exc:  # Ray changed its runtime-environment API
        _log.debug("no worker prestart: %s", exc)
        return False
    request = node_manager_pb2.PrestartWorkersRequest(language=common_pb2.Language.PYTHON, runtime_env_info=info,
                                                      keep_alive_duration_secs=keep_alive_s, num_workers=count)
    if job_id is not None:
        request.job_id = job_id
    try:
        with raylet_stub() as stub:
            if stub is None:
                return False
            stub.PrestartWorkers(request, timeout=5)
        return True
    except (grpc.RpcError, ValueError) as exc:
        _log.debug("no worker prestart: %s", exc)
        return False


def ready_trial_workers() -> list[int]:
    """PIDs of this node's idle worker processes that no job has taken yet and that run in the environment Tune
    gives trial actors (:func:`prestart_ready_workers`'s); empty when the raylet cannot be asked. Linux: the
    environment is read from ``/proc``."""
    try:
        import grpc
        from ray import JobID
        from ray.core.generated import common_pb2, node_manager_pb2
    except ImportError:
        return []
    try:
        with raylet_stub() as stub:
            if stub is None:
                return []
            reply = stub.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(include_memory_info=False), timeout=5)
    except (grpc.RpcError, ValueError) as exc:
        _log.debug("no worker stats: %s", exc)
        return []
    wanted, no_job = tune_trial_env_vars(), JobID.nil().binary()
    return [stats.pid for stats in reply.core_workers_stats
            if stats.worker_type == common_pb2.WorkerType.WORKER and stats.job_id == no_job
            and _environment_has(stats.pid, wanted)]


def _environment_has(pid: int, wanted: dict[str, str]) -> bool:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    environment = dict(entry.decode(errors="replace").partition("=")[::2] for entry in entries if entry)
    return all(environment.get(name) == value for name, value in wanted.items())


@contextlib.contextmanager
def raylet_stub() -> Iterator:
    """The gRPC stub of this driver's raylet (``NodeManagerService``), or None when its node is not alive;
    the channel is closed on exit. The way Ray's own clients reach it, with the cluster's token when token
    auth is on."""
    import ray
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import node_manager_pb2_grpc

    node_id = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n.get("NodeID") == node_id and n.get("Alive")), None)
    if node is None:
        yield None
        return
    channel = init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
    try:
        yield node_manager_pb2_grpc.NodeManagerServiceStub(channel)
    finally:
        channel.close()


def tune_trial_env_vars() -> dict[str, str]:
    """The environment Tune gives every trial actor (a worker is taken only by an actor with its environment)."""
    return {**TUNE_DEFAULT_ENV_VARS, **{name: os.environ[name] for name in TUNE_PROPAGATED_ENV_VARS if name in os.environ}}


# What ``ray.tune.execution.class_cache`` sets on every trial actor (DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE),
# copied: importing it imports Ray Tune (~1 s of CPU), and the prestart is asked before that, right after the
# driver connects. tests/sweep/test_prestart.py pins the copy to Tune's.
TUNE_DEFAULT_ENV_VARS = {"PL_DISABLE_FORK": "1"}
TUNE_PROPAGATED_ENV_VARS = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN", "NCCL_RAS_ADDR",
    "RAY_CHDIR_TO_TRIAL_DIR", "RAY_TRAIN_CHECKPOINT_UPLOAD_WARN_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S",
    "RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_ENABLE_PRINT_PATCH", "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "RAY_TRAIN_ENABLE_WORKER_STRUCTURED_LOGGING",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S",
    "RAY_TRAIN_STATE_ACTOR_RECONCILIATION_INTERVAL_S", "RAY_TRAIN_V2_ENABLED", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",
    "RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S", "RAY_WARN_BLOCKING_GET_INSIDE_ASYNC",
    "TRAIN_COPY_DIRECTORY_CHECKPOINTS_INSTEAD_OF_MOVING", "TORCHFT_LIGHTHOUSE",
})
