"""The Pareto front on the sweep's parent run: ``pareto_front.csv`` (every completed trial, marked) and
``pareto_front.png`` (the first objective against each other one, the front joined by a line)."""

from __future__ import annotations

import pandas as pd

__all__ = ["pareto_frame", "pareto_figure"]


def pareto_frame(objectives, trials, front) -> pd.DataFrame:
    """One row per completed trial with its objective values and whether it is on the front."""
    on_front = {t.trial_id for t in front}
    rows = [{"trial_id": t.trial_id, "on_front": t.trial_id in on_front, "mlflow_run_id": t.run_id,
             **{o.metric: t.values.get(o.metric) for o in objectives}, **t.config}
            for t in trials if t.status == "completed"]
    return pd.DataFrame(rows)


def pareto_figure(objectives, trials, front):
    """A matplotlib Figure outside pyplot's figure list (safe off the main thread): one panel per
    objective after the first, trials as dots, the front as labelled points joined in order."""
    from matplotlib.figure import Figure

    first, others = objectives[0], objectives[1:]
    completed = [t for t in trials if t.status == "completed" and all(o.metric in t.values for o in objectives)]
    figure = Figure(figsize=(5.5 * len(others), 4.5))
    for axes, other in zip(figure.subplots(1, len(others), squeeze=False)[0], others):
        axes.scatter([t.values[other.metric] for t in completed], [t.values[first.metric] for t in completed],
                     color="0.6", label="completed trials")
        members = sorted(front, key=lambda t: t.values[other.metric])
        xs, ys = [t.values[other.metric] for t in members], [t.values[first.metric] for t in members]
        axes.plot(xs, ys, "o-", color="tab:red", label="Pareto front")
        for t, x, y in zip(members, xs, ys):
            axes.annotate(t.trial_id, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axes.set_xlabel(f"{other.metric} ({other.mode})")
        axes.set_ylabel(f"{first.metric} ({first.mode})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
