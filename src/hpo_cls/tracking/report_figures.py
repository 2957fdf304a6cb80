"""The interactive figures of a sweep report (Plotly), each from a :class:`SweepData` alone."""

from __future__ import annotations

import logging
import math
from typing import Any

import plotly.graph_objects as go

from hpo_cls.spec import COST_METRICS
from hpo_cls.tracking.report_data import SweepData, TrialData
from hpo_cls.tracking.score import pareto_front

__all__ = ["FIGURES", "parallel_coordinates", "learning_curves", "param_importances", "importance_warning",
           "score_vs_time", "per_class_f1", "pareto_plot", "pareto_axes", "RELIABLE_IMPORTANCE_TRIALS"]

log = logging.getLogger(__name__)

# Below this many finished trials, PED-ANOVA's ranking moves with a trial or two (Optuna's evaluator gives
# no reliability figure of its own); the report says so beside the chart.
RELIABLE_IMPORTANCE_TRIALS = 20
PARETO_COSTS = ("params_m", "flops_g", "latency_ms")  # the costs a Pareto plot puts against the metric

STATUS_MARKERS = {"completed": ("circle", "completed"), "early_stopped": ("x", "stopped early (ASHA)"),
                  "failed": ("triangle-down", "failed"), "running": ("diamond", "running")}
_LAYOUT: dict[str, Any] = {"template": "plotly_white", "height": 440, "margin": {"l": 60, "r": 30, "t": 50, "b": 50}}


def _figure(title: str, **layout) -> go.Figure:
    return go.Figure(layout={**_LAYOUT, "title": title, **layout})


def _note(figure: go.Figure, text: str) -> go.Figure:
    """A figure that says why it is empty (too few trials, nothing logged yet)."""
    figure.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 15})
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def _axis(name: str, values: list[Any]) -> dict[str, Any]:
    """One parallel-coordinates dimension: categories as ticks, wide positive ranges on a log10 scale."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if min(values) > 0 and max(values) / min(values) > 20:
            return {"label": f"log10({name})", "values": [math.log10(v) for v in values]}
        return {"label": name, "values": values}
    categories = sorted({str(v) for v in values})
    return {"label": name, "values": [categories.index(str(v)) for v in values],
            "tickvals": list(range(len(categories))), "ticktext": categories}


def parallel_coordinates(data: SweepData) -> go.Figure:
    figure = _figure(f"Searched parameters, coloured by {data.rule.best_metric}")
    trials = data.ranked()
    names = [n for n in data.searched if any(n in t.params for t in trials)]
    if len(trials) < 2 or not names:
        return _note(figure, "needs at least two scored trials and a searched parameter")
    dimensions = []
    for name in names:
        values = [t.params.get(name, "·") for t in trials]
        dimensions.append(_axis(name, values))
    scores = [t.best for t in trials]
    dimensions.append({"label": data.rule.best_metric, "values": scores})
    figure.add_trace(go.Parcoords(dimensions=dimensions, line={"color": scores, "colorscale": "Viridis",
                                                               "showscale": True, "colorbar": {"title": data.rule.best_metric}}))
    figure.update_layout(margin={"l": 80, "r": 80, "t": 110, "b": 40})
    return figure


def _curve_trace(trial: TrialData, x: list, y: list, colour: str) -> list[go.Scatter]:
    """A trial's curve and, at its last point, a marker saying how it ended."""
    symbol, status_text = STATUS_MARKERS.get(trial.status, ("circle", trial.status))
    line = go.Scatter(x=x, y=y, mode="lines+markers", name=trial.name or trial.trial_id, legendgroup=trial.trial_id,
                      line={"color": colour}, hovertemplate=f"{trial.trial_id}<br>%{{x}}: %{{y:.4f}}<extra>{status_text}</extra>")
    end = go.Scatter(x=x[-1:], y=y[-1:], mode="markers", legendgroup=trial.trial_id, showlegend=False,
                     marker={"symbol": symbol, "size": 13, "color": colour, "line": {"width": 1, "color": "black"}},
                     hoverinfo="skip")
    return [line, end]


def _colour(i: int) -> str:
    from plotly.colors import qualitative

    return qualitative.Alphabet[i % len(qualitative.Alphabet)]


def learning_curves(data: SweepData) -> go.Figure:
    figure = _figure(f"Learning curves ({data.metric} per epoch; x = stopped early by ASHA, ▼ = failed)",
                     xaxis_title="epoch", yaxis_title=data.metric)
    trials = [t for t in data.trials if t.history]
    if not trials:
        return _note(figure, "no epoch reported yet")
    for i, trial in enumerate(trials):
        for trace in _curve_trace(trial, [s for s, _, _ in trial.history], [v for _, v, _ in trial.history],
                                  _colour(i)):
            figure.add_trace(trace)
    if data.epochs:
        figure.add_vline(x=data.epochs, line_dash="dot", annotation_text="epoch budget")
    return figure


def _finished(data: SweepData) -> list[TrialData]:
    """The completed trials, best first: an early-stopped trial's score is that of a few epochs, so its
    parameters would look unimportant to PED-ANOVA whatever they are."""
    return [t for t in data.ranked() if t.status == "completed"]


def importance_warning(data: SweepData) -> str | None:
    """Why the importances are not to be trusted yet, or None."""
    finished = len(_finished(data))
    if finished >= RELIABLE_IMPORTANCE_TRIALS:
        return None
    stopped = sum(t.status == "early_stopped" for t in data.trials)
    left_out = f"; {stopped} stopped early left out" if stopped else ""
    return (f"computed on {finished} completed trial(s){left_out}: under {RELIABLE_IMPORTANCE_TRIALS}, "
            "a trial or two more can reorder them")


def param_importances(data: SweepData) -> go.Figure:
    """Optuna's PED-ANOVA importances of the parameters every completed trial has."""
    warning = importance_warning(data)
    title = f"Parameter importances for {data.rule.best_metric} (Optuna PED-ANOVA, completed trials)"
    figure = _figure(title + (f"<br><sup>⚠ {warning}</sup>" if warning else ""), xaxis_title="importance")
    importances = _importances(data)
    if not importances:
        return _note(figure, "needs at least two completed trials whose searched values differ")
    names = sorted(importances, key=importances.get)
    figure.add_trace(go.Bar(x=[importances[n] for n in names], y=names, orientation="h",
                            hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return figure


def _importances(data: SweepData) -> dict[str, float]:
    from hpo_cls.tracking.importance import ped_anova

    evaluator = ped_anova()  # first: its import keeps scikit-learn out, which the next ones would pull in
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    trials = _finished(data)
    names = [n for n in data.searched if trials and all(n in t.params for t in trials)]
    distributions = {}
    for name in names:
        values = [t.params[name] for t in trials]
        if len({str(v) for v in values}) < 2:
            continue
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        distributions[name] = (FloatDistribution(float(min(values)), float(max(values))) if numeric
                               else CategoricalDistribution(sorted({str(v) for v in values})))
    if len(trials) < 2 or not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if data.mode == "max" else "minimize")
    for t in trials:
        params = {n: (float(t.params[n]) if isinstance(d, FloatDistribution) else str(t.params[n]))
                  for n, d in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=t.best))
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except Exception as exc:  # noqa: BLE001 - a plot is a nicety; the report goes on without it
        log.warning("parameter importances skipped: %s", exc)
        return {}


def score_vs_time(data: SweepData) -> go.Figure:
    figure = _figure(f"{data.metric} over the sweep's wall time (line: best so far)",
                     xaxis_title="minutes since the sweep started", yaxis_title=data.metric)
    trials = [t for t in data.trials if t.history]
    if not trials:
        return _note(figure, "no epoch reported yet")
    start = data.sweep.start_time or min(ts for t in trials for _, _, ts in t.history)
    points = []
    for i, trial in enumerate(trials):
        x = [(ts - start) / 60000 for _, _, ts in trial.history]
        y = [v for _, v, _ in trial.history]
        points += zip(x, y)
        for trace in _curve_trace(trial, x, y, _colour(i)):
            figure.add_trace(trace)
    best_x, best_y, best = [], [], None
    for x, y in sorted(points):
        if best is None or data.rule.better(y, best):
            best = y
            best_x.append(x)
            best_y.append(y)
    best_x.append(max(x for x, _ in points))  # the line runs to the last epoch reported
    best_y.append(best)
    figure.add_trace(go.Scatter(x=best_x, y=best_y, mode="lines", line={"shape": "hv", "width": 3, "color": "black"},
                                name="best so far"))
    return figure


def per_class_f1(data: SweepData) -> go.Figure:
    figure = _figure("Per-class F1 of the best trials (their best epoch, on val)", xaxis_title="class",
                     yaxis_title="F1", barmode="group")
    trials = [t for t in data.ranked() if t.per_class]
    if not trials:
        return _note(figure, "no per-class report logged yet")
    for trial in trials:
        figure.add_trace(go.Bar(x=[str(row["class"]) for row in trial.per_class],
                                y=[row["f1"] for row in trial.per_class],
                                name=f"{trial.name or trial.trial_id} ({data.rule.best_metric} {trial.best:.4f})"))
    figure.update_xaxes(type="category")
    return figure


def pareto_axes(data: SweepData) -> list[str]:
    """What the Pareto plot puts against the sweep's metric: its other objectives, else the logged costs."""
    if len(data.objectives) > 1:
        return [o.metric for o in data.objectives[1:]]
    completed = [t for t in data.trials if t.status == "completed"]
    return [c for c in PARETO_COSTS if sum(c in t.values for t in completed) >= 2]


def pareto_plot(data: SweepData) -> go.Figure:
    """The sweep's metric against each cost (or other objective) over the completed trials, the front of
    each pair joined: which accuracy each cost buys."""
    from plotly.subplots import make_subplots

    axes = pareto_axes(data)
    title = f"{data.rule.best_metric} against cost (completed trials; line: the Pareto front)"
    if not axes:
        return _note(_figure(title), "needs a multi-objective sweep or costs logged by two completed trials")
    figure = make_subplots(rows=1, cols=len(axes), horizontal_spacing=0.08)
    figure.update_layout(**_LAYOUT, title=title, showlegend=False)
    modes = {o.metric: o.mode for o in data.objectives}
    for col, cost in enumerate(axes, 1):
        trials = [t for t in data.ranked() if t.status == "completed" and cost in t.values]
        cost_mode = modes.get(cost, COST_METRICS.get(cost, "min"))
        on_front = pareto_front([(t.best, t.values[cost]) for t in trials], [data.mode, cost_mode])
        front = sorted((trials[i] for i in on_front), key=lambda t: t.values[cost])
        figure.add_trace(go.Scatter(x=[t.values[cost] for t in trials], y=[t.best for t in trials], mode="markers",
                                    marker={"color": "#8396a5", "size": 9}, text=[t.name for t in trials],
                                    hovertemplate=f"%{{text}}<br>{cost} %{{x:.4g}}<br>{data.rule.best_metric} "
                                                  "%{y:.4f}<extra></extra>"), row=1, col=col)
        figure.add_trace(go.Scatter(x=[t.values[cost] for t in front], y=[t.best for t in front],
                                    mode="lines+markers+text", line={"color": "#c82d4c"}, marker={"size": 10},
                                    text=[t.trial_id for t in front], textposition="top center", hoverinfo="skip"),
                         row=1, col=col)
        figure.update_xaxes(title_text=cost, row=1, col=col)
    figure.update_yaxes(title_text=data.rule.best_metric, row=1, col=1)
    return figure


# (element id, section heading, figure builder), in the report's order
FIGURES = (
    ("parallel-coordinates", "Searched parameters", parallel_coordinates),
    ("learning-curves", "Learning curves", learning_curves),
    ("param-importances", "Parameter importances", param_importances),
    ("pareto", "Accuracy against cost", pareto_plot),
    ("score-vs-time", "Progress over time", score_vs_time),
    ("per-class-f1", "Best trials per class", per_class_f1),
)
