"""GPU check: the first thing to run on a machine with an NVIDIA GPU (a few minutes; exit 0 = all good).

    python bench/gpu_check.py                  # everything
    python bench/gpu_check.py --no-compile     # skip torch.compile (its first compile takes a minute)

1. CUDA is visible (device, memory, bf16).
2. A 4-trial quickstart-sized sweep with ``resources.gpu: 0.5``: all trials complete, two of them run on the
   card at once and both progress, each trial's peak GPU memory, and the memory a trial finds allocated
   when it starts on an actor that an earlier trial used (Tune reuses actors): released, or not.
3. ResNet-50 at 224 px, bf16 autocast + channels_last (+ torch.compile): the engine's images/s vs a plain
   PyTorch AMP loop on the same card and batches (``engine_vs_plain``).
4. The train loader at 224 px with augmentation on the GPU vs on the CPU, images/s into the card.
5. ``hpo-cls promote`` of the sweep at ``gpu: 0.5`` and ``hpo-cls predict`` with the registered model, which
   runs on the GPU.

Prints one summary line of figures and ratios and exits 1 if any check failed. Without a CUDA device it
says so and exits 0: nothing to check.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data" / "cifar10-mini"
NO_CUDA = "no CUDA device: torch.cuda.is_available() is False (torch {version}); nothing to check on this machine"


@dataclass
class TrialRecord:
    """One sweep trial as its Tune ``result.json`` tells it."""

    name: str
    pid: int
    start: float  # unix seconds
    end: float
    rows: list[dict] = field(default_factory=list)

    def metric_max(self, key: str) -> float:
        return max((row[key] for row in self.rows if key in row), default=0.0)


def read_trials(experiment: Path) -> list[TrialRecord]:
    """Every trial of a Tune experiment folder, by the rows of its ``result.json``."""
    records = []
    for path in sorted(Path(experiment).glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            last = rows[-1]
            records.append(TrialRecord(path.parent.name, last["pid"], last["timestamp"] - last["time_total_s"],
                                       last["timestamp"], rows))
    return records


def concurrent_pairs(records: list[TrialRecord], min_share: float = 0.5) -> int:
    """Pairs of trials that ran at once for at least ``min_share`` of the shorter one, each reporting
    epochs all along (so both progressed while sharing the card, neither waited for the other)."""
    pairs = 0
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            overlap = min(a.end, b.end) - max(a.start, b.start)
            shorter = min(a.end - a.start, b.end - b.start)
            if shorter > 0 and overlap >= min_share * shorter and len(a.rows) > 1 and len(b.rows) > 1:
                pairs += 1
    return pairs


def memory_after_reuse(records: list[TrialRecord]) -> tuple[int, float]:
    """(trials that started on an actor an earlier trial had used, the most GPU memory, MiB, one of them
    found still allocated when it started)."""
    by_actor: dict[int, list[TrialRecord]] = {}
    for record in records:
        by_actor.setdefault(record.pid, []).append(record)
    later = [r for trials in by_actor.values() for r in sorted(trials, key=lambda t: t.start)[1:]]
    return len(later), max((r.metric_max("gpu_allocated_at_start_mb") for r in later), default=0.0)


def released(leftover_mb: float, peak_mb: float) -> bool:
    """What a new trial finds allocated is at most a small fixed part (library workspaces), not a model."""
    return leftover_mb <= max(64.0, 0.05 * peak_mb)


def summary_line(figures: dict[str, object], failures: list[str]) -> str:
    parts = [f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}" for key, value in figures.items()]
    parts.append(f"failed={','.join(failures) if failures else 'none'}")
    return " ".join(parts)


def sweep_spec(data: Path, workdir: Path, epochs: int) -> dict:
    return {
        "name": "gpucheck",
        "data": {"root": str(data), "image_size": 32, "workers": 2},
        "budget": {"epochs": epochs, "num_samples": 4, "max_concurrent": 2},
        "resources": {"cpu": 1, "gpu": 0.5},
        "scheduler": {"type": "fifo"},
        "search": {"sampler": "random", "space": {"lr": {"loguniform": [0.01, 0.1]}}},
        "fixed": {"backbone": "resnet18", "small_input": True, "batch_size": 128},
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "gpucheck"},
        "storage_path": str(workdir / "ray_results"),
    }


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hpo_cls.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        print(f"hpo-cls {args[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}", file=sys.stderr)
    return result


def check_sweep(workdir: Path, figures: dict, failures: list[str], epochs: int) -> None:
    (workdir / "spec.yaml").write_text(yaml.safe_dump(sweep_spec(EMBEDDED, workdir, epochs)))
    start = time.perf_counter()
    result = run_cli("sweep", "spec.yaml", "--name", "gpucheck", cwd=workdir)
    figures["sweep_s"] = round(time.perf_counter() - start, 1)
    records = read_trials(workdir / "ray_results" / "gpucheck")
    complete = [r for r in records if len(r.rows) == epochs]
    figures["trials_completed"] = f"{len(complete)}/4"
    if result.returncode != 0 or len(complete) != 4:
        failures.append("sweep")
        return
    figures["concurrent_pairs"] = concurrent_pairs(records)
    if figures["concurrent_pairs"] < 1:
        failures.append("gpu_sharing")
    peaks = [r.metric_max("gpu_peak_mb") for r in records]
    figures["peak_gpu_mb_per_trial"] = round(max(peaks))
    if min(peaks) <= 0:
        failures.append("trials_not_on_gpu")
    reused, leftover = memory_after_reuse(records)
    figures["reused_actor_trials"], figures["leftover_gpu_mb"] = reused, round(leftover, 1)
    if reused and not released(leftover, max(peaks)):
        failures.append("memory_released")


def check_promote(workdir: Path, figures: dict, failures: list[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    promote = run_cli("promote", "--top", "2", "--epochs", "1", "--sweep", "gpucheck", "--experiment", "gpucheck",
                      "--tracking-uri", uri, "--set", "resources.gpu=0.5", "--out", "promote.csv", cwd=workdir)
    if promote.returncode != 0:
        failures.append("promote")
        return
    from hpo_cls.train.checkpoint import load_checkpoint

    histories = [load_checkpoint(p).get("history") or [] for p in (workdir / "promote_runs").glob("*/*/checkpoint.pt")]
    if not histories or any(not h or h[-1].get("gpu_peak_mb", 0) <= 0 for h in histories):
        failures.append("promote_not_on_gpu")
    from hpo_cls.promote.predict import predict_folder

    torch.cuda.reset_peak_memory_stats()
    outcome = predict_folder("models:/gpucheck-ensemble@champion", EMBEDDED / "test", workdir / "predict.csv",
                             tracking_uri=uri)
    figures["predict_images_per_s"] = round(outcome.images_per_s)
    if outcome.num_images != len(list((EMBEDDED / "test").glob("*.jpg"))) or torch.cuda.max_memory_allocated() <= 0:
        failures.append("predict_on_gpu")


def bench_function(script: str, name: str):
    """A function of a sibling bench script (run as a module namespace, its main() not called)."""
    return runpy.run_path(str(REPO / "bench" / script))[name]


def training_images_per_s(device: torch.device, backbone: str = "resnet50", image_size: int = 224,
                          batch: int = 128, steps: int = 30, rounds: int = 2,
                          compile_model: bool = False) -> tuple[float, float]:
    """(engine, plain loop) training images/s on the same fixed batches, rounds alternating; bf16 autocast
    and channels_last on CUDA for both, the engine's model compiled with ``compile_model``."""
    from hpo_cls.models.classifier import build_model
    from hpo_cls.spec import TrialConfig
    from hpo_cls.train.engine import resolve_precision, train_one_epoch, use_channels_last
    from hpo_cls.train.optim import build_optimizer

    plain_epoch = bench_function("throughput.py", "plain_epoch")
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    cfg = TrialConfig(backbone=backbone, batch_size=batch, lr=0.05)
    images, targets = torch.randn(batch, 3, image_size, image_size), torch.randint(0, 1000, (batch,))
    if cuda:
        images, targets = images.pin_memory(), targets.pin_memory()
    channels_last, bf16 = use_channels_last(device.type, True), cuda and torch.cuda.is_bf16_supported()
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(cfg, 1000).to(device)
        models.append(model.to(memory_format=torch.channels_last) if channels_last else model)
    engine_model = torch.compile(models[0]) if compile_model else models[0]
    engine_opt, plain_opt = build_optimizer(models[0], cfg), torch.optim.SGD(models[1].parameters(), lr=0.05)
    precision = resolve_precision(device.type, True, bf16)

    def engine(n: int) -> float:
        metrics = train_one_epoch(engine_model, [(images, targets)] * n, engine_opt, torch.nn.CrossEntropyLoss(),
                                  device, precision=precision, channels_last=channels_last)
        return metrics["images_per_s"]

    def plain(n: int) -> float:
        return plain_epoch(models[1], [(images, targets)] * n, plain_opt, device, bf16, channels_last)

    engine(3), plain(3)  # warm-up: cuDNN's algorithm search, the compile
    rates = [(engine(steps), plain(steps)) for _ in range(rounds)]
    return max(r[0] for r in rates), max(r[1] for r in rates)


def check_throughput(figures: dict, failures: list[str], compile_model: bool) -> None:
    device = torch.device("cuda")
    engine, plain = training_images_per_s(device)
    figures["resnet50_images_per_s"], figures["engine_vs_plain"] = round(engine), engine / plain
    if engine / plain < 0.97:
        failures.append("engine_vs_plain")
    if compile_model:
        compiled, plain = training_images_per_s(device, compile_model=True)
        figures["compiled_images_per_s"], figures["compiled_vs_plain"] = round(compiled), compiled / plain
    figures["peak_gpu_mb_resnet50"] = round(torch.cuda.max_memory_allocated() / 2**20)


def loader_images_per_s(data, device: torch.device, device_augment: bool, batches: int = 20) -> float:
    """Train-loader images/s into ``device`` (augmented there with ``device_augment``), no model."""
    from hpo_cls.data.loaders import build_loaders
    from hpo_cls.spec import TrialConfig

    loaders = build_loaders(data, TrialConfig(batch_size=128), device_is_cuda=device.type == "cuda",
                            device_augment=device_augment)
    iterator, seen = iter(loaders.train), 0
    next(iterator)
    start = time.perf_counter()
    for _, (images, _) in zip(range(batches), iterator):
        if loaders.batch_transform is not None:
            images = loaders.batch_transform(images, device)
        else:
            images = images.to(device, non_blocking=True)
        seen += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def check_input_pipeline(workdir: Path, figures: dict, failures: list[str]) -> None:
    from hpo_cls.data.loaders import build_loaders
    from hpo_cls.spec import DataConfig, TrialConfig

    root = bench_function("data_cache.py", "make_dataset")(workdir / "photos", 1500)
    data = DataConfig(root=root, image_size=224, workers=min(4, len(os.sched_getaffinity(0))),
                      cache_dir=workdir / "cache")
    build_loaders(data, TrialConfig())  # builds the node's train and val caches
    device = torch.device("cuda")
    on_gpu, on_cpu = loader_images_per_s(data, device, True), loader_images_per_s(data, device, False)
    figures["loader_images_per_s_gpu_augment"], figures["gpu_augment_vs_cpu"] = round(on_gpu), on_gpu / on_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per sweep trial")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(NO_CUDA.format(version=torch.__version__))
        return 0
    figures: dict[str, object] = {}
    failures: list[str] = []
    properties = torch.cuda.get_device_properties(0)
    print(f"CUDA: {torch.cuda.device_count()} device(s); 0: {properties.name}, "
          f"{properties.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}", flush=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private Ray on this machine for the sweep
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("sweep", lambda: check_sweep(Path(tmp), figures, failures, args.epochs)),
                            ("throughput", lambda: check_throughput(figures, failures, not args.no_compile)),
                            ("input_pipeline", lambda: check_input_pipeline(Path(tmp), figures, failures)),
                            ("promote", lambda: check_promote(Path(tmp), figures, failures))):
            start = time.perf_counter()
            try:
                check()
            except Exception as exc:  # one broken check must not hide the others' results
                print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failures.append(name)
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(summary_line(figures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
