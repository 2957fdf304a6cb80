"""The stock stack: the same sweep written the way Ray's documentation shows it, no hpo-cls around it.

    python bench/stock_stack.py --epochs 8 --lrs 0.02,0.03,0.05     # prints stock_wall_s=...

``tune.Tuner`` with ``OptunaSearch`` over the same learning rates (``points_to_evaluate`` makes its first
trials exactly those, as hpo-cls's grid does), ``ASHAScheduler`` with ``grace_period = max_t`` so it never
stops a trial (like the FIFO sweep it is compared with), ``MLflowLoggerCallback(save_artifact=True)`` on a
SQLite store, a ``tune.Checkpoint`` every epoch written with ``torch.save`` into a temporary folder,
``reuse_actors`` at its default, ``--slots`` trials at a time with 1 CPU each. Each trial trains the
engine's ``TrainingRun``, like hpo-cls and ``bench/tune_floor.py``, so only the orchestration differs.
The one departure from the docs: ``ray.init(address="local")`` instead of an implicit ``ray.init()``, so the
script never joins another Ray instance running on the machine. ``bench/overhead.py`` times it as a
whole, from process start to a normal interpreter exit, as a user's script would run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from hpo_cls.spec import DataConfig, TrialConfig
from hpo_cls.train.run import TrainingRun

REPO = Path(__file__).resolve().parents[1]


def train_fn(config: dict, epochs: int, backbone: str) -> None:
    data = DataConfig(root=REPO / "data" / "cifar10-mini", image_size=32, workers=0)
    run = TrainingRun(data, TrialConfig(backbone=backbone, lr=config["lr"], batch_size=64), epochs)
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            run.load_state_dict(torch.load(os.path.join(directory, "checkpoint.pt"), weights_only=False))
    while run.epoch < epochs:
        metrics = run.run_epoch()
        with tempfile.TemporaryDirectory() as directory:
            torch.save(run.state_dict(), os.path.join(directory, "checkpoint.pt"))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lrs", required=True, help="comma-separated learning rates, one trial each")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--backbone", default="resnet18")
    args = parser.parse_args()

    import ray

    ray.init(address="local")
    lrs = [float(lr) for lr in args.lrs.split(",")]
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_fn, epochs=args.epochs, backbone=args.backbone), {"cpu": 1}),
        param_space={"lr": tune.choice(lrs)},
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            search_alg=OptunaSearch(points_to_evaluate=[{"lr": lr} for lr in lrs]),
            scheduler=ASHAScheduler(max_t=args.epochs, grace_period=args.epochs),
            num_samples=len(lrs),
            max_concurrent_trials=args.slots,
        ),
        run_config=tune.RunConfig(
            name="stock",
            storage_path=str(Path("ray_results").resolve()),
            callbacks=[MLflowLoggerCallback(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}",
                                            experiment_name="stock", save_artifact=True)],
        ),
    )
    results = tuner.fit()
    errors = [str(result.error) for result in results if result.error]
    if errors:
        sys.exit(f"{len(errors)} trial(s) failed: {errors[0][:500]}")


if __name__ == "__main__":
    main()
