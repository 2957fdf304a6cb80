"""A model's evaluation as MLflow records it: the per-class report (a table) and the confusion matrix (a figure).
Imports nothing of hpo_cls, so training, tracking and promote all draw them the same way."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import pandas as pd  # noqa: E402

__all__ = ["per_class_frame", "confusion_matrix_figure"]


def per_class_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def confusion_matrix_figure(confusion: list[list[int]], class_names: list[str]):
    """A matplotlib Figure outside pyplot's global figure list: safe to draw in a background thread
    (the sweep's MLflow writer) while another thread uses pyplot; nothing to close."""
    from matplotlib.figure import Figure

    n = len(class_names)
    size = min(4 + 0.35 * n, 30)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    step = max(1, n // 40)  # label every class up to 40, then thin out so labels stay readable
    ticks = list(range(0, n, step))
    axes.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90)
    axes.set_yticks(ticks, [class_names[i] for i in ticks])
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if confusion[i][j]:
                    axes.text(j, i, confusion[i][j], ha="center", va="center", fontsize=8)
    figure.tight_layout()
    return figure
