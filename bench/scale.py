"""Scale of the orchestration: 500 trials through `hpo-cls sweep`, driver memory and sampler time.

    python bench/scale.py                    # 500 trials of trainables.synthetic, TPE + ASHA, MLflow on
    python bench/scale.py --trials 2000

Trials use `trainables.synthetic` (a known response surface instead of a network: no images, no
checkpoints), so the run measures what grows with the number of trials — the driver's memory, the TPE
sampler, Tune's bookkeeping and the MLflow writes — in minutes. The driver's resident memory is polled
every 0.2 s. Prints ``driver_peak_rss_mb=... sampler_ms_per_trial=...`` (targets: ≤ 2048 MB, ≤ 50 ms).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    spec = {
        "name": "scale",
        "trainable": "trainables.synthetic",
        "data": {"root": str(REPO / "data" / "cifar10-mini"), "image_size": 32, "workers": 0},
        "budget": {"epochs": args.epochs, "num_samples": args.trials, "max_concurrent": args.concurrency},
        "resources": {"cpu": 2 / args.concurrency},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "search": {"sampler": "tpe", "seed": 0, "space": {
            "lr": {"loguniform": [1.0e-3, 1.0]},
            "dropout": {"uniform": [0.0, 0.5]},
            "label_smoothing": {"uniform": [0.0, 0.3]},
            "attention": {"choice": ["none", "se", "cbam"]},
            "attention_placement": {"choice": ["after_layer4", "after_each_stage"], "when": {"attention": ["se", "cbam"]}},
        }},
    }
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(yaml.safe_dump(spec))
        start = time.perf_counter()
        driver = subprocess.Popen([sys.executable, "-m", "hpo_cls.cli", "sweep", "spec.yaml"], cwd=tmp,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        process, peak = psutil.Process(driver.pid), 0
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(driver.stdout), daemon=True)
        reader.start()
        while driver.poll() is None:
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        reader.join(timeout=10)
        wall = time.perf_counter() - start
    output = "".join(lines)
    if driver.returncode != 0:
        sys.exit(f"sweep failed:\n{output[-3000:]}")
    match = re.search(r"searcher: (\d+) proposals, ([\d.]+) ms each", output)
    sampler_ms = float(match.group(2)) if match else float("nan")
    print(f"trials={args.trials} wall_s={wall:.0f} trials_per_min={60 * args.trials / wall:.0f} "
          f"driver_peak_rss_mb={peak / 2**20:.0f} sampler_ms_per_trial={sampler_ms:.1f}")


if __name__ == "__main__":
    main()
