"""A sweep's trials as MLflow records them on the parent run: ``trials.csv`` and the Optuna plots
(importances, history), drawn from a study rebuilt from the trials. Parallel coordinates are the report's
(interactive, readable at any number of parameters); a PNG of them was not."""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import pandas as pd  # noqa: E402

__all__ = ["trials_frame", "build_study", "optuna_plots"]

log = logging.getLogger(__name__)


def trials_frame(trials) -> pd.DataFrame:
    """One row per trial: id, status, epochs run, best score, MLflow run id, objective and cost values
    (e.g. ``params_m``), and sampled values."""
    rows = [
        {"trial_id": t.trial_id, "status": t.status, "epochs_run": t.epochs_run, "best_score": t.best_score,
         "mlflow_run_id": t.run_id, **t.values, **t.config}
        for t in trials
    ]
    return pd.DataFrame(rows)


def build_study(spec, trials, statuses: tuple[str, ...] | None = None):
    """An Optuna study of the sweep's trials (best score each; early-stopped included unless ``statuses``
    leaves them out) for plotting; independent of Tune's searcher state, so it also works after ``--resume``."""
    import optuna

    from hpo_cls.search.optuna_space import active_params, distribution_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if spec.mode == "max" else "minimize")
    for t in trials:
        if t.best_score is None or (statuses is not None and t.status not in statuses):
            continue
        try:
            active = active_params(spec.search.space, t.config, spec.fixed)
            params = {p.optuna_name: t.config[p.name] for p in active}
            distributions = {p.optuna_name: distribution_of(p) for p in active}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=t.best_score))
        except ValueError as exc:  # a value outside its distribution (e.g. the spec changed)
            log.warning("trial %s left out of the Optuna plots: %s", t.trial_id, exc)
    return study


def optuna_plots(spec, trials) -> dict[str, Any]:
    """File name -> matplotlib figure; plots that need more trials than there are are skipped."""
    from hpo_cls.tracking.importance import ped_anova

    evaluator = ped_anova()  # first: its import keeps scikit-learn out, which the next one would pull in
    from optuna.visualization import matplotlib as optuna_mpl

    study = build_study(spec, trials)
    # An early-stopped trial's score is that of a few epochs: ranked beside finished ones, it makes whatever
    # the scheduler stopped look unimportant (the report says the same, with a warning under 20 trials).
    completed = build_study(spec, trials, statuses=("completed",))
    figures: dict[str, Any] = {}
    if len(study.trials) < 2 or not spec.search.space:
        return figures
    plots = [("param_importances.png", completed,
              functools.partial(optuna_mpl.plot_param_importances, evaluator=evaluator)),
             ("optimization_history.png", study, optuna_mpl.plot_optimization_history)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name, source, plot in plots:
            if len(source.trials) < 2:
                continue
            try:
                axes = plot(source)
                figures[name] = (axes if hasattr(axes, "figure") else axes.flat[0]).figure
            except Exception as exc:  # noqa: BLE001 - a plot is a nicety; never fail the sweep over it
                log.warning("skipped %s: %s", name, exc)
    return figures
