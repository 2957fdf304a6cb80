"""The docker/ stack: the compose file validates and binds every port to loopback unless configured."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


@pytest.fixture
def compose_dir(tmp_path):
    target = tmp_path / "docker"
    shutil.copytree(DOCKER, target)
    shutil.copy(target / ".env.example", target / ".env")  # users copy and edit it the same way
    return target


def _config(compose_dir: Path) -> dict:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (CI installs Debian's docker-compose)")
    result = subprocess.run([compose, "-f", "compose.yaml", "--env-file", ".env", "config"], cwd=compose_dir,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_validates_and_binds_ports_to_loopback(compose_dir):
    config = _config(compose_dir)
    assert {"ray-head", "ray-worker", "mlflow", "postgres", "minio"} <= set(config["services"])
    published = [port for service in config["services"].values() for port in service.get("ports", [])]
    assert published, "the stack publishes the Ray, MLflow and MinIO ports"
    for port in published:
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
        assert host_ip == "127.0.0.1", f"{port} is not bound to loopback"
    gpu = config["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpu["capabilities"]


def test_secrets_stay_out_of_git_and_the_image_runs_unprivileged():
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    assert ignored.returncode == 0, "docker/.env must be git-ignored"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] != "root"
