"""The process behind ``hpo-cls cluster up`` (see :mod:`hpo_cls.sweep.local_cluster`): start a private
local Ray, record it, keep trial worker processes ready for the next sweep while no driver is connected, keep
it until SIGTERM or until no driver has been connected for the idle timeout, then shut it down and remove the
record. Started as ``python -m hpo_cls.sweep.cluster_daemon``."""

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
from hpo_cls.sweep.prestart import PRELOADED, prestart_ready_workers, ready_trial_workers, tune_trial_env_vars

_POLL_S = 2.0
MAX_READY_WORKERS = 8  # each holds torch, torchvision and Ray Tune in memory (~0.3 GB)
_READY_KEEP_ALIVE_S = 24 * 3600  # Ray may stop an idle prestarted worker after this (only above its soft limit)
_READY_WAIT_S = 60.0  # how long `cluster up` waits for them (imports from a cold disk take tens of seconds)


def _live_drivers(own_job: str) -> int:
    """Drivers connected now, from Ray's job table (this daemon's own job not counted)."""
    from ray._private import state

    return sum(1 for job in state.jobs() if not job["IsDead"] and job["JobID"] != own_job)


class ReadyWorkers:
    """Keeps ``target`` worker processes ready for the next sweep's trials: started in the environment Tune gives
    trial actors, for no job yet, with the modules a trial imports preloaded
    (:func:`~hpo_cls.sweep.prestart.prestart_ready_workers`). Its trials then start at once instead of each
    worker importing torch and Ray Tune on the cores the first trials train on. Ray ends a job's workers with
    it, so the workers a sweep took are replaced once it has gone, never while a driver is connected (their
    imports would take CPU from its trials). Ray is asked at most once until a driver comes or a ready worker
    goes: a worker asked for that never shows up ready is not asked for again and again."""

    def __init__(self, target: int):
        self.target, self.asked, self.ready = target, False, 0

    def fill(self, timeout_s: float, stop: threading.Event) -> int:
        """Ask for them and wait until they are ready, ``timeout_s`` has passed or ``stop`` is set: what
        ``cluster up`` waits for, so that a sweep started right after it finds them. The ready workers."""
        deadline = time.monotonic() + timeout_s
        while (self.update(drivers=0) < self.target and self.asked and time.monotonic() < deadline
               and not stop.wait(0.2)):
            pass
        return self.ready

    def update(self, drivers: int) -> int:
        """The ready workers now (while a driver is connected, the count last seen)."""
        if drivers or self.target < 1:
            self.asked = False
            return self.ready
        ready = len(ready_trial_workers())
        if ready < self.ready:
            self.asked = False
        if ready < self.target and not self.asked:
            self.asked = prestart_ready_workers(self.target - ready, keep_alive_s=_READY_KEEP_ALIVE_S)
        self.ready = ready
        return ready


def serve(state: ClusterState, path: Path, stop: threading.Event, ready_workers: ReadyWorkers) -> None:
    """Keep the record current (drivers, idle since, ready trial workers) and the trial workers ready until
    ``stop`` or the idle timeout."""
    import ray

    own_job = ray.get_runtime_context().get_job_id()
    while True:
        try:
            drivers = _live_drivers(own_job)
        except Exception:  # a private Ray API: if it changes, never stop a cluster as idle by mistake
            drivers = 1
        ready = ready_workers.update(drivers)
        idle_since = state.idle_since if drivers == 0 else None
        if drivers == 0 and idle_since is None:
            idle_since = time.time()
        if (drivers, idle_since, ready) != (state.drivers, state.idle_since, state.ready_workers):
            state = dataclasses.replace(state, drivers=drivers, idle_since=idle_since, ready_workers=ready)
            write_state(path, state)
        if idle_since is not None and state.idle_timeout_s > 0 and time.time() - idle_since > state.idle_timeout_s:
            print(f"idle for {state.idle_timeout_s:.0f} s: stopping", flush=True)
            return
        if stop.wait(_POLL_S):
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

    from hpo_cls.sweep.cluster import loopback_only
    from hpo_cls.sweep.reuse import trial_process_environment

    # Ray's worker processes inherit this environment: drivers joining need no runtime environment for it,
    # which would cost every trial's worker a second or two to start and bypass the preloaded workers.
    trial_env = trial_process_environment()
    os.environ.update(trial_env)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Every worker process Ray starts imports what a trial imports before it is handed out. Ray's own idle
    # workers for the first driver are not started: their environment is not the one Tune gives trial actors,
    # so no sweep could take them; ReadyWorkers starts the ones a sweep takes.
    with loopback_only():
        ray.init(address="local", include_dashboard=False, _temp_dir=args.temp_dir,
                 num_cpus=args.cpus, num_gpus=args.gpus, object_store_memory=args.object_store_bytes,
                 logging_level="WARNING", _system_config={"preload_python_modules": list(PRELOADED),
                                                          "prestart_worker_first_driver": False})
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
                         trial_env=trial_env, ready_env=tune_trial_env_vars())
    try:
        ready_workers = ReadyWorkers(min(int(state.cpus), MAX_READY_WORKERS))
        state = dataclasses.replace(state, ready_workers=ready_workers.fill(_READY_WAIT_S, stop))
        write_state(args.state, state)  # `cluster up` returns once this is written
        print(f"Ray at {state.address}: {state.cpus:g} CPUs, {state.gpus:g} GPUs, {state.ready_workers} trial "
              f"workers ready", flush=True)
        serve(state, args.state, stop, ready_workers)
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
