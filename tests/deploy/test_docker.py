"""The docker/ stack: the compose file validates and binds every port to loopback unless configured; images
are pinned, every secret must be set, each container gets only the secrets it needs and none on a command line."""

from __future__ import annotations

import re
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
    env = (target / ".env.example").read_text()  # users copy and edit it the same way
    for secret in SECRETS:
        env = env.replace(f"{secret}=\n", f"{secret}=test{secret.lower().replace('_', '')}\n")
    (target / ".env").write_text(env)
    return target


SECRETS = ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "RAY_AUTH_TOKEN")
COMPOSE = DOCKER / "compose.yaml"


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _compose_config(compose_dir: Path) -> subprocess.CompletedProcess:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (CI installs Debian's docker-compose)")
    return subprocess.run([compose, "-f", "compose.yaml", "--env-file", ".env", "config"], cwd=compose_dir,
                          capture_output=True, text=True, timeout=60)


def _config(compose_dir: Path) -> dict:
    result = _compose_config(compose_dir)
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


def test_an_unedited_env_file_is_refused_naming_the_secret(compose_dir):
    shutil.copy(compose_dir / ".env.example", compose_dir / ".env")  # copied, secrets not set
    result = _compose_config(compose_dir)
    assert result.returncode != 0
    assert re.search(r"set (POSTGRES_PASSWORD|MINIO_ROOT_PASSWORD|RAY_AUTH_TOKEN) in docker/.env", result.stderr)


def test_every_image_is_pinned():
    text = COMPOSE.read_text()
    images = re.findall(r"^\s*image:\s*(\S+)", text, re.M)
    assert images
    for image in images:
        default = re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", image)  # ${VAR:-default}: the default is pinned
        assert ":" in default and not default.endswith(":latest"), f"{image} is not pinned to a version"
    assert ":latest" not in (DOCKER / ".env.example").read_text() + (DOCKER / "Dockerfile").read_text()


def test_every_secret_must_be_set():
    uses = re.findall(r"\$\{(" + "|".join(SECRETS) + r")([^}]*)\}", COMPOSE.read_text())
    assert {name for name, _ in uses} == set(SECRETS)
    for name, modifier in uses:
        assert modifier.startswith(":?"), f"${{{name}{modifier}}}: an empty {name} must stop compose"
    for secret in SECRETS:
        assert re.search(rf"^{secret}=$", (DOCKER / ".env.example").read_text(), re.M), f"{secret} has no placeholder"


def test_no_secret_on_a_command_line_and_each_container_gets_only_its_own():
    services = _services()
    for name, service in services.items():
        assert "env_file" not in service, f"{name}: env_file hands every secret to the container"
        for key in ("command", "entrypoint"):
            line = service.get(key) or ""
            line = " ".join(line) if isinstance(line, list) else line
            assert not any(secret in line for secret in SECRETS), f"{name}: a secret on its {key} line"
    needs = {"ray-head": {"RAY_AUTH_TOKEN"}, "ray-worker": {"RAY_AUTH_TOKEN"}, "postgres": {"POSTGRES_PASSWORD"},
             "mlflow": {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"}, "minio": {"MINIO_ROOT_PASSWORD"},
             "minio-setup": {"MINIO_ROOT_PASSWORD"}}
    for name, service in services.items():
        environment = yaml.safe_dump(service.get("environment", {}))
        given = {secret for secret in SECRETS if secret in environment}
        assert given == needs[name], f"{name} gets {sorted(given)}, needs {sorted(needs[name])}"


def test_runtime_installs_are_pinned_and_carry_no_dev_tools():
    command = _services()["mlflow"]["command"]
    packages = re.search(r"pip install([^&]*)&&", command).group(1).split()
    packages = [p.strip("'\"") for p in packages if not p.startswith("-")]
    assert packages and all("==" in p for p in packages), f"unpinned: {packages}"
    assert any(p.startswith("psycopg[binary]==") for p in packages), "SQLAlchemy 2.1 opens postgresql:// with psycopg 3"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "[dev]" not in dockerfile and ".[server]" in dockerfile


def _pinned(name: str) -> str:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    found = [line.split("==", 1)[1] for line in lines if line.lower().startswith(f"{name}==")]
    assert len(found) == 1, f"constraints.txt pins {name} once"
    return found[0]


def test_ci_and_the_image_install_what_constraints_pins():
    from importlib.metadata import version

    assert "-c constraints.txt" in (REPO / ".ci" / "run").read_text()
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"pip install -c constraints\.txt .*\.\[server\]", dockerfile)
    assert "constraints.txt" in re.search(r"^COPY .*constraints\.txt.*$", dockerfile, re.M).group(0)
    for name in ("ray", "optuna", "mlflow", "torch", "torchvision"):
        assert version(name).split("+")[0] == _pinned(name), f"the {name} installed here is not the pinned one"


def test_the_compose_mlflow_server_runs_the_clients_mlflow():
    image = _services()["mlflow"]["image"]
    default = re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", image)
    assert default.rsplit(":", 1)[1] == f"v{_pinned('mlflow')}"
