"""Which ResNet stem wins for small images at equal wall time: ImageNet (7x7/2 conv + max-pool) or CIFAR
(3x3/1 conv, no max-pool, ``small_input: true``).

    python bench/stem.py                      # the quickstart's fixed config, its 4-epoch budget, 2 seeds
    python bench/stem.py --equal-epochs       # also the CIFAR stem for the full epoch budget (slow)

At 32 px the CIFAR stem keeps layer1 at 32x32 instead of 8x8: ~15x the FLOPs per image for ResNet-18.
For each seed, in this process on one thread (what a trial with ``cpu: 1`` gets): (a) the spec's ``fixed``
configuration with the ImageNet stem for ``budget.epochs`` epochs, timed; (b) the same with the CIFAR stem
for as many epochs as fit in (a)'s time (at least one; the cosine schedule spans them), sized from a short
timed probe of both. Prints ``imagenet_val``, ``cifar_val`` (final val_acc, means over seeds), the epochs and
seconds each got, and ``cifar_over_imagenet``; with ``--equal-epochs``, ``cifar_val_equal_epochs`` too.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from hpo_cls.spec import load_spec
from hpo_cls.train.run import TrainingRun

REPO = Path(__file__).resolve().parents[1]


def train(data, cfg, epochs: int) -> tuple[float, float]:
    """(final val_acc, seconds) of one run, model and data set-up included."""
    start = time.perf_counter()
    run = TrainingRun(data, cfg, epochs)
    while run.epoch < epochs:
        metrics = run.run_epoch()
    return metrics["val_acc"], time.perf_counter() - start


def step_seconds(data, cfg, steps: int = 8) -> float:
    """Seconds per training step (after one warm-up step)."""
    run = TrainingRun(data, cfg, 1)
    model, batches = run.model.train(), iter(run.loaders.train)
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        images, targets = next(batches)
        run.optimizer.zero_grad()
        run.criterion(model(images), targets).backward()
        run.optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=REPO / "sweeps" / "quickstart.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--equal-epochs", action="store_true", help="also train the CIFAR stem for every epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)

    spec = load_spec(args.spec, args.overrides)
    data, epochs = spec.data, spec.budget.epochs
    imagenet_cfg = dataclasses.replace(spec.fixed, small_input=False)
    cifar_cfg = dataclasses.replace(spec.fixed, small_input=True)
    cost = step_seconds(data, cifar_cfg) / step_seconds(data, imagenet_cfg)
    cifar_epochs = max(1, int(epochs / cost))
    print(f"{args.spec.name}: image_size {data.image_size}, {spec.fixed.backbone}; a CIFAR-stem step costs {cost:.1f}x "
          f"an ImageNet-stem step: {epochs} epoch(s) vs {cifar_epochs}", flush=True)
    rows = {"imagenet": [], "cifar": [], "cifar_equal": []}
    for seed in range(args.seeds):
        rows["imagenet"].append(train(data, dataclasses.replace(imagenet_cfg, seed=seed), epochs))
        rows["cifar"].append(train(data, dataclasses.replace(cifar_cfg, seed=seed), cifar_epochs))
        if args.equal_epochs:
            rows["cifar_equal"].append(train(data, dataclasses.replace(cifar_cfg, seed=seed), epochs))
        print(f"seed={seed} " + " ".join(f"{k}_val={v[-1][0]:.4f} {k}_s={v[-1][1]:.0f}" for k, v in rows.items() if v),
              flush=True)
    mean = {k: statistics.mean(acc for acc, _ in v) for k, v in rows.items() if v}
    line = (f"imagenet_val={mean['imagenet']:.4f} ({epochs} epochs) cifar_val={mean['cifar']:.4f} ({cifar_epochs} "
            f"epochs) cifar_over_imagenet={mean['cifar'] / mean['imagenet']:.3f} step_cost={cost:.1f}x")
    if "cifar_equal" in mean:
        line += f" cifar_val_equal_epochs={mean['cifar_equal']:.4f}"
    print(line)


if __name__ == "__main__":
    main()
