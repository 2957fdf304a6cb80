"""Final retrains of the selected runs: one member per (run, seed), each a Ray task.

Members are retrained from scratch; each checkpoints every epoch into the work folder and continues
from there when promote is run again with the same ``--workdir``. :func:`train_member` itself is plain
torch; only :func:`retrain_members` needs Ray.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hpo_cls.console import say
from hpo_cls.errors import PromoteError
from hpo_cls.promote.select import Candidate
from hpo_cls.spec import (
    DataConfig,
    TrialConfig,
    flatten_trial_config,
    trial_config_from_dict,
)
from hpo_cls.sweep.cluster import connect_ray, quiet_stop_in_finalizers, use_assigned_cpus
from hpo_cls.train.checkpoint import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    load_checkpoint,
    model_bundle,
    save_checkpoint,
)

__all__ = ["MemberPlan", "MemberResult", "plan_members", "train_member", "member_task", "retrain_members"]


@dataclass(frozen=True)
class MemberPlan:
    """One member to retrain: a selected run's config with one seed."""

    key: str  # "<trial id>-seed<seed>": the member's folder and MLflow identity
    source: Candidate
    config: TrialConfig


@dataclass
class MemberResult:
    key: str
    bundle_path: str
    history: list[dict]
    resumed_from_epoch: int
    seconds: float


def plan_members(selected: Sequence[Candidate], seeds: int,
                 overrides: Mapping[str, Any] | None = None) -> list[MemberPlan]:
    """``seeds`` members per selected run (seed, seed + 1, ...), with ``fixed.*`` overrides applied."""
    if seeds < 1:
        raise PromoteError(f"{{seeds}} must be >= 1, got {seeds}")
    plans = []
    for c in selected:
        base = trial_config_from_dict(overrides or {}, base=c.config)
        for offset in range(seeds):
            cfg = dataclasses.replace(base, seed=base.seed + offset)
            key = f"{c.trial_id}-seed{cfg.seed}"
            if any(p.key == key for p in plans):  # the same trial id in two sweeps
                key = f"{c.sweep_id or c.run_id[:8]}-{key}"
            plans.append(MemberPlan(key, c, cfg))
    return plans


def _member_identity(cfg: TrialConfig, epochs: int, image_size: int, train_on_val: bool) -> dict:
    return {"config": flatten_trial_config(cfg), "epochs": epochs, "image_size": image_size,
            "train_on_val": train_on_val}


def train_member(data_cfg: DataConfig, cfg: TrialConfig, epochs: int, member_dir: str | Path, *,
                 train_on_val: bool = False, gpu_share: float = 0.0,
                 report: Callable[[dict], None] = lambda metrics: None, key: str = "") -> MemberResult:
    """Train one member from scratch for ``epochs`` (checkpoint each epoch in ``member_dir``), or continue
    a checkpoint there made with the same settings; write its model bundle. ``report`` gets every
    epoch's metrics, including those of epochs restored from the checkpoint."""
    from hpo_cls.data.loaders import build_loaders
    from hpo_cls.train.engine import resolve_device
    from hpo_cls.train.run import TrainingRun

    start = time.perf_counter()
    member_dir = Path(member_dir)
    loaders = build_loaders(data_cfg, cfg, device_is_cuda=resolve_device(gpu_share).type == "cuda", seed=cfg.seed,
                            train_on_val=train_on_val)
    run = TrainingRun(data_cfg, cfg, epochs, gpu_share=gpu_share, loaders=loaders)
    identity = _member_identity(cfg, epochs, data_cfg.image_size, train_on_val)
    history: list[dict] = []
    checkpoint = member_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        if state.get("promote") == identity and state["class_to_idx"] == run.class_to_idx:
            run.load_state_dict(state)
            history = list(state.get("history") or [])
        else:
            say(f"{checkpoint}: made with other settings; retraining from scratch")
    resumed_from = run.epoch
    for metrics in history:
        report(metrics)
    while run.epoch < epochs:
        metrics = run.run_epoch()
        history.append(metrics)
        save_checkpoint({**run.state_dict(), "promote": identity, "history": history}, checkpoint)
        report(metrics)
    bundle = save_checkpoint(model_bundle(run.state_dict()), member_dir / MODEL_FILE)
    return MemberResult(key, str(bundle), history, resumed_from, time.perf_counter() - start)


def _train_member_task(plan_key, data_cfg, cfg, epochs, member_dir, train_on_val, gpu_share, queue):
    quiet_stop_in_finalizers()
    use_assigned_cpus()
    return train_member(data_cfg, cfg, epochs, member_dir, train_on_val=train_on_val, gpu_share=gpu_share,
                        report=lambda metrics: queue.put((plan_key, metrics)), key=plan_key)


def member_task(function: Callable, cpus: float, gpus: float):
    """``function`` as a Ray task with ``cpus`` and ``gpus`` per call. With a GPU (share) each call gets a fresh
    worker process (``max_calls=1``): a reused one would keep the last member's memory in torch's cache, out
    of reach of the other members sharing the card. Ray does this for tasks declared with GPUs in
    ``ray.remote``, not for GPUs given later with ``.options``."""
    import ray

    return ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1 if gpus > 0 else 0)(function)


def retrain_members(plans: Sequence[MemberPlan], data_cfg: DataConfig, epochs: int, workdir: Path, *,
                    train_on_val: bool = False, cpus: float = 1.0, gpus: float = 0.0, address: str | None = None,
                    on_epoch: Callable[[str, dict], None] = lambda key, metrics: None) -> list[MemberResult]:
    """Retrain every member as a Ray task (in parallel as resources allow); ``on_epoch(key, metrics)``
    runs in the caller's process as epochs finish. Results come back in the order of ``plans``."""
    import ray
    from ray.exceptions import RayError, RayTaskError
    from ray.util.queue import Queue

    started = connect_ray(address, object_store_bytes=256 * 1024**2)
    try:
        queue = Queue(actor_options={"num_cpus": 0})
        task = member_task(_train_member_task, cpus, gpus)
        refs = {task.remote(p.key, data_cfg, p.config, epochs, str(workdir / p.key), train_on_val, gpus, queue): p.key
                for p in plans}
        results: dict[str, MemberResult] = {}
        pending = list(refs)

        def drain():
            while not queue.empty():
                for key, metrics in queue.get_nowait_batch(queue.qsize()):
                    on_epoch(key, metrics)

        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
                for ref in done:
                    try:
                        results[refs[ref]] = ray.get(ref)
                    except RayTaskError as exc:
                        for other in pending:
                            ray.cancel(other, force=True)
                        cause = exc.cause if exc.cause is not None else exc
                        raise PromoteError(f"retraining member {refs[ref]} failed: {type(cause).__name__}: "
                                           f"{_last_line(cause)}") from None
                drain()
            drain()
        except RayError as exc:  # a worker, actor or node died: the checkpoints written so far stay usable
            raise PromoteError(f"Ray failed while retraining ({type(exc).__name__}: {_last_line(exc)}); run the "
                               f"same command again to continue from the checkpoints in {workdir}") from None
        return [results[p.key] for p in plans]
    finally:
        if started:
            ray.shutdown()


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
