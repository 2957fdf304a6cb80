"""`hpo-cls cluster up|down|status`: a private local Ray that later sweeps and promotes join, stopped by its
own PID only; a record that is not ours, or stale, is never acted on."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from sweep_helpers import hpo_cls, in_tune_trial_environment, make_images, wait_for, write_spec

from hpo_cls.sweep.local_cluster import (
    ClusterState,
    live_cluster,
    read_state,
    resolve_address,
    state_path,
    stop_cluster,
    write_state,
)


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "hpo-cls-cache"
    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(root))
    return root


def record(root: Path, pid: int, token: str = "0123456789abcdef", address: str = "127.0.0.1:1") -> ClusterState:
    state = ClusterState(address=address, pid=pid, token=token, temp_dir=str(root / "no-such-temp"),
                         started=time.time(), idle_timeout_s=60, cpus=2, gpus=0)
    write_state(state_path(root), state)
    return state


def test_without_a_record_commands_start_their_own_ray(cache_root):
    assert live_cluster() is None
    assert resolve_address(None) is None
    assert resolve_address("10.0.0.1:6379") == "10.0.0.1:6379"
    assert resolve_address("local") == "local"
    result = hpo_cls("cluster", "status", cwd=cache_root.parent)
    assert result.returncode == 0 and "no hpo-cls cluster running" in result.stdout


def test_a_record_naming_another_process_is_not_ours_and_down_leaves_it_alone(cache_root):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record(cache_root, bystander.pid)
        assert live_cluster() is None and resolve_address(None) is None
        assert stop_cluster() is None
        assert bystander.poll() is None, "a process that is not our daemon is never signalled"
        assert read_state(state_path(cache_root)) is None, "the stale record is removed"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_record_of_a_finished_process_is_stale(cache_root):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    record(cache_root, finished.pid)
    assert live_cluster() is None and resolve_address(None) is None


def test_negative_idle_timeout_is_one_error_line(cache_root):
    result = hpo_cls("cluster", "up", "--idle-timeout", "-1", cwd=cache_root.parent)
    assert result.returncode == 2 and result.stderr.strip() == "error: --idle-timeout must be >= 0, got -1"


def _ray_processes(root_pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(root_pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _wait_for_ready_workers(root: Path, daemon_pid: int, count: int) -> set[int]:
    """Wait until the daemon records ``count`` ready trial workers and exactly that many run (no sweep running);
    their PIDs."""
    def ready() -> bool:
        state = read_state(state_path(root))
        running = in_tune_trial_environment(_ray_processes(daemon_pid))
        return state is not None and state.ready_workers == count and len(running) == count

    wait_for(ready, 120, f"{count} trial workers ready")
    return in_tune_trial_environment(_ray_processes(daemon_pid))


def _trial_pids(results: Path) -> set[int]:
    import json

    return {json.loads(line)["pid"] for path in results.glob("*/result.json") for line in path.read_text().splitlines()}


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


@pytest.fixture
def foreign_ray(tmp_path):
    """Someone else's Ray on this machine: a driver that started its own local instance and keeps it."""
    temp_dir = tempfile.mkdtemp(prefix="hpo-test-ray-", dir="/tmp")
    ready = tmp_path / "foreign-ready"
    code = ("import pathlib, sys, time, ray; "
            f"ray.init(address='local', num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20, "
            f"_temp_dir={temp_dir!r}); pathlib.Path({str(ready)!r}).write_text('up'); time.sleep(900)")
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(ready.exists, 180, "the foreign Ray to start")
        # its driver and the services it started (GCS, raylet); its idle workers come and go by design
        parent = psutil.Process(driver.pid)
        yield [parent, *parent.children()]
    finally:
        os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.ray
def test_up_then_sweep_and_promote_join_it_then_down_stops_only_it(cache_root, tmp_path, foreign_ray):
    data = make_images(tmp_path / "data")
    spec = write_spec(tmp_path / "spec.yaml", data, budget={"epochs": 1, "num_samples": 2, "max_concurrent": 2})
    up = hpo_cls("cluster", "up", "--cpus", "2", "--idle-timeout", "30", cwd=tmp_path)
    state = read_state(state_path(cache_root))
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert state is not None and live_cluster() == state and f"local Ray at {state.address}" in up.stdout
        ours = _ray_processes(state.pid)
        assert len(_alive(ours)) >= 3  # the daemon, its GCS server and raylet at least
        again = hpo_cls("cluster", "up", cwd=tmp_path)
        assert again.returncode == 0 and "already running" in again.stdout
        assert read_state(state_path(cache_root)).pid == state.pid

        ready = _wait_for_ready_workers(cache_root, state.pid, 2)
        assert not _listening_beyond_loopback(_ray_processes(state.pid)), "the cluster listens on 127.0.0.1 only"
        sweep = hpo_cls("sweep", str(spec), "--name", "joined", cwd=tmp_path)
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        assert f"joining the local Ray at {state.address}" in sweep.stdout
        assert _trial_pids(tmp_path / "ray_results" / "joined") <= ready, "the trials ran in the ready workers"
        # --retrain: the trial's own checkpoint would otherwise be taken as is, and promote would need no Ray
        promote = hpo_cls("promote", "--top", "1", "--epochs", "1", "--retrain", "--sweep", "joined", "--experiment", "tests",
                          "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path)
        assert promote.returncode == 0, promote.stderr[-3000:]
        assert f"joining the local Ray at {state.address}" in promote.stdout
        drivers = sorted(p.name for p in Path(state.temp_dir).glob("session_latest/logs/python-core-driver-*"))
        assert len(drivers) == 3, f"the daemon, the sweep and the promote drove this cluster: {drivers}"
        wait_for(lambda: "idle since" in hpo_cls("cluster", "status", cwd=tmp_path).stdout, 60,
                 "the cluster to count no driver once the sweep and the promote have exited")
        assert not _wait_for_ready_workers(cache_root, state.pid, 2) & ready, "the ones the sweep took are replaced"
    finally:
        down = hpo_cls("cluster", "down", cwd=tmp_path)
    assert down.returncode == 0 and f"stopped the local Ray at {state.address}" in down.stdout
    assert not _alive(ours), "every process of our cluster is gone"
    assert read_state(state_path(cache_root)) is None and not Path(state.temp_dir).exists()
    assert len(_alive(foreign_ray)) == len(foreign_ray), "the other Ray on the machine is untouched"
    assert "no hpo-cls cluster running" in hpo_cls("cluster", "down", cwd=tmp_path).stdout


@pytest.mark.ray
def test_idle_cluster_stops_itself(cache_root, tmp_path):
    up = hpo_cls("cluster", "up", "--cpus", "1", "--idle-timeout", "0.2", cwd=tmp_path)  # 12 s
    state = read_state(state_path(cache_root))
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        processes = _ray_processes(state.pid)
        wait_for(lambda: not _alive(processes), 120, "the idle cluster to stop")
        assert read_state(state_path(cache_root)) is None and not Path(state.temp_dir).exists()
    finally:
        stop_cluster()


@pytest.mark.ray
def test_trial_workers_run_one_torch_thread_per_assigned_cpu_even_with_torch_preloaded():
    """The cluster daemon preloads torch into Ray's idle workers, which then sized torch's thread pool to the
    whole machine: two 1-CPU trials ran 2 threads each on 2 cores, 3x slower than in a private Ray."""
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
    interface; a private Ray (and the `cluster up` one, checked above) is kept to 127.0.0.1, by a switch
    that is Ray's process-wide setting, restored once the Ray has started."""
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


class TestReadyWorkers:
    """The daemon keeps trial workers ready between sweeps, asking Ray only while no driver is connected and
    not again and again for workers that never show up."""

    @pytest.fixture
    def raylet(self, monkeypatch):
        from hpo_cls.sweep import cluster_daemon

        fake = type("Raylet", (), {"ready": [], "asked": []})()
        monkeypatch.setattr(cluster_daemon, "ready_trial_workers", lambda: list(fake.ready))
        monkeypatch.setattr(cluster_daemon, "prestart_ready_workers",
                            lambda count, keep_alive_s: fake.asked.append(count) or True)
        return fake

    def test_asks_for_the_missing_ones_once_while_idle(self, raylet):
        from hpo_cls.sweep.cluster_daemon import ReadyWorkers

        workers = ReadyWorkers(2)
        assert workers.update(drivers=0) == 0 and raylet.asked == [2]
        assert workers.update(drivers=0) == 0 and raylet.asked == [2], "still starting: not asked again"
        raylet.ready = [11, 12]
        assert workers.update(drivers=0) == 2 and raylet.asked == [2]

    def test_replaces_the_ones_a_sweep_took_after_it_has_gone(self, raylet):
        from hpo_cls.sweep.cluster_daemon import ReadyWorkers

        raylet.ready = [11, 12]
        workers = ReadyWorkers(2)
        assert workers.update(drivers=0) == 2 and raylet.asked == []
        raylet.ready = []  # a sweep took both
        assert workers.update(drivers=1) == 2 and raylet.asked == [], "never while a driver is connected"
        assert workers.update(drivers=0) == 0 and raylet.asked == [2]

    def test_asks_again_when_a_ready_one_goes_without_a_driver_seen(self, raylet):
        from hpo_cls.sweep.cluster_daemon import ReadyWorkers

        raylet.ready = [11]
        workers = ReadyWorkers(2)
        assert workers.update(drivers=0) == 1 and raylet.asked == [1]
        raylet.ready = []  # a short sweep between two polls took it
        assert workers.update(drivers=0) == 0 and raylet.asked == [1, 2]

    def test_cluster_up_waits_until_they_are_ready(self, raylet, monkeypatch):
        import threading

        from hpo_cls.sweep import cluster_daemon

        polls = iter([[], [11], [11, 12]])
        monkeypatch.setattr(cluster_daemon, "ready_trial_workers", lambda: next(polls))
        assert cluster_daemon.ReadyWorkers(2).fill(60, threading.Event()) == 2 and raylet.asked == [2]

    def test_none_wanted_asks_nothing(self, raylet):
        from hpo_cls.sweep.cluster_daemon import ReadyWorkers

        assert ReadyWorkers(0).update(drivers=0) == 0 and raylet.asked == []


def test_a_sweep_counts_the_ready_workers_only_of_our_cluster_in_its_own_environment(cache_root, monkeypatch):
    from hpo_cls.sweep.local_cluster import ready_workers_for_sweep
    from hpo_cls.sweep.prestart import tune_trial_env_vars
    from hpo_cls.sweep.reuse import trial_process_environment

    write_state(state_path(cache_root), ClusterState(
        address="127.0.0.1:6379", pid=1, token="t", temp_dir="/nonexistent", started=0.0, idle_timeout_s=60, cpus=2,
        gpus=0, trial_env=trial_process_environment(), ready_workers=2, ready_env=tune_trial_env_vars()))
    assert ready_workers_for_sweep("127.0.0.1:6379") == 2
    assert ready_workers_for_sweep("127.0.0.1:6380") == 0
    assert ready_workers_for_sweep(None) == 0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")  # Tune passes it to trial actors: another environment
    assert ready_workers_for_sweep("127.0.0.1:6379") == 0
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "999")  # the job would carry a runtime environment
    assert ready_workers_for_sweep("127.0.0.1:6379") == 0


def test_joining_our_cluster_needs_no_runtime_environment_but_any_other_address_does(cache_root, monkeypatch):
    """Workers of the `cluster up` cluster inherit the trial environment from the daemon; a runtime
    environment would cost each of them seconds to start. Any other cluster gets it with the job."""
    from hpo_cls.sweep import cluster, local_cluster
    from hpo_cls.sweep.reuse import trial_process_environment

    ours = ClusterState(address="127.0.0.1:6379", pid=1, token="t", temp_dir="/nonexistent", started=0.0,
                        idle_timeout_s=60, cpus=2, gpus=0, trial_env=trial_process_environment())
    monkeypatch.setattr(local_cluster, "live_cluster", lambda root=None: ours)
    assert cluster._runtime_env(cluster._our_cluster_at("127.0.0.1:6379")) is None
    assert cluster._runtime_env(cluster._our_cluster_at("10.0.0.5:6379")) == {"env_vars": trial_process_environment()}
    monkeypatch.setenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", "999")  # the daemon's workers have another value
    assert cluster._runtime_env(cluster._our_cluster_at("127.0.0.1:6379")) == {
        "env_vars": {**trial_process_environment(), "TUNE_FUNCTION_THREAD_TIMEOUT_S": "999"}}
    monkeypatch.setattr(local_cluster, "live_cluster", lambda root=None: None)
    assert cluster._runtime_env(cluster._our_cluster_at("127.0.0.1:6379")) is not None
