"""The process behind ``hpo-cls cluster up`` (see :mod:`hpo_cls.sweep.local_cluster`): start a private
local Ray, record it, keep it until SIGTERM or until no driver has been connected for the idle timeout,
then shut it down and remove the record. Started as ``python -m hpo_cls.sweep.cluster_daemon``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from hpo_cls.sweep.local_cluster import ClusterState, read_state, write_state
from hpo_cls.sweep.prestart import PRELOADED

_POLL_S = 2.0


def _live_drivers(own_job: str) -> int:
    """Drivers connected now, from Ray's job table (this daemon's own job not counted)."""
    from ray._private import state

    return sum(1 for job in state.jobs() if not job["IsDead"] and job["JobID"] != own_job)


def serve(state: ClusterState, path: Path, stop: threading.Event) -> None:
    """Keep the record current (drivers, idle since) until ``stop`` or the idle timeout."""
    import ray

    own_job = ray.get_runtime_context().get_job_id()
    while not stop.wait(_POLL_S):
        try:
            drivers = _live_drivers(own_job)
        except Exception:  # a private Ray API: if it changes, never stop a cluster as idle by mistake
            drivers = 1
        idle_since = state.idle_since if drivers == 0 else None
        if drivers == 0 and idle_since is None:
            idle_since = time.time()
        if (drivers, idle_since) != (state.drivers, state.idle_since):
            state = dataclasses.replace(state, drivers=drivers, idle_since=idle_since)
            write_state(path, state)
        if idle_since is not None and state.idle_timeout_s > 0 and time.time() - idle_since > state.idle_timeout_s:
            print(f"idle for {state.idle_timeout_s:.0f} s: stopping", flush=True)
            return


def _process_identity(pid: int) -> tuple[int, str] | None:
    """``(parent PID, start time)`` from ``/proc`` (Linux), or None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), fields[19]) if fields[0] != "Z" else None


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` (PID -> start time), so they are known after they are re-parented."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        identity = _process_identity(int(entry.name))
        if identity is not None:
            parents.setdefault(identity[0], []).append((int(entry.name), identity[1]))
    found, todo = {}, [root]
    while todo:
        for pid, started in parents.get(todo.pop(), []):
            found[pid] = started
            todo.append(pid)
    return found


def _wait_gone(processes: dict[int, str], timeout_s: float = 15.0) -> None:
    """Wait for ``processes`` to end, then SIGKILL what is left. ``ray.shutdown`` returns before its
    raylet's agents notice (they poll their parent for ~2 s) and they may still write into the session
    folder; ``cluster down`` promises every process of the cluster gone and its folder removed."""
    def left() -> list[int]:
        return [pid for pid, started in processes.items()
                if (identity := _process_identity(pid)) is not None and identity[1] == started]

    deadline = time.monotonic() + timeout_s
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--idle-timeout-s", type=float, required=True)
    parser.add_argument("--object-store-bytes", type=int, required=True)
    parser.add_argument("--cpus", type=float)
    parser.add_argument("--gpus", type=float)
    args = parser.parse_args()

    import ray

    from hpo_cls.sweep.reuse import trial_process_environment

    # Ray's worker processes inherit this environment: drivers joining need no runtime environment for it,
    # which would cost every trial's worker a second or two to start and bypass the preloaded workers.
    trial_env = trial_process_environment()
    os.environ.update(trial_env)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Ray starts one idle worker process per CPU ahead of need, and the first driver to join takes them over:
    # with the modules a trial imports preloaded, that sweep's trials start at once instead of after seconds
    # of imports each. (Ray binds worker processes to one driver, so later sweeps start theirs anew.)
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, _temp_dir=args.temp_dir,
             num_cpus=args.cpus, num_gpus=args.gpus, object_store_memory=args.object_store_bytes,
             logging_level="WARNING", _system_config={"preload_python_modules": list(PRELOADED)})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which installs its own
    # What every trial process imports, mapped here for as long as the cluster runs: each trial then reads
    # torch's ~1 GB of libraries from memory, not from disk (the cost of a first run on a fresh machine).
    import ray.tune  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    resources = ray.cluster_resources()
    state = ClusterState(address=ray.get_runtime_context().gcs_address, pid=os.getpid(), token=args.token,
                         temp_dir=args.temp_dir, started=time.time(), idle_timeout_s=args.idle_timeout_s,
                         cpus=resources.get("CPU", 0.0), gpus=resources.get("GPU", 0.0), idle_since=time.time(),
                         auth={k: os.environ[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH") if k in os.environ},
                         trial_env=trial_env)
    try:
        write_state(args.state, state)
        print(f"Ray at {state.address}: {state.cpus:g} CPUs, {state.gpus:g} GPUs", flush=True)
        serve(state, args.state, stop)
    finally:
        current = read_state(args.state)
        if current is not None and current.token == args.token:
            args.state.unlink(missing_ok=True)
        ray_processes = _descendants(os.getpid())
        ray.shutdown()
        _wait_gone(ray_processes)
        shutil.rmtree(args.temp_dir, ignore_errors=True)
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
