"""Decoded-image cache: one shared memory-mapped copy per node vs one in-memory copy per trial, and the
224-px input pipeline's images/s per CPU core.

    python bench/data_cache.py                      # 10,000 JPEGs: the embedded set re-encoded at 500x375, tiled
    python bench/data_cache.py --root DATA          # a real data set (train/ and val/ folders)
    python bench/data_cache.py --images 2000        # quicker, for iterating

(a) Trial setup and node memory. Each "trial" is a process with one torch thread that builds its loaders
(``build_loaders``: list, decode or map the cache), reads every train and val image once through the
transforms, then reports its memory while the other trials are still alive. Modes, side by side:
``per_trial`` (today's: every trial decodes the whole set into its own memory) and ``shared`` (the
node's cache file, built once beforehand as a sweep's driver does). Memory is each process's PSS
(proportional set size: a page shared by k processes counts 1/k in each), so summing PSS over the trials
counts the mapped file once, as the node pays for it; summing RSS would count it once per trial.
(b) Input pipeline at 224 px, one core: train-loader images/s (RandomResizedCrop + flip + normalise, batch
collate, no model) reading the cache, decoding the JPEGs, and the CPU half of the device path (pad +
crop boxes; the crop, resize and normalise then run on the GPU), counted per second of the process's CPU
time (one thread: one core's work, whatever else the machine runs) and, for the cache, per wall second.

Prints ``setup_ratio`` (shared trial setup / per-trial setup, target ≤ 0.10), ``rss_ratio`` (node memory
with 2 shared trials / 1 trial, target ≤ 1.2) and ``images_per_s_per_core`` (target ≥ 400).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch
from PIL import Image

from hpo_cls.data.loaders import build_loaders
from hpo_cls.spec import DataConfig, TrialConfig

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data" / "cifar10-mini"


def make_dataset(target: Path, images: int, size=(500, 375)) -> Path:
    """The embedded train and val images upscaled to ``size`` and re-encoded as JPEG (quality 90), then
    tiled by hard links up to ``images`` files (80% train, 20% val): real photos at a real size."""
    for split, share in (("train", 0.8), ("val", 0.2)):
        sources = sorted((EMBEDDED / split).glob("*/*.jpg"))
        encoded = []
        for path in sources:
            out = target / "originals" / split / path.parent.name / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").resize(size, Image.BICUBIC).save(out, quality=90)
            encoded.append(out)
        for i in range(int(images * share)):
            source = encoded[i % len(encoded)]
            link = target / split / source.parent.name / f"{i // len(encoded)}-{source.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, link)
    return target


def trial(data: DataConfig, shared: bool, barrier, results) -> None:
    """One trial's data side: setup, one pass over every image, memory while all trials are alive."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    loaders = build_loaders(data, TrialConfig(batch_size=64), shared_cache=shared)
    setup = time.perf_counter() - start
    for loader in (loaders.train, loaders.val):
        dataset = loader.dataset
        for i in range(len(dataset)):  # every image once, as an epoch reads them
            dataset[i]
    barrier.wait()
    memory = psutil.Process().memory_full_info()
    results.put((setup, memory.rss, memory.pss, memory.uss))
    barrier.wait()  # nobody exits (and unmaps) before everyone has measured


def run_trials(data: DataConfig, shared: bool, count: int) -> list[tuple[float, int, int, int]]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    workers = [context.Process(target=trial, args=(data, shared, barrier, results)) for _ in range(count)]
    for worker in workers:
        worker.start()
    measured = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode:
            sys.exit(f"a trial process failed (exit {worker.exitcode})")
    return measured


def loader_images_per_s(data: DataConfig, batches: int, **options) -> tuple[float, float]:
    """Train-loader images per second of wall time and per second of this process's CPU time, on one
    core (no workers, one torch thread), after one warm-up batch. On a shared machine the wall figure
    says how busy it is; images per CPU second is what one core of its own would do."""
    loaders = build_loaders(data, TrialConfig(batch_size=64), seed=0, **options)
    iterator = iter(loaders.train)
    next(iterator)
    start, cpu_start, seen = time.perf_counter(), time.process_time(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += len(images)
    return seen / (time.perf_counter() - start), seen / (time.process_time() - cpu_start)


def gib(values) -> float:
    return sum(values) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="data set with train/ and val/ (default: generated)")
    parser.add_argument("--images", type=int, default=10_000, help="size of the generated set")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=20, help="batches of 64 per pipeline measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or make_dataset(Path(tmp) / "data", args.images)
        data = DataConfig(root=root, image_size=args.image_size, workers=0, cache_dir=Path(tmp) / "cache")
        count = sum(1 for split in ("train", "val") for _ in (root / split).glob("*/*"))
        # (b) first, while the machine holds no caches of (a): cache, JPEG decode, device path's CPU half.
        rounds = {"cache": [], "decode": [], "device_cpu_part": []}
        build_loaders(data, TrialConfig())  # builds the node's train and val caches
        for _ in range(2):  # interleaved, so drift hits all three alike
            rounds["cache"].append(loader_images_per_s(data, args.batches))
            rounds["decode"].append(loader_images_per_s(data, args.batches // 4 or 1, cache=False))
            rounds["device_cpu_part"].append(loader_images_per_s(data, args.batches, device_augment=True))
        pipeline = {name: [statistics.mean(v) for v in zip(*values)] for name, values in rounds.items()}
        # (a) today's per-trial copies, then the shared file (rebuilt here and timed: the first trial of a node does it).
        per_trial_1, per_trial_2 = run_trials(data, False, 1), run_trials(data, False, 2)
        for path in (Path(tmp) / "cache").rglob("*.u8"):
            path.unlink()
        start = time.perf_counter()
        build_loaders(data, TrialConfig())  # builds the node's train and val caches
        build_s = time.perf_counter() - start
        shared_1, shared_2 = run_trials(data, True, 1), run_trials(data, True, 2)

    def line(name, one, two):
        return (f"{name}_setup_s={statistics.mean(r[0] for r in two):.2f} "
                f"{name}_pss_gib_1={gib(r[2] for r in one):.2f} {name}_pss_gib_2={gib(r[2] for r in two):.2f} "
                f"{name}_rss_gib_2={gib(r[1] for r in two):.2f}")

    setup_ratio = statistics.mean(r[0] for r in shared_2) / statistics.mean(r[0] for r in per_trial_2)
    rss_ratio = gib(r[2] for r in shared_2) / gib(r[2] for r in shared_1)
    print(f"images={count} image_size={args.image_size} {line('per_trial', per_trial_1, per_trial_2)} "
          f"{line('shared', shared_1, shared_2)} shared_build_s={build_s:.1f} "
          f"per_trial_rss_ratio={gib(r[2] for r in per_trial_2) / gib(r[2] for r in per_trial_1):.2f} "
          f"wall_images_per_s={pipeline['cache'][0]:.0f} decode_images_per_s_per_core={pipeline['decode'][1]:.0f} "
          f"device_path_cpu_images_per_s_per_core={pipeline['device_cpu_part'][1]:.0f} "
          f"setup_ratio={setup_ratio:.3f} rss_ratio={rss_ratio:.2f} "
          f"images_per_s_per_core={pipeline['cache'][1]:.0f}")


if __name__ == "__main__":
    main()
