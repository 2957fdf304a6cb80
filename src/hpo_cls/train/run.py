"""One trial's training, one epoch at a time: used by ``hpo-cls train``, the Tune trainable and promote.

Pure torch like the engine: it assembles model, data, optimizer and schedule from the configs and owns
the state a checkpoint must capture. Randomness is re-seeded from (seed, epoch) at the start of every
epoch, so a run resumed from a checkpoint continues exactly as it would have.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import nn

from hpo_cls.data.loaders import Loaders, build_loaders
from hpo_cls.models.classifier import build_model
from hpo_cls.spec import DataConfig, TrialConfig, flatten_trial_config
from hpo_cls.train.engine import (
    EvalResult,
    build_ema,
    evaluate,
    gpu_memory_mb,
    per_class_report,
    resolve_device,
    resolve_precision,
    train_one_epoch,
    use_channels_last,
)
from hpo_cls.train.optim import build_optimizer, build_scheduler, step_scheduler

__all__ = ["TrainingRun", "seed_everything", "INPUT_KEYS"]

# The data keys that change what the model sees (the rest of what it sees and how it learns is the trial config).
INPUT_KEYS = ("image_size", "balanced_sampling")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for torch
        pass


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**63


class TrainingRun:
    """Model, data and optimisation state of one trial, stepped with :meth:`run_epoch`."""

    def __init__(
        self,
        data_cfg: DataConfig,
        cfg: TrialConfig,
        epochs: int,
        *,
        gpu_share: float = 0.0,
        loaders: Loaders | None = None,
    ):
        self.data_cfg, self.cfg, self.epochs = data_cfg, cfg, epochs
        seed_everything(cfg.seed)
        self.device = resolve_device(gpu_share)
        self.precision = resolve_precision(
            self.device.type, cfg.amp, self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        self.channels_last = use_channels_last(self.device.type, cfg.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        # What earlier work in this process (a reused Tune actor's last trial) still holds on the GPU.
        self.gpu_allocated_at_start_mb = gpu_memory_mb(self.device)[0]
        self.loaders = loaders or build_loaders(
            data_cfg, cfg, device_is_cuda=self.device.type == "cuda", seed=cfg.seed
        )
        self.class_to_idx = self.loaders.class_to_idx
        self.num_classes = self.loaders.num_classes
        model = build_model(cfg, self.num_classes).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward_model = torch.compile(model) if cfg.compile else model
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, epochs)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.use_grad_scaler else None
        self.ema = build_ema(model, cfg.ema_decay)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()
        self.epoch = 0  # epochs completed
        self.best_val_acc = -math.inf
        self.best_epoch = 0
        self.last_eval: EvalResult | None = None
        self._costs: dict[str, float] | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated, checkpointed for prediction, and ensembled: EMA if enabled."""
        return self.ema.module if self.ema is not None else self.model

    def run_epoch(self) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation set, step the LR schedule; return the metrics."""
        seed = _epoch_seed(self.cfg.seed, self.epoch)
        torch.manual_seed(seed)
        random.seed(seed)
        generator = getattr(self.loaders.train, "generator", None)
        if generator is not None:
            generator.manual_seed(seed)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        metrics = train_one_epoch(
            self.forward_model,
            self.loaders.train,
            self.optimizer,
            self.criterion,
            self.device,
            precision=self.precision,
            scaler=self.scaler,
            channels_last=self.channels_last,
            grad_clip=self.cfg.grad_clip,
            ema=self.ema,
            batch_transform=self.loaders.batch_transform,
        )
        # The probabilities are the evaluation's own softmax, kept for the trial's predictions file.
        result = self.last_eval = self.evaluate(keep_probabilities=True)
        step_scheduler(self.scheduler, self.cfg, val_loss=result.loss, val_acc=result.accuracy)
        self.epoch += 1
        if result.accuracy > self.best_val_acc:
            self.best_val_acc, self.best_epoch = result.accuracy, self.epoch
        return {
            "epoch": self.epoch,
            **metrics,
            "val_loss": result.loss,
            "val_acc": result.accuracy,
            "lr": lr,
            "best_val_acc": self.best_val_acc,
            **self._gpu_metrics(),
        }

    def _gpu_metrics(self) -> dict[str, float]:
        """On CUDA: this epoch's peak of allocated memory, and what was allocated before this run began."""
        if self.device.type != "cuda":
            return {}
        return {"gpu_peak_mb": gpu_memory_mb(self.device)[1],
                "gpu_allocated_at_start_mb": self.gpu_allocated_at_start_mb}

    def evaluate(self, keep_probabilities: bool = False) -> EvalResult:
        return evaluate(
            self.eval_model,
            self.loaders.val,
            self.eval_criterion,
            self.device,
            self.num_classes,
            precision=self.precision,
            channels_last=self.channels_last,
            keep_probabilities=keep_probabilities,
        )

    def save_val_predictions(self, directory) -> None:
        """The last evaluation's validation probabilities, file names and labels (:mod:`.val_predictions`)."""
        from hpo_cls.train.val_predictions import save_val_predictions

        samples = self.loaders.val.dataset.samples
        names = [f"{path.parent.name}/{path.name}" for path, _ in samples]
        classes = sorted(self.class_to_idx, key=self.class_to_idx.get)
        save_val_predictions(directory, self.last_eval.probabilities.float().numpy(), names,
                             [label for _, label in samples], classes, self.epoch)

    def cost_metrics(self) -> dict[str, float]:
        """``params_m``, ``flops_g`` and inference latency at batch 1 (``latency_ms``) and of a batch of 64
        (``latency_b64_ms``) on this run's device, with its precision: measured the first time it is asked
        (a sweep's trial asks after its first epoch, so trials ASHA stops early have them too), and the
        latency once per network in a process (later trials of a reused worker take the same figure)."""
        if self._costs is None:
            from hpo_cls.models import cost
            from hpo_cls.models.names import architecture_key

            size = self.data_cfg.image_size
            measured_as = (architecture_key(self.cfg), self.cfg.compile, self.num_classes, size, str(self.device),
                           torch.get_num_threads(), self.channels_last, self.precision.autocast_dtype)
            latency = {batch: cost.latency_once(
                (*measured_as, batch),
                lambda batch=batch, runs=runs: cost.inference_latency_ms(
                    self.eval_model, size, batch, runs=runs, channels_last=self.channels_last,
                    autocast_dtype=self.precision.autocast_dtype))
                       for batch, runs in cost.LATENCY_RUNS.items()}
            self._costs = {"params_m": sum(p.numel() for p in self.model.parameters()) / 1e6,
                           "flops_g": cost.count_flops(self.cfg, self.num_classes, size),
                           "latency_ms": latency[1], "latency_b64_ms": latency[64]}
        return dict(self._costs)

    def class_report(self, result: EvalResult | None = None) -> list[dict]:
        result = result or self.evaluate()
        from hpo_cls.data.folders import class_names

        return per_class_report(result.confusion, class_names(self.data_cfg.root, self.class_to_idx))

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint bundle: resumes exactly, and carries config + class mapping for prediction."""
        return {
            "format": "hpo-cls/1",
            "model": self.eval_model.state_dict(),
            "train_model": self.model.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "config": flatten_trial_config(self.cfg),
            "data": {key: getattr(self.data_cfg, key) for key in INPUT_KEYS},
            "image_size": self.data_cfg.image_size,
            "class_to_idx": dict(self.class_to_idx),
        }

    def differences(self, state: dict[str, Any]) -> list[str]:
        """The spec keys this run does not share with the run whose checkpoint ``state`` is: every key of the
        trial config (``fixed.*``), the data keys that change what the model sees (:data:`INPUT_KEYS`), the epoch budget.
        Resuming it under any of them would not continue that run."""
        mine = {f"fixed.{key}": value for key, value in flatten_trial_config(self.cfg).items()}
        theirs = {f"fixed.{key}": value for key, value in state.get("config", {}).items()}
        data = state.get("data") or {"image_size": state.get("image_size")}  # before "data": the size alone
        for key, value in data.items():
            mine[f"data.{key}"], theirs[f"data.{key}"] = getattr(self.data_cfg, key), value
        differ = [key for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
        if state.get("epochs") != self.epochs:
            differ.append(f"budget.epochs ({state.get('epochs')} in the checkpoint)")
        return differ

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["class_to_idx"] != self.class_to_idx:
            raise ValueError("checkpoint was trained on a different set of classes than the data folder holds")
        self.model.load_state_dict(state["train_model"] if state.get("train_model") is not None else state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch = state["epoch"]
        self.best_val_acc = state["best_val_acc"]
        self.best_epoch = state["best_epoch"]
