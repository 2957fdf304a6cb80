"""``hpo-cls train``: the spec's ``fixed`` configuration trained once, without Ray, one line per epoch.

Writes ``checkpoint.pt`` (resumes exactly), ``metrics.csv``, ``per_class_report.csv``,
``confusion_matrix.png`` and ``config.json`` into the output folder; a run already there is continued
(``--resume``) or replaced (``--force``), never overwritten silently.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from hpo_cls.errors import CheckpointError, NonFiniteLossError, echo
from hpo_cls.spec import SweepSpec

__all__ = ["train_fixed"]


def train_fixed(spec: SweepSpec, out_dir: Path, out: TextIO | None = None, *, resume: bool = False,
                force: bool = False) -> Path:
    """Train ``spec.fixed`` for ``spec.budget.epochs`` epochs into ``out_dir``; returns ``out_dir``. A run
    already in ``out_dir`` is refused unless ``resume`` (go on from its checkpoint) or ``force`` (start over)."""
    from hpo_cls.spec.recipe import recipe_lines
    from hpo_cls.train.out_dir import claimed_out_dir
    from hpo_cls.train.run import TrainingRun

    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    with claimed_out_dir(out_dir, resume=resume, force=force) as checkpoint:
        epochs = spec.budget.epochs
        print(f"configuration of {spec.source or spec.name} (* = a default, not written in the spec):", file=out)
        print("\n".join(recipe_lines(spec)), file=out, flush=True)
        # One process with the machine to itself: the GPU whenever one is visible. (`resources` sizes sweep
        # trials for Ray; the quickstart's gpu: 0 kept this on the CPU of a GPU machine.)
        run = TrainingRun(spec.data, spec.fixed, epochs, gpu_share=1.0)
        rows = _resume(run, checkpoint, out_dir) if checkpoint else []
        print(f"training {spec.fixed.backbone} on {spec.data.root} ({run.num_classes} classes, "
              f"{len(run.loaders.train.dataset)} train / {len(run.loaders.val.dataset)} val images) "
              f"for {epochs} epochs on {run.device.type}" + (f", from epoch {run.epoch}" if checkpoint else ""),
              file=out, flush=True)
        _train_epochs(run, rows, out_dir, out)
        _write_reports(run, rows, out_dir)
    print(f"best val_acc {run.best_val_acc:.4f} at epoch {run.best_epoch}; wrote {out_dir}/checkpoint.pt, "
          "metrics.csv, per_class_report.csv, confusion_matrix.png", file=out, flush=True)
    return out_dir


def _train_epochs(run, rows: list[dict], out_dir: Path, out: TextIO) -> None:
    from hpo_cls.train.checkpoint import save_checkpoint

    while run.epoch < run.epochs:
        try:
            metrics = run.run_epoch()
        except NonFiniteLossError as exc:
            raise NonFiniteLossError(f"training diverged: {exc}; lower fixed.lr or enable fixed.grad_clip") from None
        rows.append(metrics)
        print(f"epoch {metrics['epoch']}/{run.epochs}  train_loss {metrics['train_loss']:.4f}  "
              f"train_acc {metrics['train_acc']:.4f}  val_loss {metrics['val_loss']:.4f}  "
              f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.3g}  "
              f"{metrics['images_per_s']:.0f} img/s  {metrics['epoch_time_s']:.1f}s", file=out, flush=True)
        # Rows first: a run killed between the two writes then holds a row past its checkpoint, which
        # _resume drops, rather than a checkpoint past its rows, whose epoch the resumed run would lose.
        _write_metrics(rows, out_dir)
        save_checkpoint(run.state_dict(), out_dir)


def _resume(run, checkpoint: Path, out_dir: Path) -> list[dict]:
    """Load ``checkpoint`` into ``run`` (it must be of the same configuration and epoch budget, or the
    resumed run would not be the one it continues); returns the metric rows of the epochs it holds."""
    from hpo_cls.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    differ = run.differences(state)
    if differ:
        raise CheckpointError(f"{checkpoint}: trained with a different configuration ({', '.join(differ)}); "
                              "resume with the same spec and --set values, or pass {force} to start over")
    try:
        run.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{checkpoint}: cannot resume from it ({str(exc).splitlines()[0]})") from None
    return _metric_rows(out_dir / "metrics.csv", run.epoch)


def _metric_rows(metrics: Path, epochs: int) -> list[dict]:
    """The rows of ``metrics`` for epochs 1..``epochs`` (those its checkpoint holds; a row past them is an epoch
    whose checkpoint was never written). A CheckpointError naming the file if it is not one this command wrote."""
    fix = "put the run's own back, or pass {force} to start over"
    if not metrics.exists():
        return []
    try:
        with open(metrics, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for line, row in enumerate(rows, 2):
            if None in row or None in row.values():
                raise ValueError(f"line {line}: more or fewer fields than the header")
            for value in row.values():
                float(value)  # every value this command writes is a number
        kept = [row for row in rows if int(row["epoch"]) <= epochs]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, KeyError) as exc:
        reason = f"no column {exc}" if isinstance(exc, KeyError) else (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{metrics}: not the metrics.csv of this run ({reason}); {fix}") from None
    found = [int(row["epoch"]) for row in kept]
    if rows and found != list(range(1, epochs + 1)):
        raise CheckpointError(f"{metrics}: not the metrics.csv of this run (epochs {echo(found)}, its checkpoint "
                              f"holds 1 to {epochs}); {fix}")
    return kept


def _write_metrics(rows: list[dict], out_dir: Path) -> None:
    """Replace ``metrics.csv`` atomically (temp file + rename): a kill mid-write keeps the previous rows."""
    tmp = out_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="") as f:
        # Every row's columns: a run begun on the CPU and resumed on a GPU adds the GPU's memory columns.
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / "metrics.csv")


def _write_reports(run, rows: list[dict], out_dir: Path) -> None:
    from hpo_cls.tracking.plots import confusion_matrix_figure, per_class_frame

    if run.last_eval is None:  # resumed a finished run: its reports are already there
        return
    report = run.class_report(run.last_eval)
    per_class_frame(report).to_csv(out_dir / "per_class_report.csv", index=False)
    names = [row["class"] for row in report]
    confusion_matrix_figure(run.last_eval.confusion.tolist(), names).savefig(out_dir / "confusion_matrix.png", dpi=110)
    (out_dir / "config.json").write_text(json.dumps(run.state_dict()["config"], indent=2))
