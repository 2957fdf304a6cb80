"""Where a sweep's start-up seconds go, on a first run and a second run.

    python bench/startup.py            # first and second run as this machine's page cache stands
    python bench/startup.py --cold     # first run as on a freshly booted machine (see below)

Each phase runs in a fresh interpreter, the way a sweep's driver and its trial actors pay for it: importing
torch + torchvision, Ray Tune and MLflow; ``ray.init`` of a private local Ray (127.0.0.1, no dashboard);
the first call of an actor that imports the trainable (a trial's process start and imports); and
``ray.shutdown``. Then the same sequence again (second run). ``--cold`` first drops the Python environment's files from the page cache
(``posix_fadvise(DONTNEED)``: pages no running process maps), as on a machine that has just booted; the
kernel reads them back on the next import, for every user of the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PHASES = {
    "import_torch_s": "import torch, torchvision",
    "import_ray_tune_s": "import ray.tune",
    "import_mlflow_s": "import mlflow",
}
RAY_CYCLE = """
import json, os, sys, time
start = time.perf_counter()
import ray
from hpo_cls.sweep.cluster import connect_ray
address = sys.argv[1] if len(sys.argv) > 1 else None
connect_ray(address, 256 * 2**20)
init = time.perf_counter()

@ray.remote(num_cpus=1)
class Trial:
    def ready(self):
        import trainables.image_classifier  # noqa: F401  (torch, torchvision, Ray Tune, the engine)
        return os.getpid()

ray.get(Trial.remote().ready.remote())
actor = time.perf_counter()
ray.shutdown()
print(json.dumps({"ray_init_s": init - start, "first_actor_s": actor - init,
                  "ray_shutdown_s": time.perf_counter() - actor}))
"""


def timed_python(code: str, *args: str, env: dict | None = None) -> float | dict:
    """Wall seconds of ``python -c code`` (or the figures it prints as JSON)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {code[:60]}...\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else wall


def drop_from_page_cache(folder: Path) -> int:
    """Advise the kernel to drop every file under ``folder`` from the page cache; bytes advised."""
    total = 0
    for path in folder.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            total += path.stat().st_size
        finally:
            os.close(descriptor)
    return total


def one_run(env: dict, address: str | None = None) -> dict[str, float]:
    figures = {name: timed_python(f"import time; s = time.perf_counter(); {code}", env=env)
               for name, code in PHASES.items()}
    figures.update(timed_python(RAY_CYCLE, *([address] if address else []), env=env))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="drop the environment's files from the page cache first")
    args = parser.parse_args()
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    dropped = 0
    if args.cold:
        import torch

        dropped = drop_from_page_cache(Path(torch.__file__).parents[1])
    first, second = one_run(env), one_run(env)
    line = [f"page_cache_dropped_gib={dropped / 2**30:.1f}"]
    for label, figures in (("first", first), ("second", second)):
        line += [f"{label}_{name}={value:.2f}" for name, value in figures.items()]
    print(" ".join(line))

if __name__ == "__main__":
    main()
