"""Ray Tune's own floor: the bare minimum sweep of the same configurations, no hpo-cls around it.

    python bench/tune_floor.py --epochs 8 --lrs 0.02,0.03,0.05     # prints tune_wall_s=...

A plain `tune.Tuner` over a grid of learning rates, FIFO, ``--slots`` trials at a time with 1 CPU each,
reusing actors; each trial trains the engine's ``TrainingRun`` and reports every epoch. No checkpoints,
no MLflow, no searcher, no pre-flight, no progress table. ``bench/overhead.py`` times this script as a
whole (process start to exit) next to ``hpo-cls sweep``: what is left of the overhead in this run is what
Ray Tune costs on the machine, whatever is built on top of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ray import tune

from hpo_cls.spec import DataConfig, TrialConfig
from hpo_cls.train.run import TrainingRun

REPO = Path(__file__).resolve().parents[1]


def bare_trainable(config: dict, epochs: int, backbone: str) -> None:
    data = DataConfig(root=REPO / "data" / "cifar10-mini", image_size=32, workers=0)
    run = TrainingRun(data, TrialConfig(backbone=backbone, lr=config["lr"], batch_size=64), epochs)
    while run.epoch < epochs:
        tune.report(run.run_epoch())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lrs", required=True, help="comma-separated learning rates, one trial each")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--storage", default=None, help="Tune's results folder (default: ./ray_results)")
    args = parser.parse_args()

    import ray

    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, logging_level="WARNING")
    lrs = [float(lr) for lr in args.lrs.split(",")]
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(bare_trainable, epochs=args.epochs, backbone=args.backbone),
                            {"cpu": 1}),
        param_space={"lr": tune.grid_search(lrs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.slots, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(Path(args.storage or "ray_results").resolve()), verbose=0),
    )
    results = tuner.fit()
    errors = [str(result.error) for result in results if result.error]
    ray.shutdown()
    sys.stdout.flush()
    if errors:
        print(f"{len(errors)} trial(s) failed: {errors[0][:500]}", file=sys.stderr)
    os._exit(1 if errors else 0)  # like `hpo-cls`: no interpreter teardown of torch and Ray


if __name__ == "__main__":
    main()
