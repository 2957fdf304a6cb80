"""A trial's epochs with what hpo-cls does about glibc's malloc (``hpo_cls.train.allocator``) vs glibc's defaults.

    python bench/allocator.py                 # ResNet-18, 32 px, the embedded data, 3 rounds of 4 epochs

Each round runs two fresh processes one after the other, in alternating order. Both train as a sweep's trial
does: ``TrainingRun``, one thread, in a thread other than the main one as Tune's function trainables do, a
trial checkpoint saved after every epoch. One runs in the trial processes' environment (``MALLOC_ARENA_MAX=1``)
with ``TrainingRun``'s fixed thresholds; the other with neither: what the same trial costs in a worker of a
bare Ray Tune script. Each reports its epochs after the first: wall seconds, system CPU seconds and minor
page faults.

Prints ``epoch_ratio`` = median epoch seconds retained / default (below 1: faster), and the faults and
system seconds per epoch of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpo_cls.cache_dir import CACHE_DIR_ENV
from hpo_cls.train.allocator import TRIAL_PROCESS_ENV

REPO = Path(__file__).resolve().parents[1]


def trial_epochs(retain: bool, epochs: int, backbone: str) -> list[dict]:
    """Run in a fresh process: epochs 2..N of a trial, with a checkpoint after every epoch."""
    import resource
    import threading

    import torch

    import hpo_cls.train.run as run_module
    from hpo_cls.spec import DataConfig, TrialConfig
    from hpo_cls.train.checkpoint import save_trial_checkpoint

    torch.set_num_threads(1)  # what a Ray trial with cpu: 1 gets
    if not retain:
        run_module.retain_freed_memory = lambda: False
    rows = []

    def train() -> None:
        run = run_module.TrainingRun(DataConfig(root=REPO / "data" / "cifar10-mini", image_size=32, workers=0),
                                     TrialConfig(backbone=backbone, lr=0.05, batch_size=64), epochs)
        while run.epoch < epochs:
            before, start = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
            run.run_epoch()
            with tempfile.TemporaryDirectory() as directory:
                save_trial_checkpoint(run.state_dict(), directory)
            after = resource.getrusage(resource.RUSAGE_THREAD)
            rows.append({"epoch_s": time.perf_counter() - start, "sys_s": after.ru_stime - before.ru_stime,
                         "faults": after.ru_minflt - before.ru_minflt})

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    return rows[1:]  # the first epoch maps the process's memory for the first time either way


def measured(retain: bool, epochs: int, backbone: str) -> list[dict]:
    command = [sys.executable, __file__, "--child", "retain" if retain else "default", "--epochs", str(epochs),
               "--backbone", backbone]
    env = {name: value for name, value in os.environ.items() if name not in TRIAL_PROCESS_ENV}
    result = subprocess.run(command, capture_output=True, text=True, env={**env, **TRIAL_PROCESS_ENV} if retain else env)
    if result.returncode != 0:
        sys.exit(f"trial process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--child", choices=["retain", "default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(trial_epochs(args.child == "retain", args.epochs, args.backbone)))
        return

    rows = {"retain": [], "default": []}
    with tempfile.TemporaryDirectory() as cache:  # decoded images, built once by the first process
        os.environ[CACHE_DIR_ENV] = cache
        for i in range(args.rounds):
            for retain in ([True, False] if i % 2 == 0 else [False, True]):
                rows["retain" if retain else "default"] += measured(retain, args.epochs, args.backbone)

    def median(kind: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[kind])

    print(f"backbone={args.backbone} epochs_measured={len(rows['retain'])} "
          f"default_epoch_s={median('default', 'epoch_s'):.3f} retained_epoch_s={median('retain', 'epoch_s'):.3f} "
          f"default_faults_per_epoch={median('default', 'faults'):.0f} "
          f"retained_faults_per_epoch={median('retain', 'faults'):.0f} "
          f"default_sys_s={median('default', 'sys_s'):.3f} retained_sys_s={median('retain', 'sys_s'):.3f} "
          f"epoch_ratio={median('retain', 'epoch_s') / median('default', 'epoch_s'):.3f}")


if __name__ == "__main__":
    main()
