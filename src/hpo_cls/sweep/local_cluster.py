"""``hpo-cls cluster up|down|status``: a private local Ray kept running between commands.

Every sweep and promote otherwise starts Ray and stops it again (seconds of start-up and shut-down each
time). ``up`` starts a daemon process (:mod:`hpo_cls.sweep.cluster_daemon`) that runs ``ray.init`` on
this machine (node IP 127.0.0.1, dashboard off, its own temp folder) and records the cluster in
``cluster.json`` under the hpo-cls cache folder (``$HPO_CLS_CACHE_DIR``, default ``~/.cache/hpo-cls``).
Later sweeps and promotes without ``--address`` join it (:func:`resolve_address`) when that record names a
live cluster of ours:
the daemon's PID runs this daemon module with the record's token, and its Ray answers on the recorded
port. ``down`` (or the idle timeout) stops it through that PID only: the daemon shuts down the Ray it
started, whose processes also die with it by the kernel's parent-death signal. Nothing here looks for
Ray processes by name or runs ``ray stop``, so a user's other Ray instances are never touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hpo_cls.cache_dir import default_cache_root
from hpo_cls.console import say
from hpo_cls.errors import SweepError

__all__ = ["ClusterState", "state_path", "read_state", "live_cluster", "join_environment", "resolve_address",
           "ready_workers_for_sweep", "start_cluster",
           "stop_cluster", "describe_state", "DAEMON_MODULE"]

DAEMON_MODULE = "hpo_cls.sweep.cluster_daemon"
_STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class ClusterState:
    """What ``cluster.json`` records; the daemon rewrites it as drivers come and go."""

    address: str
    pid: int
    token: str
    temp_dir: str
    started: float
    idle_timeout_s: float
    cpus: float
    gpus: float
    drivers: int = 0  # drivers connected now (sweeps, promotes), the daemon not counted
    idle_since: float | None = None
    auth: dict[str, str] | None = None  # Ray's auth variables a driver needs to join (see _auth_environment)
    trial_env: dict[str, str] | None = None  # what its worker processes inherit (reuse.trial_process_environment)
    ready_workers: int = 0  # idle trial worker processes ready for the next sweep (cluster_daemon.ReadyWorkers)
    ready_env: dict[str, str] | None = None  # the environment they run in (prestart.tune_trial_env_vars)


def state_path(root: Path | None = None) -> Path:
    return Path(root or default_cache_root()) / _STATE_FILE


def read_state(path: Path) -> ClusterState | None:
    try:
        return ClusterState(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_state(path: Path, state: ClusterState) -> None:
    """Atomic: a reader sees the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, path)


def _runs_our_daemon(pid: int, token: str) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return DAEMON_MODULE.encode() in arguments and token.encode() in arguments


def _answers(address: str, timeout_s: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def live_cluster(root: Path | None = None) -> ClusterState | None:
    """The recorded cluster if it is alive and ours (see the module doc), else None."""
    state = read_state(state_path(root))
    if state is None or not _runs_our_daemon(state.pid, state.token) or not _answers(state.address):
        return None
    return state


def _auth_environment(folder: Path) -> dict[str, str]:
    """Ray's token-auth settings for the daemon and every driver joining it. Ray turns token auth on for a
    new local instance but not for a driver given an address, so both get them explicitly: the user's
    ``RAY_AUTH_MODE`` if set, else ``token`` with a fresh token of this cluster's own (file mode 0600)."""
    mode = os.environ.get("RAY_AUTH_MODE", "token").lower()
    if mode != "token":
        return {"RAY_AUTH_MODE": mode}
    token = folder / "ray-auth-token"
    token.unlink(missing_ok=True)
    descriptor = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def ready_workers_for_sweep(address: str | None, root: Path | None = None) -> int:
    """How many trial worker processes the ``cluster up`` cluster at ``address`` keeps ready that this process's
    sweep can take: 0 for any other Ray, or when this sweep's trial actors would get another environment than
    those workers run in (the job then carries a runtime environment, or Tune's variables differ here)."""
    from hpo_cls.sweep.prestart import tune_trial_env_vars
    from hpo_cls.sweep.reuse import trial_process_environment

    state = read_state(state_path(root))
    if (state is None or state.address != address or state.trial_env != trial_process_environment()
            or state.ready_env != tune_trial_env_vars()):
        return 0
    return state.ready_workers


def join_environment(state: ClusterState) -> None:
    """Set this process's Ray auth variables to the cluster's before ``ray.init(address=...)``."""
    os.environ.pop("RAY_AUTH_TOKEN", None)  # it would win over the cluster's token file
    os.environ.update(state.auth or {})


def resolve_address(address: str | None, root: Path | None = None) -> str | None:
    """The Ray address a command joins: ``address`` when given (``"local"``: a private Ray), else the live
    cluster recorded by ``cluster up`` (its auth variables set in this process), else None (a private
    Ray). Must run before this process imports ray: Ray reads its auth settings at import."""
    if address is not None:
        return address
    state = live_cluster(root)
    if state is None:
        return None
    join_environment(state)
    say(f"joining the local Ray at {state.address} (hpo-cls cluster up; --address local starts a private one)")
    return state.address


def start_cluster(cpus: float | None = None, gpus: float | None = None, idle_timeout_s: float = 3600,
                  object_store_bytes: int = 512 * 1024**2, root: Path | None = None,
                  wait_s: float = 180) -> tuple[ClusterState, bool]:
    """Start the daemon and wait until it has recorded its cluster; ``(state, started)``, where
    ``started`` is False when a live cluster of ours was already recorded (it is returned as is). Two
    ``up`` at once start one cluster: the second waits for the first and finds it."""
    path = state_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name("cluster.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        existing = live_cluster(root)
        if existing is not None:
            return existing, False
        return _start_daemon(path, cpus, gpus, idle_timeout_s, object_store_bytes, wait_s), True


def _start_daemon(path: Path, cpus: float | None, gpus: float | None, idle_timeout_s: float,
                  object_store_bytes: int, wait_s: float) -> ClusterState:
    token = secrets.token_hex(8)
    # Ray's unix sockets live under its temp folder, and their paths must stay under ~107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="hpo-cls-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    log = path.with_name("cluster.log")
    command = [sys.executable, "-m", DAEMON_MODULE, "--token", token, "--state", str(path), "--temp-dir", temp_dir,
               "--idle-timeout-s", str(idle_timeout_s), "--object-store-bytes", str(object_store_bytes)]
    command += ["--cpus", str(cpus)] if cpus is not None else []
    command += ["--gpus", str(gpus)] if gpus is not None else []
    environment = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_TOKEN"}
    environment.update(_auth_environment(path.parent))
    with open(log, "w") as out:
        daemon = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  env=environment, start_new_session=True)  # outlives this command
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = read_state(path)
        if state is not None and state.token == token:
            return state
        if daemon.poll() is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise SweepError(f"the Ray cluster did not start (exit {daemon.returncode}); its log, {log}:\n"
                             + _tail(log))
        time.sleep(0.2)
    _stop_pid(daemon.pid, token, grace_s=30)
    shutil.rmtree(temp_dir, ignore_errors=True)
    raise SweepError(f"the Ray cluster did not start within {wait_s:.0f} s; its log, {log}:\n" + _tail(log))


def stop_cluster(root: Path | None = None, grace_s: float = 60) -> ClusterState | None:
    """Stop the recorded cluster if it is ours and alive; returns what was stopped (None: nothing ran).
    A record of a cluster that is gone is removed."""
    path = state_path(root)
    state = read_state(path)
    if state is None:
        return None
    alive = _runs_our_daemon(state.pid, state.token)
    if alive:
        _stop_pid(state.pid, state.token, grace_s)
    current = read_state(path)  # the daemon removes its record as it stops; one killed could not
    if current is not None and current.token == state.token:
        path.unlink(missing_ok=True)
    if read_state(path) is None:  # no cluster left that uses this folder's token
        path.with_name("ray-auth-token").unlink(missing_ok=True)
    shutil.rmtree(state.temp_dir, ignore_errors=True)
    return state if alive else None


def describe_state(state: ClusterState) -> str:
    """One line for ``cluster up`` and ``cluster status``."""
    use = (f"{state.drivers} sweep/promote driver(s) connected" if state.drivers
           else f"idle since {time.strftime('%H:%M:%S', time.localtime(state.idle_since or state.started))}, "
                f"{state.ready_workers} trial worker(s) ready")
    timeout = (f"stops after {state.idle_timeout_s / 60:g} idle minutes" if state.idle_timeout_s > 0
               else "no idle timeout")
    return (f"local Ray at {state.address}: {state.cpus:g} CPUs, {state.gpus:g} GPUs, daemon PID {state.pid}, "
            f"up {(time.time() - state.started) / 60:.1f} min, {use}; {timeout}")


def _stop_pid(pid: int, token: str, grace_s: float) -> None:
    """SIGTERM (the daemon shuts its Ray down), then SIGKILL after ``grace_s`` (its Ray processes die with
    it); each signal only while ``pid`` still runs our daemon with ``token``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
        if not _runs_our_daemon(pid, token):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _runs_our_daemon(pid, token):
            _reap(pid)
            time.sleep(0.2)


def _reap(pid: int) -> None:
    try:  # a daemon this process started is its child: collect it so it does not linger as a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
