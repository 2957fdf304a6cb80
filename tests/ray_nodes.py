"""Ray processes a test starts itself, and stops or kills by process id: never by name, never another's.

A ``ray start --block`` node keeps every process it starts (GCS, raylet, the workers) among its
descendants, so the node is ended by those PIDs; each node gets its own temp folder and ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from processes import kill_tree, running, trial_workers
from sweep_helpers import free_port, wait_for

NODE_OBJECT_STORE_BYTES = 100 * 1024**2


def short_temp_dir(prefix: str) -> str:
    """A fresh folder directly in /tmp: Ray's socket paths under it must stay within 107 characters."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def node_env(**extra: str) -> dict[str, str]:
    """The environment of a node and of a driver joining it: Ray's token authentication, with the test
    session's token (``RAY_AUTH_TOKEN_PATH``, set by the ``private_ray_auth_token`` fixture)."""
    return {**os.environ, "RAY_AUTH_MODE": "token", **extra}


class RayNode:
    """A ``ray start --block`` node: the head of a new cluster, or a node joining ``address``."""

    def __init__(self, address: str | None = None, num_cpus: int = 1, env: dict[str, str] | None = None):
        self.temp_dir = short_temp_dir("rn")
        self.port = free_port()
        self.address = address or f"127.0.0.1:{self.port}"
        command = ["ray", "start", "--block", "--num-cpus", str(num_cpus), "--node-ip-address", "127.0.0.1",
                   "--temp-dir", self.temp_dir, "--object-store-memory", str(NODE_OBJECT_STORE_BYTES),
                   "--disable-usage-stats", "--dashboard-agent-listen-port", str(free_port()),
                   "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                   "--metrics-export-port", str(free_port())]
        if address is None:
            command += ["--head", "--port", str(self.port), "--include-dashboard=false"]
        else:
            command += ["--address", address]
        self.log = Path(self.temp_dir) / "ray-start.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=env or node_env())
        try:
            wait_for(self._started, 180, f"`{' '.join(command[:4])}` to start its node")
        except AssertionError:
            self.kill()
            raise AssertionError(self.log.read_text()[-3000:]) from None
        # Its own services (GCS, raylet, ...); idle workers come and go by design and are not counted.
        self.services = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children()]
        self.titles = {p.pid: " ".join(p.cmdline())[:80] for p in self.services}

    def _started(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"ray start exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        return "Ray runtime started" in self.log.read_text()

    def dead(self) -> list[str]:
        """The node's services that are no longer running (``"PID command"``)."""
        return [f"{p.pid} {self.titles[p.pid]}" for p in self.services if not running(p)]

    def kill(self) -> None:
        """SIGKILL the whole node at once, as a machine failure would (and any of its services that lost
        their parent `ray start`: psutil refuses a PID that has since gone to another process)."""
        kill_tree(self.process)
        for service in getattr(self, "services", []):
            try:
                service.kill()
            except psutil.NoSuchProcess:
                pass

    def stop(self) -> None:
        """End every process of the node (by the PIDs of `ray start` and its descendants) and delete its folder.
        Killed, not shut down gracefully: nothing of a test's own node needs to outlive it."""
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


_DETACHED_ACTOR = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
@ray.remote(num_cpus=0)
class ImplicitFunc:  # the class name Tune gives its trial actors: the same process title
    def ping(self):
        return "pong"
actor = ImplicitFunc.options(name="bystander", lifetime="detached").remote()
assert ray.get(actor.ping.remote()) == "pong"
"""


def start_detached_actor(node: RayNode) -> None:
    """A detached actor on ``node`` that outlives the driver starting it; its process joins ``node.services``."""
    result = subprocess.run([sys.executable, "-c", _DETACHED_ACTOR, node.address], capture_output=True, text=True,
                            timeout=180, env=node_env())
    assert result.returncode == 0, result.stderr[-3000:]
    workers = trial_workers(node.process.pid)
    assert workers, "the detached actor's process runs on the node"
    node.services += workers
    node.titles |= {p.pid: " ".join(p.cmdline())[:80] for p in workers}

