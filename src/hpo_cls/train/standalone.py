"""``hpo-cls train``: the spec's ``fixed`` configuration trained once, without Ray, one line per epoch.

Writes ``checkpoint.pt`` (resumes exactly), ``metrics.csv``, ``per_class_report.csv``,
``confusion_matrix.png`` and ``config.json`` into the output folder.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TextIO

from hpo_cls.errors import NonFiniteLossError
from hpo_cls.spec import SweepSpec

__all__ = ["train_fixed"]


def train_fixed(spec: SweepSpec, out_dir: Path, out: TextIO | None = None) -> Path:
    """Train ``spec.fixed`` for ``spec.budget.epochs`` epochs into ``out_dir``; returns ``out_dir``."""
    from hpo_cls.spec.recipe import recipe_lines
    from hpo_cls.train.checkpoint import save_checkpoint
    from hpo_cls.train.run import TrainingRun

    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = spec.budget.epochs
    print(f"configuration of {spec.source or spec.name} (* = a default, not written in the spec):", file=out)
    print("\n".join(recipe_lines(spec)), file=out, flush=True)
    run = TrainingRun(spec.data, spec.fixed, epochs)
    print(f"training {spec.fixed.backbone} on {spec.data.root} ({run.num_classes} classes, "
          f"{len(run.loaders.train.dataset)} train / {len(run.loaders.val.dataset)} val images) "
          f"for {epochs} epochs on {run.device.type}", file=out, flush=True)
    rows = []
    while run.epoch < epochs:
        try:
            metrics = run.run_epoch()
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"training diverged: {exc}; lower fixed.lr or enable fixed.grad_clip") from None
        rows.append(metrics)
        print(f"epoch {metrics['epoch']}/{epochs}  train_loss {metrics['train_loss']:.4f}  "
              f"train_acc {metrics['train_acc']:.4f}  val_loss {metrics['val_loss']:.4f}  "
              f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.3g}  "
              f"{metrics['images_per_s']:.0f} img/s  {metrics['epoch_time_s']:.1f}s", file=out, flush=True)
        save_checkpoint(run.state_dict(), out_dir)
    _write_reports(run, rows, out_dir)
    print(f"best val_acc {run.best_val_acc:.4f} at epoch {run.best_epoch}; wrote {out_dir}/checkpoint.pt, "
          "metrics.csv, per_class_report.csv, confusion_matrix.png", file=out, flush=True)
    return out_dir


def _write_reports(run, rows: list[dict], out_dir: Path) -> None:
    from hpo_cls.tracking.plots import confusion_matrix_figure, per_class_frame

    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = run.class_report(run.last_eval)
    per_class_frame(report).to_csv(out_dir / "per_class_report.csv", index=False)
    names = [row["class"] for row in report]
    confusion_matrix_figure(run.last_eval.confusion.tolist(), names).savefig(out_dir / "confusion_matrix.png", dpi=110)
    (out_dir / "config.json").write_text(json.dumps(run.state_dict()["config"], indent=2))
