"""Evaluating a promoted ensemble on a labelled split and reporting it: console tables, MLflow metrics
and ``evaluation/`` artifacts (JSON, per-class CSV, confusion-matrix plot)."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

from hpo_cls.console import say
from hpo_cls.errors import PromoteError

if TYPE_CHECKING:
    from hpo_cls.tracking.writer import MlflowWriter

__all__ = [
    "TEST_LABELS_FILE",
    "read_test_labels",
    "labelled_test_samples",
    "evaluate_split",
    "print_split_report",
    "log_split",
]

TEST_LABELS_FILE = "test_labels.csv"


def read_test_labels(path: Path) -> dict[str, str]:
    """``image_name,label`` rows (name without extension, label = class folder name) -> dict."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"image_name", "label"} <= set(reader.fieldnames):
            raise PromoteError(f"{path}: expected a header image_name,label, got {reader.fieldnames}")
        return {row["image_name"]: row["label"] for row in reader}


def labelled_test_samples(test_dir: Path, class_to_idx: dict[str, int], warn: Callable[[str], None]):
    """(path, class index) of the labelled test images, or None without test_labels.csv."""
    from hpo_cls.data import image_name, list_test_images

    labels_file = test_dir.parent / TEST_LABELS_FILE
    if not labels_file.is_file():
        return None
    labels = read_test_labels(labels_file)
    unknown = sorted({v for v in labels.values() if v not in class_to_idx})
    if unknown:
        raise PromoteError(f"{labels_file}: labels that are no class folder of train/: {', '.join(unknown[:10])}")
    images = list_test_images(test_dir)
    samples = [(p, class_to_idx[labels[image_name(p)]]) for p in images if image_name(p) in labels]
    if len(samples) < len(images):
        warn(f"{labels_file}: {len(images) - len(samples)} of {len(images)} test images have no label; "
             "they are left out of the test evaluation")
    return samples or None


def evaluate_split(name: str, loaded, member_keys: Sequence[str], samples, batch_size: int, workers: int,
                   class_names: Sequence[str]) -> dict:
    """Every member and the ensemble (a LoadedEnsemble) on ``samples``: accuracy, loss, per-class
    report and confusion matrix, as a JSON-friendly dict; ``class_names`` (index order) label the classes."""
    from hpo_cls.promote.ensemble import evaluate_ensemble

    loader = _labelled_loader(samples, loaded.image_size, batch_size, workers, loaded.eval_config)
    members, ensemble = evaluate_ensemble(loaded.model, loader, len(loaded.class_names))
    return _split_report(name, member_keys, members, ensemble, class_names)


def _labelled_loader(samples, image_size: int, batch_size: int, workers: int, cfg):
    from torch.utils.data import DataLoader

    from hpo_cls.data.loaders import ImageDataset
    from hpo_cls.data.transforms import build_eval_transform

    dataset = ImageDataset(samples, build_eval_transform(image_size, cfg))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


def _split_report(name: str, member_keys: Sequence[str], members, ensemble, class_names) -> dict:
    from hpo_cls.train.engine import per_class_report

    best = max(r.accuracy for r in members)
    return {
        "split": name,
        "members": {k: {"accuracy": r.accuracy, "loss": r.loss, "per_class": per_class_report(r.confusion, class_names),
                        "confusion": r.confusion.tolist()} for k, r in zip(member_keys, members)},
        "ensemble": {"accuracy": ensemble.accuracy, "loss": ensemble.loss},
        "best_member_accuracy": best,
        "gain_over_best_member": ensemble.accuracy - best,
        "per_class": per_class_report(ensemble.confusion, class_names),
        "confusion": ensemble.confusion.tolist(),
        "class_names": list(class_names),
    }


def print_split_report(report: dict, held_out: bool, out: TextIO) -> None:
    """Accuracy and loss per member and of the ensemble, per-class report, confusion matrix (<= 20 classes)."""
    from hpo_cls.console import format_table

    note = "" if held_out else "  (NOT held out: the members were trained on it)"
    print(file=out)
    say(f"evaluation on {report['split']}{note}", out)
    rows = [[k, f"{v['accuracy']:.4f}", f"{v['loss']:.4f}"] for k, v in report["members"].items()]
    rows.append(["ensemble", f"{report['ensemble']['accuracy']:.4f}", f"{report['ensemble']['loss']:.4f}"])
    print(format_table(["model", "accuracy", "loss"], rows), file=out)
    print(f"ensemble gain over the best member: {report['gain_over_best_member']:+.4f}", file=out)
    rows = [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"])]
            for r in report["per_class"]]
    print(format_table(["class", "precision", "recall", "f1", "support"], rows), file=out)
    names = report["class_names"]
    if len(names) <= 20:
        print("confusion matrix (rows: true class, columns: predicted)", file=out)
        print(format_table(["", *names], [[n, *map(str, row)] for n, row in zip(names, report["confusion"])]),
              file=out)
    out.flush()


def log_split(writer: MlflowWriter, key: str, report: dict) -> None:
    """Log the split's metrics and ``evaluation/`` artifacts on the run of ``key``, in order with its other writes."""
    split = report["split"]
    values = {f"{split}_acc": report["ensemble"]["accuracy"], f"{split}_loss": report["ensemble"]["loss"],
              f"{split}_acc_best_member": report["best_member_accuracy"],
              f"{split}_gain_over_best_member": report["gain_over_best_member"],
              **{f"{split}_acc.{k}": v["accuracy"] for k, v in report["members"].items()}}
    writer.log_metrics(key, {k: float(v) for k, v in values.items()}, step=0)

    def op(client, run_id):
        from hpo_cls.tracking.plots import confusion_matrix_figure, per_class_frame

        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, f"{split}_evaluation.json").write_text(json.dumps(report, indent=1))
            per_class_frame(report["per_class"]).to_csv(Path(tmp, f"{split}_per_class_report.csv"), index=False)
            figure = confusion_matrix_figure(report["confusion"], report["class_names"])
            figure.savefig(Path(tmp, f"{split}_confusion_matrix.png"), dpi=110)
            client.log_artifacts(run_id, tmp, "evaluation")

    writer.call(key, op)
