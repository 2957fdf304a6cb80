"""Quality at equal compute: a shipped spec (`hpo-cls sweep`, then `hpo-cls promote` twice: `--select topk --top 2`
and `--select greedy`) vs the stock Ray-docs sweep.

    python bench/quality.py                                   # sweeps/quickstart.yaml, embedded data, 3 seeds
    python bench/quality.py --seeds 1                         # while iterating
    python bench/quality.py --root /work/shared/datasets/cifar10-hw
    python bench/quality.py --spec sweeps/cbam_placement.yaml --set fixed.pretrained=false ...   # reduced budget

For each seed, side by side in one run (their order alternates from seed to seed, so a change in the machine's
load hits both): (a) ``bench/stock_sweep.py``, the sweep a user writes from Ray Tune's examples (ResNet-18,
AdamW, random search over lr / dropout / label smoothing, flip only, FIFO, ``MLflowLoggerCallback``), and (b)
``hpo-cls sweep SPEC`` then both promotes of that one sweep, all with the spec's number of trials, epochs and
concurrency (after ``--set``). Every command is timed as a whole, from process start to exit. The seed is the
stock sweep's random-search and torch seed, and the spec's ``search.seed`` and ``fixed.seed``.

Every figure is on images no selection saw: the held-out half of val (``hpo_cls.promote.val_split``; promote
chooses members on the other half) and, where the data has ``test_labels.csv``, the labelled test images.
Prints one line per seed and the means: ``stock_heldout`` (the stock sweep's best trial, chosen by val_acc over
all of val, on the held-out half: the stock side's choice saw those images, ours did not), ``top2_heldout`` /
``greedy_heldout`` (the two ensembles), ``top2_test`` / ``greedy_test``, ``ratio = <default ensemble>_heldout /
stock_heldout`` (the default of ``promote --select``), ``ratio_greedy`` and ``ratio_top2``, and ``wall_ratio =
(sweep + the default promote's wall) / stock wall``. Compute counts as equal when ``wall_ratio <= 1.2``.
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

from hpo_cls.promote.strategies import DEFAULT_SELECT
from hpo_cls.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
STOCK = REPO / "bench" / "stock_sweep.py"
PROMOTES = {"top2": ["--select", "topk", "--top", "2"], "greedy": ["--select", "greedy"]}
_KEY = {"topk": "top2", "greedy": "greedy"}


@dataclass
class SeedResult:
    seed: int
    stock_best_val: float
    stock_heldout: float
    hpo_best_val: float
    stock_wall_s: float
    sweep_wall_s: float
    hpo_epochs: int
    ensembles: dict[str, dict]  # "top2" | "greedy" -> heldout, test (None without labels), wall_s, members, retrained

    def ratio(self, which: str = DEFAULT_SELECT) -> float:
        return self.ensembles[_KEY[which]]["heldout"] / self.stock_heldout

    def wall_ratio(self, which: str = DEFAULT_SELECT) -> float:
        return (self.sweep_wall_s + self.ensembles[_KEY[which]]["wall_s"]) / self.stock_wall_s


def timed(args: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    """Run a command to completion; (wall seconds, stdout). Exits with its output's tail if it fails."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} ... failed ({log}):\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds, result.stdout


def run_stock(workdir: Path, root: Path, spec, seed: int) -> tuple[float, float, float]:
    budget = spec.budget
    seconds, out = timed([sys.executable, str(STOCK), "--root", str(root), "--trials", str(budget.num_samples),
                          "--epochs", str(budget.epochs), "--concurrency", str(budget.max_concurrent),
                          "--batch-size", str(spec.fixed.batch_size), "--seed", str(seed),
                          "--storage", str(workdir / "stock_ray"),
                          "--tracking-uri", f"sqlite:///{workdir / 'stock.db'}"], workdir, workdir / "stock.log")
    found = re.search(r"best_val_acc=([0-9.]+) heldout_acc_at_best=([0-9.]+)", out)
    return seconds, float(found.group(1)), float(found.group(2))


def run_hpo(workdir: Path, spec_path: Path, overrides: list[str], spec, seed: int) -> tuple[float, dict, dict]:
    uri = f"sqlite:///{workdir / 'hpo.db'}"
    sets = [*overrides, f"search.seed={seed}", f"fixed.seed={seed}", f"storage_path={workdir / 'hpo_ray'}"]
    name = f"bench-{seed}"
    cli = [sys.executable, "-m", "hpo_cls.cli"]
    sweep_s, _ = timed([*cli, "sweep", str(spec_path), *[a for s in sets for a in ("--set", s)], "--name", name,
                        "--tracking-uri", uri], workdir, workdir / "sweep.log")
    walls = {}
    for key, flags in PROMOTES.items():
        walls[key], _ = timed([*cli, "promote", *flags, "--sweep", name, "--experiment", spec.tracking.experiment,
                               "--tracking-uri", uri, "--workdir", str(workdir / f"promote_{key}"),
                               "--register-as", f"{name}-{key}", "--out", str(workdir / f"prediction_{key}.csv")],
                              workdir, workdir / f"promote_{key}.log")
    return sweep_s, walls, read_hpo(uri, spec.tracking.experiment, name)


def read_hpo(uri: str, experiment: str, sweep_id: str) -> dict:
    """The sweep's best trial, its epochs, and per promote (by its ``select`` param): held-out and test accuracy."""
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id

    def runs(role: str):
        return client.search_runs([exp_id], f"tags.`hpo_cls.sweep_id` = '{sweep_id}' and tags.`hpo_cls.role` = '{role}'")

    parent = runs("sweep")[0]
    epochs = sum(int(r.data.tags.get("hpo_cls.epochs_run", 0)) for r in runs("trial"))
    ensembles = {}
    for promote in runs("promote"):
        metrics = promote.data.metrics
        if "val_heldout_acc" not in metrics:
            sys.exit(f"promote run {promote.info.run_id} has no val_heldout_acc: did the sweep's trials log their "
                     "validation predictions?")
        members = client.search_runs([exp_id], f"tags.`hpo_cls.role` = 'promote_member' and "
                                               f"tags.`mlflow.parentRunId` = '{promote.info.run_id}'")
        ensembles[_KEY[promote.data.params["select"]]] = {
            "heldout": metrics["val_heldout_acc"], "test": metrics.get("test_acc"), "members": len(members),
            "retrained": sum(m.data.tags.get("hpo_cls.reused_trial_checkpoint") != "1" for m in members)}
    return {"best": parent.data.metrics["best_val_acc"], "epochs": epochs, "ensembles": ensembles}


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
    (stock_s, stock_best, stock_heldout), (sweep_s, walls, found) = stock, hpo
    ensembles = {key: {**found["ensembles"][key], "wall_s": walls[key]} for key in PROMOTES}
    return SeedResult(seed, stock_best, stock_heldout, found["best"], stock_s, sweep_s, found["epochs"], ensembles)


def _test(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
          f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1}; ratio and wall_ratio: promote --select "
          f"{DEFAULT_SELECT}", flush=True)
    results = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = run_seed(seed, args.spec.resolve(), overrides, spec, root, args.keep)
        results.append(r)
        top2, greedy = r.ensembles["top2"], r.ensembles["greedy"]
        print(f"seed={seed} stock_best_val={r.stock_best_val:.4f} stock_heldout={r.stock_heldout:.4f} "
              f"hpo_best_val={r.hpo_best_val:.4f} top2_heldout={top2['heldout']:.4f} "
              f"greedy_heldout={greedy['heldout']:.4f} top2_test={_test(top2['test'])} "
              f"greedy_test={_test(greedy['test'])} greedy_members={greedy['members']} ratio={r.ratio():.3f} "
              f"ratio_top2={r.ratio('topk'):.3f} ratio_greedy={r.ratio('greedy'):.3f} | wall stock={r.stock_wall_s:.0f}s "
              f"sweep={r.sweep_wall_s:.0f}s promote top2={top2['wall_s']:.0f}s greedy={greedy['wall_s']:.0f}s "
              f"wall_ratio={r.wall_ratio():.3f} | epochs stock={b.num_samples * b.epochs} hpo={r.hpo_epochs} "
              f"+{top2['retrained'] * b.epochs} (top2) +{greedy['retrained'] * b.epochs} (greedy) retrained",
              flush=True)

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    heldout = {k: mean(r.ensembles[k]["heldout"] for r in results) for k in PROMOTES}
    test = {k: mean(r.ensembles[k]["test"] for r in results) for k in PROMOTES}
    stock = mean(r.stock_heldout for r in results)
    walls = {w: sum(r.sweep_wall_s + r.ensembles[_KEY[w]]["wall_s"] for r in results)
             / sum(r.stock_wall_s for r in results) for w in _KEY}
    print(f"stock_heldout={stock:.4f} top2_heldout={heldout['top2']:.4f} greedy_heldout={heldout['greedy']:.4f} "
          f"top2_test={_test(test['top2'])} greedy_test={_test(test['greedy'])} "
          f"ratio={heldout[_KEY[DEFAULT_SELECT]] / stock:.3f} ratio_top2={heldout['top2'] / stock:.3f} "
          f"ratio_greedy={heldout['greedy'] / stock:.3f} wall_ratio={walls[DEFAULT_SELECT]:.3f} "
          f"wall_ratio_greedy={walls['greedy']:.3f} wall_ratio_top2={walls['topk']:.3f} "
          f"(min ratio over seeds {min(r.ratio() for r in results):.3f})")


if __name__ == "__main__":
    main()
