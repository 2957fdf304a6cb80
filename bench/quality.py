"""Quality at equal compute: a shipped spec (`hpo-cls sweep` + `hpo-cls promote --top 2`) vs the stock Ray-docs sweep.

    python bench/quality.py                                   # sweeps/quickstart.yaml, embedded data, 3 seeds
    python bench/quality.py --seeds 1                         # while iterating
    python bench/quality.py --root /work/shared/datasets/cifar10-hw
    python bench/quality.py --spec sweeps/cbam_placement.yaml --set fixed.pretrained=false ...   # reduced budget

For each seed, side by side in one run (their order alternates from seed to seed, so a change in the machine's
load hits both): (a) ``bench/stock_sweep.py``, the sweep a user writes from Ray Tune's examples (ResNet-18,
AdamW, random search over lr / dropout / label smoothing, flip only, FIFO, ``MLflowLoggerCallback``), and (b)
``hpo-cls sweep SPEC`` then ``hpo-cls promote --top 2``, both with the spec's number of trials, epochs and
concurrency (after ``--set``). Every command is timed as a whole, from process start to exit. The seed is the
stock sweep's random-search and torch seed, and the spec's ``search.seed`` and ``fixed.seed``.

Prints one line per seed and the means: ``stock_best_val`` (the stock sweep's best val_acc over every epoch of
every trial), ``hpo_best_val`` (the sweep's best trial), ``ensemble_val`` (the promoted 2-member ensemble on
val), ``ratio = ensemble_val / stock_best_val`` and ``wall_ratio = (sweep + promote wall) / stock wall``.
Compute counts as equal when ``wall_ratio <= 1.2``: promote's retraining is part of hpo-cls's bill.
Each seed's line also gives the epochs each side trained, the ensemble's gain over its best member and the
near-duplicate pairs among the sweep's top 3 completed runs (what ``promote --dedupe`` would change).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from hpo_cls.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
STOCK = REPO / "bench" / "stock_sweep.py"


@dataclass
class SeedResult:
    seed: int
    stock_best_val: float
    hpo_best_val: float
    ensemble_val: float
    stock_wall_s: float
    sweep_wall_s: float
    promote_wall_s: float
    hpo_epochs: int
    promote_epochs: int
    ensemble_gain: float
    duplicates_top3: int

    @property
    def ratio(self) -> float:
        return self.ensemble_val / self.stock_best_val

    @property
    def wall_ratio(self) -> float:
        return (self.sweep_wall_s + self.promote_wall_s) / self.stock_wall_s


def timed(args: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    """Run a command to completion; (wall seconds, stdout). Exits with its output's tail if it fails."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} ... failed ({log}):\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds, result.stdout


def run_stock(workdir: Path, root: Path, spec, seed: int) -> tuple[float, float]:
    budget = spec.budget
    seconds, out = timed([sys.executable, str(STOCK), "--root", str(root), "--trials", str(budget.num_samples),
                          "--epochs", str(budget.epochs), "--concurrency", str(budget.max_concurrent),
                          "--batch-size", str(spec.fixed.batch_size), "--seed", str(seed),
                          "--storage", str(workdir / "stock_ray"),
                          "--tracking-uri", f"sqlite:///{workdir / 'stock.db'}"], workdir, workdir / "stock.log")
    return seconds, float(re.search(r"best_val_acc=([0-9.]+)", out).group(1))


def run_hpo(workdir: Path, spec_path: Path, overrides: list[str], spec, seed: int) -> tuple[float, float, dict]:
    uri = f"sqlite:///{workdir / 'hpo.db'}"
    sets = [*overrides, f"search.seed={seed}", f"fixed.seed={seed}", f"storage_path={workdir / 'hpo_ray'}"]
    name = f"bench-{seed}"
    cli = [sys.executable, "-m", "hpo_cls.cli"]
    sweep_s, _ = timed([*cli, "sweep", str(spec_path), *[a for s in sets for a in ("--set", s)], "--name", name,
                        "--tracking-uri", uri], workdir, workdir / "sweep.log")
    promote_s, _ = timed([*cli, "promote", "--top", "2", "--sweep", name, "--experiment", spec.tracking.experiment,
                          "--tracking-uri", uri, "--workdir", str(workdir / "promote"),
                          "--out", str(workdir / "prediction.csv")], workdir, workdir / "promote.log")
    return sweep_s, promote_s, read_hpo(uri, spec.tracking.experiment, name)


def read_hpo(uri: str, experiment: str, sweep_id: str) -> dict:
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id

    def runs(role: str):
        return client.search_runs([exp_id], f"tags.`hpo_cls.sweep_id` = '{sweep_id}' and tags.`hpo_cls.role` = '{role}'")

    parent, promote = runs("sweep")[0], runs("promote")[0]
    epochs = sum(int(r.data.tags.get("hpo_cls.epochs_run", 0)) for r in runs("trial"))
    members = client.search_runs([exp_id], f"tags.`hpo_cls.role` = 'promote_member' and "
                                           f"tags.`mlflow.parentRunId` = '{promote.info.run_id}'")
    retrained = sum(m.data.tags.get("hpo_cls.reused_trial_checkpoint") != "1" for m in members)
    return {"best": parent.data.metrics["best_val_acc"], "ensemble": promote.data.metrics["val_acc"],
            "retrained": retrained,
            "gain": promote.data.metrics["val_gain_over_best_member"], "epochs": epochs,
            "duplicates": near_duplicates_in_top(client, experiment, sweep_id, 3)}


def near_duplicates_in_top(client: MlflowClient, experiment: str, sweep_id: str, top: int) -> int:
    """Near-duplicate pairs among the sweep's ``top`` completed runs: what ``--dedupe`` would change."""
    from hpo_cls.promote.select import load_candidates, near_duplicate_pairs
    from hpo_cls.tracking.store import MlflowStore

    store = MlflowStore(client.tracking_uri, client)
    candidates = load_candidates(store, store.find_sweep(experiment, sweep_id))
    ranked = sorted((c for c in candidates if c.status == "completed"), key=lambda c: (c.rule.key(c.score), c.start_time))
    return len(near_duplicate_pairs(ranked[:top]))


def run_seed(seed: int, spec_path: Path, overrides: list[str], spec, root: Path, keep: Path | None) -> SeedResult:
    with tempfile.TemporaryDirectory(prefix=f"quality-{seed}-") as tmp:
        workdir = Path(keep / f"seed{seed}" if keep else tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        stock = hpo = None
        for step in (("stock", "hpo") if seed % 2 == 0 else ("hpo", "stock")):
            if step == "stock":
                stock = run_stock(workdir, root, spec, seed)
            else:
                hpo = run_hpo(workdir, spec_path, overrides, spec, seed)
    (stock_s, stock_best), (sweep_s, promote_s, found) = stock, hpo
    return SeedResult(seed, stock_best, found["best"], found["ensemble"], stock_s, sweep_s, promote_s,
                      found["epochs"], found["retrained"] * spec.budget.epochs, found["gain"], found["duplicates"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=REPO / "sweeps" / "quickstart.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override the spec for both sides (budget.*) or for hpo-cls only (repeatable)")
    parser.add_argument("--root", type=Path, help="data folder for both (default: the spec's data.root)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep every run's folder (logs, MLflow stores) here")
    args = parser.parse_args()

    overrides = list(args.overrides) + ([f"data.root={args.root.resolve()}"] if args.root else [])
    spec = load_spec(args.spec, overrides)
    root = Path(spec.data.root).resolve()
    b = spec.budget
    print(f"{args.spec.name} on {root}: {b.num_samples} trials x {b.epochs} epochs, {b.max_concurrent} at a time; "
          f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1}", flush=True)
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = run_seed(seed, args.spec.resolve(), overrides, spec, root, args.keep)
        results.append(r)
        print(f"seed={seed} stock_best_val={r.stock_best_val:.4f} hpo_best_val={r.hpo_best_val:.4f} "
              f"ensemble_val={r.ensemble_val:.4f} ratio={r.ratio:.3f} | wall stock={r.stock_wall_s:.0f}s "
              f"sweep={r.sweep_wall_s:.0f}s promote={r.promote_wall_s:.0f}s wall_ratio={r.wall_ratio:.3f} | "
              f"epochs stock={b.num_samples * b.epochs} hpo={r.hpo_epochs}+{r.promote_epochs} retrained | ensemble gain "
              f"{r.ensemble_gain:+.4f}, near-duplicates in top 3: {r.duplicates_top3}", flush=True)
    mean = {k: statistics.mean(getattr(r, k) for r in results) for k in ("stock_best_val", "hpo_best_val",
                                                                         "ensemble_val")}
    wall = sum(r.sweep_wall_s + r.promote_wall_s for r in results) / sum(r.stock_wall_s for r in results)
    print(f"stock_best_val={mean['stock_best_val']:.4f} hpo_best_val={mean['hpo_best_val']:.4f} "
          f"ensemble_val={mean['ensemble_val']:.4f} ratio={mean['ensemble_val'] / mean['stock_best_val']:.3f} "
          f"wall_ratio={wall:.3f} (min ratio over seeds {min(r.ratio for r in results):.3f})")


if __name__ == "__main__":
    main()
