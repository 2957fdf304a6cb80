"""What a sweep will cost, before it starts: per backbone, measured images/s, peak GPU memory (checked against
the share of the card a trial gets) and epoch time; for the sweep, the epochs ASHA is expected to train,
the wall time at ``max_concurrent`` and the GPU-hours. After the sweep, the estimate against what it took.

Throughput comes from a few real training steps on this machine's device (:mod:`hpo_cls.train.profile`),
kept per machine so the next sweep of the same configuration starts seconds sooner, or from
``--device-profile FILE`` measured earlier (on a GPU node, say). How many epochs ASHA trains depends on
the order scores arrive in; it is simulated with Ray's own rung rule over random trial qualities.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import math
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

from hpo_cls.cache_dir import default_cache_root
from hpo_cls.errors import SpecError
from hpo_cls.package_versions import torch_build
from hpo_cls.spec import SweepSpec

__all__ = ["SweepEstimate", "asha_rungs", "simulate_schedule", "memory_problem", "measure_profiles", "slots",
           "estimate_sweep", "estimate_for", "announce_estimate", "format_estimate", "format_actual"]

# Fixed costs besides the epochs, measured on the development VM (bench/README.md): Tune's start and end
# inside the run, and per trial its actor's start or reuse, data decoding and the cost measurement.
SWEEP_OVERHEAD_S = 5.0
TRIAL_OVERHEAD_S = 3.0
_PROFILE_VERSION = 1


@dataclass(frozen=True)
class SweepEstimate:
    profiles: dict  # backbone -> StepProfile
    epoch_s: dict[str, float]  # backbone -> seconds per epoch
    trial_epochs: float  # expected epochs trained over the sweep
    wall_s: float
    gpu_hours: float
    cpu_hours: float
    slots: int
    problems: list[str]


def asha_rungs(epochs: int, grace_period: int, reduction_factor: float) -> list[float]:
    """The epochs at which Ray's ASHA compares trials (its ``_Bracket`` milestones), smallest first."""
    count = int(math.log(epochs / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


def _percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile, as Ray's cutoff uses."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def simulate_schedule(num_samples: int, epochs: int, slots: int, rungs: list[float], reduction_factor: float,
                      seed: int = 0) -> tuple[float, float]:
    """``(trial-epochs, wall time in epochs)`` expected when ``num_samples`` trials of equal epoch time run
    ``slots`` at a time and ASHA stops, at each rung, a trial scoring under the (1 - 1/rf) quantile of
    those recorded there before it (Ray's rule; no rungs = FIFO). Averaged over random orders of quality."""
    rng = random.Random(seed)
    checks = {math.ceil(r) for r in rungs}  # Ray checks a rung at the first epoch that reaches it
    runs = max(5, min(200, 200_000 // (num_samples * epochs)))
    total_epochs = total_wall = 0.0
    for _ in range(runs):
        quality = [rng.random() for _ in range(num_samples)]
        recorded: dict[int, list[float]] = {rung: [] for rung in checks}
        running = [(1.0, i, 1) for i in range(min(slots, num_samples))]  # (time the epoch ends, trial, epoch)
        started, wall = len(running), 0.0
        while running:
            now, trial, epoch = heapq.heappop(running)
            total_epochs, wall = total_epochs + 1, now
            stop = False
            if epoch in recorded:
                scores = recorded[epoch]
                stop = bool(scores) and quality[trial] < _percentile(scores, (1 - 1 / reduction_factor) * 100)
                scores.append(quality[trial])
            if epoch < epochs and not stop:
                heapq.heappush(running, (now + 1, trial, epoch + 1))
            elif started < num_samples:
                heapq.heappush(running, (now + 1, started, 1))
                started += 1
        total_wall += wall
    return total_epochs / runs, total_wall / runs


def memory_problem(backbone: str, peak: int | None, total: int | None, share: float) -> str | None:
    """A problem line when a trial's peak memory does not fit the share of the card it is given."""
    if peak is None or total is None or share <= 0:
        return None
    available = min(share, 1.0) * total
    if peak <= available:
        return None
    return (f"resources.gpu: {share:g} of a {total / 2**30:.1f} GiB GPU is {available / 2**30:.1f} GiB, but {backbone} "
            f"peaked at {peak / 2**30:.1f} GiB; raise resources.gpu or lower fixed.batch_size")


def _profile_key(spec: SweepSpec, backbone: str) -> str:
    device = "cuda" if spec.resources.gpu > 0 else f"cpu x{max(1, int(spec.resources.cpu))}"
    return f"{backbone} {spec.data.image_size}px batch {spec.fixed.batch_size} amp {spec.fixed.amp} {device}"


def _measured_key(spec: SweepSpec, cfg, num_classes: int) -> str:
    """The key of a profile in this machine's cache: everything the measurement depends on (the whole trial
    configuration, CBAM, head and dropout included, not only what ``_profile_key`` names)."""
    configuration = json.dumps([dataclasses.asdict(cfg), num_classes], sort_keys=True, default=str)
    return f"{_profile_key(spec, cfg.backbone)} {hashlib.sha256(configuration.encode()).hexdigest()[:16]}"


def machine_profile_file() -> Path:
    """This machine's measured profiles, in the hpo-cls cache folder: one file per machine and software (a
    shared home seen from several hosts, or a torch upgrade, measures anew)."""
    import hpo_cls

    identity = "|".join([platform.node(), platform.machine(), _cpu_model(), str(os.cpu_count()), torch_build(),
                         os.environ.get("CUDA_VISIBLE_DEVICES", ""), hpo_cls.__version__])
    return default_cache_root() / "device-profiles" / f"{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def measure_profiles(spec: SweepSpec, backbones: list[str], num_classes: int,
                     profile_file: Path | None = None) -> tuple[dict, list[str]]:
    """``({backbone: StepProfile}, [backbones that could not be measured])``: read from ``profile_file``
    when it holds them, else measured here (and added to the file). Without ``profile_file``, measurements
    of the same configuration on this machine are reused (:func:`machine_profile_file`). A spec that asks for
    GPUs cannot be measured on a machine without one."""
    from hpo_cls.train.step_profile import StepProfile

    cache = profile_file is None
    path = machine_profile_file() if cache else profile_file
    stored = (_read_cached_profiles(path) if cache else _read_profiles(path)) if path.is_file() else {}
    fields = {field.name for field in dataclasses.fields(StepProfile)}
    profiles, missing, measured = {}, [], False
    for backbone in backbones:
        cfg = dataclasses.replace(spec.fixed, backbone=backbone, pretrained=False, compile=False)
        key = _measured_key(spec, cfg, num_classes) if cache else _profile_key(spec, backbone)
        if key in stored and (not cache or isinstance(stored[key], dict) and set(stored[key]) == fields):
            profiles[backbone] = StepProfile(**stored[key])
            continue
        import torch  # measured here: only for a configuration this machine has not measured

        from hpo_cls.train.profile import profile_training

        if spec.resources.gpu > 0 and not torch.cuda.is_available():
            missing.append(backbone)
        else:
            profiles[backbone] = profile_training(cfg, num_classes, spec.data.image_size, gpu_share=spec.resources.gpu,
                                                  threads=max(1, int(spec.resources.cpu)))
            stored[key], measured = profiles[backbone].to_dict(), True
    if measured:
        _write_profiles(path, stored, quiet=cache)
    return profiles, missing


def _write_profiles(path: Path, stored: dict, quiet: bool) -> None:
    """Replace ``path`` at once (sweeps measuring side by side never leave half a file); a cache that cannot
    be written costs the next sweep a measurement, nothing more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps({"version": _PROFILE_VERSION, "profiles": stored}, indent=1) + "\n")
        os.replace(partial, path)
    except OSError as exc:
        if not quiet:
            raise SpecError([f"{{device_profile}} {path}: cannot write it: {exc.strerror or exc}"]) from None


def _read_cached_profiles(path: Path) -> dict:
    """This machine's cache; one that cannot be read (another version's, damaged) is measured anew."""
    try:
        return _read_profiles(path)
    except SpecError:
        return {}


def _read_profiles(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if data.get("version") != _PROFILE_VERSION or not isinstance(data.get("profiles"), dict):
            raise ValueError("not a device profile written by hpo-cls")
        return data["profiles"]
    except (OSError, ValueError, AttributeError) as exc:
        raise SpecError([f"{{device_profile}} {path}: {exc}"]) from None


def slots(spec: SweepSpec, cpus: float | None = None, gpus: float | None = None) -> int:
    """Trials that run at once: ``max_concurrent``, bounded by the CPUs and GPUs there are (default: this
    machine's; a sweep passes its Ray cluster's) per trial."""
    if cpus is None:
        import torch

        cpus, gpus = len(os.sched_getaffinity(0)), torch.cuda.device_count() if torch.cuda.is_available() else 0
    capacity = cpus / spec.resources.cpu
    if spec.resources.gpu > 0 and gpus:
        capacity = min(capacity, gpus / spec.resources.gpu)
    return max(1, min(spec.budget.max_concurrent, spec.budget.num_samples, int(capacity)))


def estimate_for(spec: SweepSpec, preflight, profile_file: Path | None,
                 slots_: int) -> tuple[SweepEstimate | None, list[str]]:
    """The estimate for the backbones the pre-flight counted (every one a trial can use) and its lines;
    no estimate, and a line saying why, when they cannot be measured here. Problems name the spec file."""
    summary = preflight.summary
    profiles, missing = measure_profiles(spec, list(preflight.parameter_counts), len(summary.class_to_idx),
                                         profile_file)
    if missing:
        return None, [(f"estimate: no GPU on this machine to measure {', '.join(missing)} on; run `hpo-cls validate "
                       "SPEC --estimate --device-profile FILE` on a GPU node and pass --device-profile FILE")]
    estimate = estimate_sweep(spec, profiles, sum(summary.train_counts.values()), sum(summary.val_counts.values()),
                              slots_)
    return estimate, format_estimate(spec, estimate)


def estimate_sweep(spec: SweepSpec, profiles: dict, train_images: int, val_images: int, slots: int) -> SweepEstimate:
    """Epoch time per backbone, and the sweep's expected epochs, wall time and GPU/CPU-hours (the backbones
    equally likely, every other key at its fixed value)."""
    epoch_s = {b: train_images / p.train_images_per_s + val_images / p.eval_images_per_s for b, p in profiles.items()}
    mean_epoch_s = sum(epoch_s.values()) / len(epoch_s)
    budget, scheduler = spec.budget, spec.scheduler
    rungs = asha_rungs(budget.epochs, scheduler.grace_period, scheduler.reduction_factor) \
        if scheduler.type == "asha" else []
    trial_epochs, wall_epochs = simulate_schedule(budget.num_samples, budget.epochs, slots, rungs,
                                                  scheduler.reduction_factor)
    wall_s = SWEEP_OVERHEAD_S + wall_epochs * mean_epoch_s + math.ceil(budget.num_samples / slots) * TRIAL_OVERHEAD_S
    busy_hours = (trial_epochs * mean_epoch_s + budget.num_samples * TRIAL_OVERHEAD_S) / 3600
    problems = [f"{spec.source or '<spec>'}: {p}" for b, prof in profiles.items()
                if (p := memory_problem(b, prof.peak_memory_bytes, prof.device_memory_bytes, spec.resources.gpu))]
    return SweepEstimate(profiles, epoch_s, trial_epochs, wall_s, busy_hours * spec.resources.gpu,
                         busy_hours * spec.resources.cpu, slots, problems)


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_estimate(spec: SweepSpec, estimate: SweepEstimate) -> list[str]:
    """The lines ``validate --estimate`` and ``sweep`` print."""
    lines = []
    for backbone, p in estimate.profiles.items():
        memory = "" if p.peak_memory_bytes is None else \
            f", peak GPU memory {p.peak_memory_bytes / 2**30:.2f} of {p.device_memory_bytes / 2**30:.1f} GiB"
        lines.append(f"estimate {backbone:<18} {p.train_images_per_s:8.1f} images/s train, {p.eval_images_per_s:8.1f} "
                     f"eval on {p.device_name}{memory}; epoch {estimate.epoch_s[backbone]:.1f} s")
    scheduler = spec.scheduler
    schedule = "every trial to the end" if scheduler.type == "fifo" else \
        f"ASHA rungs at {', '.join(f'{r:g}' for r in asha_rungs(spec.budget.epochs, scheduler.grace_period, scheduler.reduction_factor))} " \
        f"epochs, 1/{scheduler.reduction_factor:g} continuing"
    lines.append(f"estimate sweep: {estimate.trial_epochs:.1f} trial-epochs ({schedule}), {estimate.slots} at a time: "
                 f"wall {_duration(estimate.wall_s)}, {estimate.gpu_hours:.2f} GPU-hours, {estimate.cpu_hours:.2f} CPU-hours")
    return lines


def format_actual(estimate_wall_s: float, estimate_epochs: float, wall_s: float, trial_epochs: int) -> str:
    return (f"cost: estimated {_duration(estimate_wall_s)} and {estimate_epochs:.1f} trial-epochs; took "
            f"{_duration(wall_s)} and {trial_epochs} ({wall_s / estimate_wall_s:.2f}x the estimated time)")


def announce_estimate(spec: SweepSpec, preflight, profile_file: Path | None) -> SweepEstimate | None:
    """The first lines of a sweep: the estimate at the connected Ray cluster's size; raises SpecError when a
    trial would not fit its share of a GPU."""
    import ray

    from hpo_cls.console import say

    resources = ray.cluster_resources()
    estimate, lines = estimate_for(spec, preflight, profile_file,
                                   slots(spec, resources.get("CPU", 1.0), resources.get("GPU", 0.0)))
    for line in lines:
        say(line)
    if estimate is not None and estimate.problems:
        raise SpecError(estimate.problems)
    return estimate
