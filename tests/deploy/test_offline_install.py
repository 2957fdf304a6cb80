"""The offline install path (docs/offline-install.md), end to end on this machine: deploy/wheelhouse.py builds a
wheelhouse for this Python with torch left out and packs it into parts; the parts are checked and joined; a
fresh virtual environment that has torch (as a GPU node has) installs hpo-cls from them with --no-index and
no pip configuration; the quickstart sweep runs from that environment.

The node's torch: the fresh environment gets the distributions the wheelhouse left out (torch, torchvision,
their CUDA libraries and what only they need, listed in left-out.txt) as hard links to this environment's
installed files, dist-info included, so pip sees them installed; unpacking torch's wheels again would cost
minutes and gigabytes and test pip, not hpo-cls. Downloads are kept in pytest's cache between runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
from sweep_helpers import run_killing_tree, sweep_runs

REPO = Path(__file__).resolve().parents[2]
NODE_HAS = "torch,torchvision,nvidia-*,cuda-*,triton"

# About 4 minutes alone on 2 cores (most of it pip unpacking Ray and MLflow, and the sweep's Ray start-up).
pytestmark = [pytest.mark.offline_install, pytest.mark.timeout(1800)]




def _install_like_the_node(pins: list[str], site_packages: Path) -> None:
    """The installed files of the distributions ``pins`` (``name==version``) hard-linked into ``site_packages``."""
    for pin in pins:
        name, version = pin.split("==")
        dist = metadata.distribution(name)
        assert dist.version == version, f"{name}: {dist.version} installed here, {version} resolved"
        root = Path(dist.locate_file("")).resolve()
        for file in dist.files or []:
            source = Path(dist.locate_file(file)).resolve()
            if not source.is_file() or root not in source.parents:  # scripts in bin/ point at this Python
                continue
            target = site_packages / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another file system
                shutil.copy2(source, target)


def _offline_environment(**extra: str) -> dict[str, str]:
    """This process's environment without pip's settings or PYTHONPATH: pip reads no config file (here one
    names extra indexes and a find-links folder) and Python finds hpo_cls only where it was installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def test_wheelhouse_installs_with_no_index_in_a_fresh_venv_and_runs_the_quickstart(tmp_path, request):
    wheels = request.config.cache.mkdir("offline-install-wheels")
    parts = tmp_path / "parts"
    built = run_killing_tree([sys.executable, str(REPO / "deploy" / "wheelhouse.py"), "--exclude", NODE_HAS, "--out", str(wheels),
                  "--parts", str(parts), "--part-mib", "60"], timeout=900, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "sha256sum -c SHA256SUMS" in built.stdout and "--no-index" in built.stdout  # what to run on the node
    left_out = (wheels / "left-out.txt").read_text().split()
    assert {p.split("==")[0] for p in left_out} >= {"torch", "torchvision"}
    assert not [w.name for w in wheels.glob("*.whl") if w.name.startswith(("torch-", "torchvision-", "nvidia_"))]
    assert all(p.stat().st_size <= 60 * 2**20 for p in parts.glob("wheelhouse.tar.part-*"))

    # On the node: check and join the parts as docs/offline-install.md says.
    joined = tmp_path / "wheelhouse"
    joined.mkdir()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=parts, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(f"cat {parts}/wheelhouse.tar.part-* | tar -x -C {joined}", shell=True, check=True)
    assert sorted(w.name for w in joined.iterdir()) == sorted(w.name for w in wheels.glob("*.whl"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site_packages = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    _install_like_the_node(left_out, site_packages)
    offline = _offline_environment()
    install = run_killing_tree([python, "-m", "pip", "install", "--no-index", "--find-links", str(joined), "hpo-cls"],
                   timeout=900, env=offline)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([python, "-c", "import hpo_cls; print(hpo_cls.__file__)"], cwd=work, env=offline,
                           capture_output=True, text=True, check=True).stdout
    assert Path(where).is_relative_to(env_dir), where  # the installed package, not this checkout's src/
    sweep = run_killing_tree([env_dir / "bin" / "hpo-cls", "sweep", str(REPO / "sweeps" / "quickstart.yaml"),
                  "--set", "budget.num_samples=2", "--set", "budget.epochs=1", "--no-estimate", "--quiet"],
                 timeout=600, cwd=work, env=offline)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    _, parents, children = sweep_runs(f"sqlite:///{work / 'mlflow.db'}", "hpo-cls")
    assert len(parents) == 1 and len(children) == 2
    assert {run.info.status for run in children} == {"FINISHED"}
