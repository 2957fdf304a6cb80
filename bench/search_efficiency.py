"""Compute efficiency of TPE + ASHA against random search with every trial trained to the full budget.

    python bench/search_efficiency.py                 # bench/search_efficiency.yaml, 3 seeds
    python bench/search_efficiency.py --seeds 5 --trials 24 --epochs 8

For each seed, two real sweeps of `bench/search_efficiency.yaml` (optimizer, learning rate, weight decay and
label smoothing of a ResNet-18 on the embedded data) with the same number of trials and epochs run
one after the other: (1) random sampler + FIFO (every trial runs all epochs), (2) TPE + ASHA. From their
MLflow metric histories, in the order the epochs finished, it finds how many epochs TPE + ASHA trained
before some trial reached 99% of random search's best val_acc, as a fraction of random search's epochs.
Prints the per-seed figures and ``epoch_fraction=<median over seeds>`` (target ≤ 0.33; inf = never reached).

    python bench/search_efficiency.py --warm-start    # the warm-start row instead

With ``--warm-start``, for each seed three TPE + ASHA sweeps run: an earlier one (another seed), then a cold
one and one warm-started from the earlier sweep (``hpo-cls sweep --warm-start``), both with this seed. It
prints the epochs each needed (in finishing order) to reach 99% of the cold sweep's best val_acc and
``warm_epoch_ratio=<median of warm / cold over seeds>`` (below 1: the warm start saved epochs).
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

SPEC = Path(__file__).resolve().with_suffix(".yaml")


def run_sweep(workdir: Path, overrides: list[str], name: str = "sweep",
              extra: tuple[str, ...] = (), show: tuple[str, ...] = ()) -> list[tuple[int, int, float]]:
    """Run a sweep named ``name``; return (timestamp_ms, epoch, val_acc) of every epoch of every trial.
    Lines of its output that contain one of ``show`` are printed, with the sweep's wall time."""
    start = time.monotonic()
    args = [sys.executable, "-m", "hpo_cls.cli", "sweep", str(SPEC), "--name", name, "--no-estimate", *extra]
    for item in overrides:
        args += ["--set", item]
    result = subprocess.run(args, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sweep failed:\n{result.stderr[-3000:]}")
    if show:
        for line in result.stdout.splitlines():
            if any(text in line for text in show):
                print(f"  {name}: {line.strip()}", flush=True)
        print(f"  {name}: {time.monotonic() - start:.0f} s", flush=True)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench")
    points = []
    trials = f"tags.`hpo_cls.role` = 'trial' and tags.`hpo_cls.sweep_id` = '{name}'"
    for run in client.search_runs([experiment.experiment_id], trials, max_results=10_000):
        for metric in client.get_metric_history(run.info.run_id, "val_acc"):
            points.append((metric.timestamp, metric.step, metric.value))
    return sorted(points)


def epochs_to_reach(points: list[tuple[int, int, float]], target: float) -> float:
    """Epochs trained (in finishing order) until the first epoch whose val_acc ≥ target; inf if never."""
    for trained, (_, _, value) in enumerate(points, start=1):
        if value >= target:
            return trained
    return math.inf


def warm_start_row(seed: int, common: list[str], tpe_asha: list[str]) -> float:
    """Epochs a sweep warm-started from an earlier one needs to reach 99% of a cold sweep's best, over the
    epochs the cold sweep itself needed."""
    with tempfile.TemporaryDirectory() as warm_dir, tempfile.TemporaryDirectory() as cold_dir:
        run_sweep(Path(warm_dir), common + tpe_asha + [f"search.seed={seed + 100}"], name="earlier", show=("best trial",))
        cold = run_sweep(Path(cold_dir), common + tpe_asha + [f"search.seed={seed}"], name="cold", show=("best trial",))
        warm = run_sweep(Path(warm_dir), common + tpe_asha + [f"search.seed={seed}"], name="warm",
                         extra=("--warm-start", "earlier"), show=("warm start", "best trial"))
    target = 0.99 * max(value for _, _, value in cold)
    cold_needed, warm_needed = epochs_to_reach(cold, target), epochs_to_reach(warm, target)
    print(f"seed={seed} warm start: cold sweep reached 99% of its best ({target / 0.99:.4f}) after {cold_needed} of "
          f"{len(cold)} epochs, the warm-started sweep after {warm_needed} of {len(warm)} "
          f"-> ratio={warm_needed / cold_needed:.3f}", flush=True)
    return warm_needed / cold_needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed + seeds - 1")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=3)
    parser.add_argument("--warm-start", action="store_true", help="the warm-start row instead")
    args = parser.parse_args()

    common = [f"budget.num_samples={args.trials}", f"budget.epochs={args.epochs}",
              f"budget.max_concurrent={args.concurrency}"]
    tpe_asha = ["search.sampler=tpe", "scheduler.type=asha", f"scheduler.grace_period={args.grace_period}",
                f"scheduler.reduction_factor={args.reduction_factor}"]
    if args.warm_start:
        ratios = [warm_start_row(seed, common, tpe_asha) for seed in range(args.first_seed, args.first_seed + args.seeds)]
        print(f"trials={args.trials} epochs={args.epochs} seeds={args.seeds} "
              f"warm_epoch_ratio={statistics.median(ratios):.3f}")
        return
    fractions = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as random_dir, tempfile.TemporaryDirectory() as tpe_dir:
            random_points = run_sweep(Path(random_dir), common + [
                "search.sampler=random", f"search.seed={seed}", "scheduler.type=fifo"])
            tpe_points = run_sweep(Path(tpe_dir), common + tpe_asha + [f"search.seed={seed}"])
        random_best = max(value for _, _, value in random_points)
        tpe_best = max(value for _, _, value in tpe_points)
        needed = epochs_to_reach(tpe_points, 0.99 * random_best)
        fraction = needed / len(random_points)
        fractions.append(fraction)
        print(f"seed={seed} random: {len(random_points)} epochs best={random_best:.4f} | tpe+asha: "
              f"{len(tpe_points)} epochs best={tpe_best:.4f} reached 99% after {needed} epochs "
              f"-> fraction={fraction:.3f}", flush=True)
    print(f"trials={args.trials} epochs={args.epochs} seeds={args.seeds} "
          f"epoch_fraction={statistics.median(fractions):.3f}")


if __name__ == "__main__":
    main()
