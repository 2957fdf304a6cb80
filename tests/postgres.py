"""A throw-away PostgreSQL cluster in a temp folder, for an MLflow server as the docker stack runs it.

``initdb`` refuses to run as root, so as root (CI) the cluster belongs to the ``postgres`` user (or
``nobody``) and its commands run through ``runuser``. The cluster listens on 127.0.0.1 and on a socket in
its own folder, on a port of its own; the password reaches libpq through ``PGPASSWORD``, never a command
line.
"""

from __future__ import annotations

import os
import pwd
import signal
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from sweep_helpers import free_port, start_mlflow_server, stop_server

DATABASE = "mlflow"
USER = "hpo"


def postgres_bin_dir() -> Path | None:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)] or [0])
    return versions[-1].parent if versions else None


def _cluster_owner() -> str | None:
    """The unprivileged user that runs the cluster when this process is root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root, but there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL")


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a fresh folder; :meth:`restart` and :meth:`delete` it."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.owner = _cluster_owner()
        self.root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short: the socket path is limited
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        if self.owner is not None:
            entry = pwd.getpwnam(self.owner)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        password_file = self.root / "pwfile"
        password_file.write_text(self.password + "\n")
        if self.owner is not None:
            os.chown(password_file, pwd.getpwnam(self.owner).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={password_file}",
                  "-E", "UTF8")
        password_file.unlink()
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI of the database (without the password: see :attr:`env`)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        command = [str(self.bin_dir / program), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env,
                                cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def _pg_ctl(self, action: str, *args: str) -> None:
        # A throw-away cluster: no fsync. Its own port and socket folder; TCP on 127.0.0.1 only.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "120",
                  "-o", options, *args)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is closed, the server is back once this returns."""
        self._pg_ctl("restart", "-m", "fast")

    def delete(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.root / "server.log"
        return log.read_text()[-3000:] if log.is_file() else ""


class MlflowOnPostgres:
    """`mlflow server` on a :class:`PostgresCluster`, artifacts proxied to a folder (``--artifacts-destination``)."""

    def __init__(self, cluster: PostgresCluster, folder: Path):
        self.cluster, self.folder = cluster, folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = folder / "server-artifacts"
        self.server = self._start()

    def _start(self):
        return start_mlflow_server(self.folder, self.port, backend_uri=self.cluster.uri, env=self.cluster.env)

    def kill(self) -> None:
        """SIGKILL the server's process group (the server and its workers, started in a session of their own)."""
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()

    def start(self) -> None:
        self.server = self._start()

    def stop(self) -> None:
        if self.server.poll() is None:
            stop_server(self.server)
