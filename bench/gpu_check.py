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
   runs on the GPU (bf16 autocast, channels_last); the same ensemble's argmax on the GPU and on the CPU for
   the same 1,600 images must agree for >= 99.5% of them.
6. With more than one GPU: the same 4-trial sweep at ``cpu: 4, gpu: 1``, trials spread across the cards.
7. ``sweeps/cbam_placement.yaml`` as written but for a reduced budget (4 trials, 2 epochs, ASHA's grace period
   1, ``pretrained: false``) on 1,000 generated photos at 224 px: the headline spec runs on a GPU.

While each sweep runs, ``nvidia-smi`` samples every card's utilisation (the share of time a kernel ran) every
200 ms: the summary gives the card's busy fraction during the trials (``busy_*``; target >= 0.85 for the
224-px ResNet-50 trials of the cbam run) and, where it is lower, where the card waited (``waits_*``): input
(the train loop waiting for the loader), between_epochs (validation, checkpoint and Tune's report), tune
(no trial running: scheduling, worker start) or python (the train loop with data at hand but the card idle).

Prints one summary line of figures and ratios and exits 1 if any check failed (a busy fraction under its
target is a finding the line reports, not a failure). Without a CUDA device it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data" / "cifar10-mini"
BUSY_TARGET = 0.85
AGREEMENT_TARGET = 0.995
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


UTILIZATION_QUERY = ["nvidia-smi", "--query-gpu=timestamp,index,utilization.gpu", "--format=csv,noheader,nounits",
                     "-lms", "200"]


@dataclass(frozen=True)
class Sample:
    """One nvidia-smi reading of one card."""

    time: float  # unix seconds
    gpu: int
    busy: float  # 0..1: the share of the last sample period in which a kernel ran


def parse_utilization(text: str) -> list[Sample]:
    """nvidia-smi's CSV lines (``2026/12/04 10:11:12.345, 0, 87``); lines it could not fill are skipped."""
    samples = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        try:
            when = datetime.strptime(fields[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()  # local time, like time.time()
            samples.append(Sample(when, int(fields[1]), float(fields[2]) / 100))
        except (ValueError, IndexError):
            continue
    return samples


@contextlib.contextmanager
def sampling_utilization(log: Path) -> Iterator[Path]:
    """nvidia-smi samples every card's utilisation into ``log`` every 200 ms while the block runs."""
    if shutil.which("nvidia-smi") is None:
        log.write_text("")
        yield log
        return
    with open(log, "w") as out:
        sampler = subprocess.Popen(UTILIZATION_QUERY, stdout=out, stderr=subprocess.DEVNULL)
        try:
            yield log
        finally:
            sampler.terminate()
            sampler.wait(timeout=10)


def trial_spans(records: list[TrialRecord]) -> list[tuple[float, float]]:
    return [(r.start, r.end) for r in records]


def busy_fraction(samples: list[Sample], spans: list[tuple[float, float]], gpus: set[int] | None = None) -> float | None:
    """The mean utilisation of the cards ``gpus`` (None: every card) over the samples taken inside ``spans``;
    None without such samples."""
    inside = [s.busy for s in samples if (gpus is None or s.gpu in gpus) and any(a <= s.time <= b for a, b in spans)]
    return sum(inside) / len(inside) if inside else None


def cards_used(samples: list[Sample], spans: list[tuple[float, float]], threshold: float = 0.2) -> set[int]:
    """The cards that were busy for at least ``threshold`` of some sample inside ``spans``."""
    return {s.gpu for s in samples if s.busy >= threshold and any(a <= s.time <= b for a, b in spans)}


def no_trial_share(spans: list[tuple[float, float]]) -> float:
    """The share of the time from the first trial's start to the last one's end in which no trial ran."""
    spans = sorted(spans)
    covered, reach = 0.0, spans[0][0]
    for start, end in spans:
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    total = reach - spans[0][0]
    return 1 - covered / total if total > 0 else 0.0


def wait_shares(records: list[TrialRecord]) -> dict[str, float]:
    """Where the trials' time went other than the train loop's steps, as shares of their wall time:
    ``input`` (the loop waiting for the loader), ``setup`` (a trial's first report less its first train
    loop: model, loaders, cuDNN's search), ``checkpointing`` (validation, checkpoint and Tune's report after
    every later epoch) and ``tune`` (of the sweep's span: no trial running, Tune scheduling or starting one)."""
    wall = sum(r.end - r.start for r in records)
    if not records or wall <= 0:
        return {}
    outside = [(i, row.get("time_this_iter_s", 0.0) - row.get("epoch_time_s", 0.0))
               for r in records for i, row in enumerate(r.rows)]
    return {"input": sum(row.get("data_wait_s", 0.0) for r in records for row in r.rows) / wall,
            "setup": sum(max(0.0, t) for i, t in outside if i == 0) / wall,
            "checkpointing": sum(max(0.0, t) for i, t in outside if i > 0) / wall,
            "tune": no_trial_share(trial_spans(records))}


def card_waits_on(busy: float | None, shares: dict[str, float], target: float = BUSY_TARGET) -> str:
    """``none`` at or above the target; else the largest measured wait, or ``python`` when each is under 5%
    (the train loop had its data yet the card sat idle: steps too small, or launched too slowly)."""
    if busy is None:
        return "unknown"
    if busy >= target:
        return "none"
    name, share = max(shares.items(), key=lambda item: item[1], default=("python", 0.0))
    return name if share >= 0.05 else "python"


def report_busy(records: list[TrialRecord], samples: list[Sample], label: str, figures: dict) -> None:
    """``busy_<label>`` (the cards the trials used, during the trials), the wait shares and the verdict."""
    spans = trial_spans(records)
    busy = busy_fraction(samples, spans, cards_used(samples, spans) or None)
    shares = wait_shares(records)
    figures[f"busy_{label}"] = busy if busy is not None else "n/a"
    figures[f"waits_{label}"] = ",".join(f"{k}:{v:.2f}" for k, v in shares.items()) or "n/a"
    figures[f"card_waits_on_{label}"] = card_waits_on(busy, shares)


def argmax_agreement(first: torch.Tensor, second: torch.Tensor) -> float:
    """The share of rows (images) whose most probable class is the same in both ``[N, C]`` tensors."""
    if first.shape != second.shape or first.shape[0] == 0:
        raise ValueError(f"cannot compare predictions of shapes {tuple(first.shape)} and {tuple(second.shape)}")
    return (first.argmax(dim=1) == second.argmax(dim=1)).float().mean().item()


def summary_line(figures: dict[str, object], failures: list[str]) -> str:
    parts = [f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}" for key, value in figures.items()]
    parts.append(f"failed={','.join(failures) if failures else 'none'}")
    return " ".join(parts)


def sweep_spec(data: Path, workdir: Path, epochs: int, cpu: float = 1, gpu: float = 0.5) -> dict:
    return {
        "name": "gpucheck",
        "data": {"root": str(data), "image_size": 32, "workers": 2},
        "budget": {"epochs": epochs, "num_samples": 4, "max_concurrent": 2},
        "resources": {"cpu": cpu, "gpu": gpu},
        "scheduler": {"type": "fifo"},
        "search": {"sampler": "random", "space": {"lr": {"loguniform": [0.01, 0.1]}}},
        "fixed": {"backbone": "resnet18", "small_input": True, "batch_size": 128},
        "tracking": {"uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "gpucheck"},
        "storage_path": str(workdir / "ray_results"),
    }


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hpo_cls.cli", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    with open(Path(cwd) / "cli.log", "a") as log:  # every command's whole output, for --keep
        log.write(f"$ hpo-cls {' '.join(args)}\n{result.stdout}{result.stderr}\nexit {result.returncode}\n")
    if result.returncode != 0:
        print(f"hpo-cls {args[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}", file=sys.stderr)
    return result


def check_sweep(workdir: Path, figures: dict, failures: list[str], epochs: int, cpu: float = 1, gpu: float = 0.5,
                name: str = "gpucheck") -> None:
    """The 4-trial sweep at ``cpu``/``gpu`` per trial; at a fractional ``gpu`` two trials share a card, at
    ``gpu: 1`` (several cards) trials spread across them."""
    suffix = "" if name == "gpucheck" else name.removeprefix("gpucheck")
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(sweep_spec(EMBEDDED, workdir, epochs, cpu, gpu)))
    start = time.perf_counter()
    with sampling_utilization(workdir / f"{name}-utilization.csv") as log:
        result = run_cli("sweep", f"{name}.yaml", "--name", name, "--no-estimate", "--quiet", cwd=workdir)
    figures[f"sweep{suffix}_s"] = round(time.perf_counter() - start, 1)
    records = read_trials(workdir / "ray_results" / name)
    complete = [r for r in records if len(r.rows) == epochs]
    figures[f"trials_completed{suffix}"] = f"{len(complete)}/4"
    if result.returncode != 0 or len(complete) != 4:
        failures.append(f"sweep{suffix}")
        return
    samples = parse_utilization(log.read_text())
    report_busy(records, samples, f"sweep{suffix}", figures)
    figures[f"concurrent_pairs{suffix}"] = concurrent_pairs(records)
    if figures[f"concurrent_pairs{suffix}"] < 1:
        failures.append(f"gpu_sharing{suffix}" if gpu < 1 else f"trials_in_parallel{suffix}")
    peaks = [r.metric_max("gpu_peak_mb") for r in records]
    figures[f"peak_gpu_mb_per_trial{suffix}"] = round(max(peaks))
    if min(peaks) <= 0:
        failures.append(f"trials_not_on_gpu{suffix}")
    reused, leftover = memory_after_reuse(records)
    figures[f"reused_actor_trials{suffix}"], figures[f"leftover_gpu_mb{suffix}"] = reused, round(leftover, 1)
    if reused and not released(leftover, max(peaks)):
        failures.append(f"memory_released{suffix}")
    if gpu >= 1:
        figures[f"cards_used{suffix}"] = len(cards_used(samples, trial_spans(records)))
        if figures[f"cards_used{suffix}"] < 2:
            failures.append(f"trials_across_cards{suffix}")


def check_promote(workdir: Path, figures: dict, failures: list[str]) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    promote = run_cli("promote", "--top", "2", "--epochs", "4", "--sweep", "gpucheck", "--experiment", "gpucheck",
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
    members = sorted((workdir / "promote_runs").glob("*/*/model.pt"))
    agreement = gpu_cpu_agreement(members, sorted(EMBEDDED.rglob("*.jpg")))
    figures["gpu_cpu_agreement"] = agreement
    if agreement < AGREEMENT_TARGET:
        failures.append("gpu_cpu_agreement")


def gpu_cpu_agreement(members: list[Path], images: list[Path]) -> float:
    """The ensemble of ``members`` predicts ``images`` on the GPU (bf16 autocast, channels_last, as predict
    does there) and on the CPU (fp32): the share of images with the same predicted class."""
    from hpo_cls.promote.ensemble import load_ensemble
    from hpo_cls.promote.predict import predict_probabilities

    probabilities = []
    for device in ("cuda", "cpu"):
        ensemble = load_ensemble(members, device=device)
        probabilities.append(predict_probabilities(ensemble.model, images, ensemble.image_size,
                                                   cfg=ensemble.eval_config))
    return argmax_agreement(*probabilities)


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


def cbam_overrides(data_root: Path, workdir: Path) -> list[str]:
    """``--set`` values that run sweeps/cbam_placement.yaml as written but for a short budget: 4 trials of 2
    epochs (ASHA may stop after 1), no pretrained weights, the generated photos, this run's folders."""
    return ["budget.epochs=2", "budget.num_samples=4", "scheduler.grace_period=1", "fixed.pretrained=false",
            f"data.root={data_root}", f"storage_path={workdir / 'ray_results'}",
            f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}"]


def check_cbam_placement(workdir: Path, figures: dict, failures: list[str]) -> None:
    root = bench_function("data_cache.py", "make_dataset")(workdir / "photos1000", 1000)
    overrides = [arg for value in cbam_overrides(root, workdir) for arg in ("--set", value)]
    start = time.perf_counter()
    with sampling_utilization(workdir / "cbam-utilization.csv") as log:
        result = run_cli("sweep", str(REPO / "sweeps" / "cbam_placement.yaml"), *overrides, "--name", "cbam",
                         "--no-estimate", "--quiet", cwd=workdir)
    figures["cbam_s"] = round(time.perf_counter() - start, 1)
    records = read_trials(workdir / "ray_results" / "cbam")
    figures["cbam_trials"] = f"{len(records)}/4"
    if result.returncode != 0 or len(records) != 4:
        failures.append("cbam_placement")
    if records:
        report_busy(records, parse_utilization(log.read_text()), "cbam", figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per sweep trial")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, nvidia-smi samples, "
                        "Tune's results) instead of a temporary folder")
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
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checks = [("sweep", lambda: check_sweep(work, figures, failures, args.epochs)),
                  ("throughput", lambda: check_throughput(figures, failures, not args.no_compile)),
                  ("input_pipeline", lambda: check_input_pipeline(work, figures, failures)),
                  ("promote", lambda: check_promote(work, figures, failures)),
                  ("cbam_placement", lambda: check_cbam_placement(work, figures, failures))]
        if torch.cuda.device_count() > 1:
            checks.insert(1, ("sweep_gpu1", lambda: check_sweep(work, figures, failures, args.epochs, cpu=4, gpu=1,
                                                                name="gpucheck_gpu1")))
        for name, check in checks:
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
