"""Orchestration overhead: the same K configurations trained back to back in-process vs by `hpo-cls sweep`,
by a bare Ray Tune script and by the stock stack as Ray's docs write it.

    python bench/overhead.py                      # ~30 s trials on the embedded data, 2 slots
    python bench/overhead.py --trial-seconds 3    # short trials: fixed costs dominate
    python bench/overhead.py --trials 2 --epochs 3   # a fixed amount of work, to compare two checkouts

(a) each configuration is trained in this process by the engine (one CPU thread, as a Ray trial with
cpu: 1 gets), timing the whole trial (model, data, epochs); half of them run before the others, half after.
(b) the same configurations run through `hpo-cls sweep` (grid over them, FIFO, `max_concurrent` = slots,
MLflow on), and the whole command is timed from process start to exit.
(c) the same configurations run by ``bench/tune_floor.py``: a bare `tune.Tuner` script with none of
hpo-cls around it (no checkpoints, MLflow, searcher or pre-flight), timed the same way.
(d) the same configurations run by ``bench/stock_stack.py``: what a user would write from Ray's docs instead
of hpo-cls (OptunaSearch, ASHA that never stops, MLflowLoggerCallback with artifacts, torch.save checkpoints
every epoch), timed the same way.
(c) runs ``--repeats`` times (its mean is reported).
Every run shares one decoded-image cache, built by the first in-process trial.

Prints ``overhead = sweep_wall / (sum_compute / slots)`` and, to read it by: ``in_trial_ratio`` (trials
slower inside the sweep), ``outside_trials_s`` (time with no trial running) and ``contention`` (epoch time of
`slots` plain trainings at once over one alone, no orchestrator: what sharing the machine costs trials
anyway, and part of ``in_trial_ratio``); ``tune_floor`` (the wall time of (c) over the same ideal: what Ray
Tune itself costs on this machine, the floor for any orchestrator built on it) and ``stock`` (the same for
(d); target: overhead ≤ stock), each with its own in-trial ratio and time outside trials.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from hpo_cls.cache_dir import CACHE_DIR_ENV
from hpo_cls.spec import DataConfig, TrialConfig
from hpo_cls.train.run import TrainingRun

REPO = Path(__file__).resolve().parents[1]
LRS = [0.02, 0.03, 0.05, 0.08, 0.1, 0.13, 0.16, 0.2]


def train_in_process(data: DataConfig, cfg: TrialConfig, epochs: int) -> float:
    start = time.perf_counter()
    run = TrainingRun(data, cfg, epochs)
    while run.epoch < epochs:
        run.run_epoch()
    return time.perf_counter() - start


def probe_seconds(data: DataConfig, cfg: TrialConfig) -> tuple[float, float]:
    """(setup, one epoch) seconds; the epoch is the second one, past one-off warm-up costs."""
    start = time.perf_counter()
    run = TrainingRun(data, cfg, 2)
    setup = time.perf_counter() - start
    run.run_epoch()
    start = time.perf_counter()
    run.run_epoch()
    return setup, time.perf_counter() - start


def epoch_seconds_side_by_side(data: DataConfig, cfg: TrialConfig, processes: int) -> float:
    """Mean epoch time of ``processes`` plain-PyTorch trainings running at once, one thread each, no
    orchestrator: what trials sharing the machine cost each other (memory bandwidth, caches, SMT)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_timed_epochs, args=(data, cfg, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    times = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return statistics.mean(times)


def _timed_epochs(data: DataConfig, cfg: TrialConfig, barrier, results) -> None:
    torch.set_num_threads(1)
    run = TrainingRun(data, cfg, 3)
    run.run_epoch()  # warm-up
    barrier.wait()
    start = time.perf_counter()
    run.run_epoch()
    run.run_epoch()
    results.put((time.perf_counter() - start) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2, help="trials at once (1 CPU each)")
    parser.add_argument("--trial-seconds", type=float, default=30.0, help="target compute time of one trial")
    parser.add_argument("--epochs", type=int, help="epochs per trial, instead of sizing them to --trial-seconds "
                        "(runs to be compared on a machine whose speed drifts get the same work)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=2, help="runs of the floor; their mean is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what a Ray trial with cpu: 1 gets (OMP_NUM_THREADS=1)

    # One hpo-cls cache folder for every run (decoded images, built by the first in-process trial) in place
    # of the user's: no run pays a decode the others do not.
    cache_root = tempfile.TemporaryDirectory()
    os.environ[CACHE_DIR_ENV] = cache_root.name
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    data = DataConfig(root=REPO / "data" / "cifar10-mini", image_size=32, workers=0)
    configs = [TrialConfig(backbone=args.backbone, lr=lr, batch_size=64) for lr in LRS[: args.trials]]
    # Size the epochs so one trial takes about --trial-seconds (setup included).
    if args.epochs:
        epochs = args.epochs
    else:
        setup_s, epoch_s = probe_seconds(data, configs[0])
        epochs = max(1, round((args.trial_seconds - setup_s) / epoch_s))
    # Half the in-process trials run before the sweep and half after: this VM's speed drifts by several
    # percent over minutes, and a baseline taken only before the sweep would fold that drift into the ratio.
    before, after = configs[0::2], configs[1::2]
    compute = [train_in_process(data, cfg, epochs) for cfg in before]

    spec = {
            "name": "overhead",
            "data": {"root": str(data.root), "image_size": 32, "workers": 0},
            "budget": {"epochs": epochs, "num_samples": args.trials, "max_concurrent": args.slots},
            "resources": {"cpu": 1},
            "scheduler": {"type": "fifo"},
            "search": {"sampler": "grid", "space": {"lr": {"choice": LRS[: args.trials]}}},
            "fixed": {"backbone": args.backbone, "batch_size": 64},
            "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "overhead"},
        }
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spec.yaml").write_text(yaml.safe_dump(spec))
        sweep_wall = timed_command([sys.executable, "-m", "hpo_cls.cli", "sweep", "spec.yaml"], Path(tmp), env)
        in_sweep = trial_seconds(Path(tmp))
    same_trials = ["--epochs", str(epochs), "--lrs", ",".join(map(str, LRS[: args.trials])), "--slots",
                   str(args.slots), "--backbone", args.backbone]
    with tempfile.TemporaryDirectory() as tmp:
        stock_wall = timed_command([sys.executable, str(REPO / "bench" / "stock_stack.py"), *same_trials], Path(tmp),
                                   env)
        in_stock = trial_seconds(Path(tmp))
    floor_walls, in_floor = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            floor_walls.append(timed_command([sys.executable, str(REPO / "bench" / "tune_floor.py"), *same_trials],
                                             Path(tmp), env))
            in_floor += trial_seconds(Path(tmp))
    floor_wall = statistics.mean(floor_walls)
    compute += [train_in_process(data, cfg, epochs) for cfg in after]
    ideal = sum(compute) / args.slots
    contention = epoch_seconds_side_by_side(data, configs[0], args.slots) / epoch_seconds_side_by_side(data, configs[0], 1)
    # Split the gap: trials running slower inside the sweep (checkpoints, reporting, contention) vs
    # time when no trial runs (start-up, wrap-up, gaps between trials).
    in_trial_ratio = statistics.mean(in_sweep) / statistics.mean(compute)
    outside_trials = sweep_wall - sum(in_sweep) / args.slots
    split = {name: (statistics.mean(trials) / statistics.mean(compute), wall - sum(trials) / args.slots / runs)
             for name, wall, trials, runs in (("tune_floor", floor_wall, in_floor, args.repeats),
                                              ("stock", stock_wall, in_stock, 1))}
    cache_root.cleanup()
    print(f"trials={args.trials} slots={args.slots} epochs={epochs} trial_compute_s={statistics_line(compute)} "
          f"trial_in_sweep_s={statistics_line(in_sweep)} in_trial_ratio={in_trial_ratio:.3f} "
          f"outside_trials_s={outside_trials:.1f} contention={contention:.3f} ideal_s={ideal:.1f} "
          f"sweep_wall_s={sweep_wall:.1f} "
          + " ".join(f"{name}_in_trial_ratio={ratio:.3f} {name}_outside_trials_s={outside:.1f}"
                     for name, (ratio, outside) in split.items())
          + f" tune_floor_runs={'/'.join(f'{wall / ideal:.3f}' for wall in floor_walls)}"
          + f" tune_floor={floor_wall / ideal:.3f} stock={stock_wall / ideal:.3f} overhead={sweep_wall / ideal:.3f}")


def timed_command(command: list[str], workdir: Path, env: dict) -> float:
    """Wall seconds of ``command`` from process start to exit; exits the bench if it fails. The disk's dirty
    pages are flushed first (untimed): the kernel writing back what the previous row wrote (the stock row
    writes ~90 MB per epoch through the page cache) would otherwise slow the next row's trials."""
    os.sync()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[1:3])} failed:\n{result.stderr[-3000:]}")
    return wall


def trial_seconds(workdir: Path) -> list[float]:
    """Each trial's own wall time in a Tune run under ``workdir`` (time_total_s, setup included)."""
    totals = []
    for path in sorted(workdir.glob("ray_results/*/*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        totals.append(rows[-1]["time_total_s"])
    return totals


def statistics_line(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
