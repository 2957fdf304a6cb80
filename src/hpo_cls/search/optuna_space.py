"""The spec's search space as an Optuna define-by-run function.

Parameters are suggested in the order they are listed; a parameter whose ``when`` condition does not
hold is not suggested at all, so Optuna's study only holds the parameters that were really active
(conditional spaces stay honest for TPE and for parameter-importance plots).
"""

from __future__ import annotations

from typing import Any, Mapping

import optuna

from hpo_cls.spec import Param, TrialConfig, format_value
from hpo_cls.spec.space import is_active

__all__ = ["DefineByRun", "is_active", "active_params", "describe_space", "distribution_of",
           "baseline_point"]


def distribution_of(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution a parameter is suggested from."""
    if param.kind == "choice":
        return optuna.distributions.CategoricalDistribution(param.optuna_choices)
    if param.kind == "int":
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    if param.kind == "quniform":
        return optuna.distributions.FloatDistribution(param.low, param.high, step=param.step)
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log)


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """Suggest ``param`` through the trial's public API, from :func:`distribution_of`."""
    d = distribution_of(param)
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(param.optuna_name, list(d.choices))
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(param.optuna_name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(param.optuna_name, d.low, d.high, step=d.step, log=d.log)


class DefineByRun:
    """Callable ``trial -> None``: suggests the space's parameters on an Optuna trial (the searcher's
    ``study.ask()``); picklable so searcher state saves.

    Values of inactive parameters come from ``fixed``; the trial's config holds only suggested values,
    under their Optuna names (:meth:`config_keys` maps them back to trial-config keys).
    """

    def __init__(self, space: tuple[Param, ...], fixed: TrialConfig):
        self.space = space
        self.fixed = fixed

    def __call__(self, trial: optuna.Trial) -> None:
        values = {name: getattr(self.fixed, name) for name in TrialConfig.__dataclass_fields__}
        for param in self.space:
            if is_active(param, values):
                values[param.name] = _typed(param, suggest(trial, param))
        return None

    def config_keys(self, suggested: Mapping[str, Any]) -> dict[str, Any]:
        """Suggested values keyed by Optuna name -> keyed by trial-config key (``lr|optimizer=sgd`` -> ``lr``)."""
        keys = {p.optuna_name: p.name for p in self.space}
        return {keys.get(name, name): value for name, value in suggested.items()}


def _typed(param: Param, value: Any) -> Any:
    """A choice back from its Optuna form (``"[1024, 512]"``), for ``when`` checks."""
    if param.kind != "choice":
        return value
    return param.choices[param.optuna_choices.index(value)]


def active_params(space: tuple[Param, ...], config: Mapping[str, Any], fixed: TrialConfig) -> list[Param]:
    """The Params that set ``config`` (suggested values by trial-config key), in space order; of
    alternatives for one key, the one whose condition held, as :class:`DefineByRun` chose it."""
    values = {name: getattr(fixed, name) for name in TrialConfig.__dataclass_fields__}
    active = []
    for param in space:
        if param.name in config and is_active(param, values):
            values[param.name] = _typed(param, config[param.name])
            active.append(param)
    return active


def baseline_point(space: tuple[Param, ...], fixed: TrialConfig) -> dict[str, Any]:
    """Trial 0's parameters for ``study.enqueue_trial``: the fixed values of the parameters active under
    the fixed configuration, under their Optuna names (``lr|optimizer=adamw`` for one of several
    alternatives) and in the form :func:`suggest` returns them (choices as their Optuna values)."""
    values = {name: getattr(fixed, name) for name in TrialConfig.__dataclass_fields__}
    return {p.optuna_name: format_value(values[p.name]) if p.kind == "choice" else values[p.name]
            for p in space if is_active(p, values)}


def describe_space(space: tuple[Param, ...]) -> list[str]:
    """One readable line per parameter, for ``hpo-cls validate``."""
    lines = []
    for p in space:
        if p.kind == "choice":
            body = "choice " + ", ".join(map(str, p.choices))
        elif p.kind == "quniform":
            body = f"quniform [{p.low:g}, {p.high:g}] step {p.step:g}"
        else:
            body = f"{p.kind} [{p.low:g}, {p.high:g}]" + (" log" if p.log and p.kind == "int" else "")
        if p.when:
            body += "   when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
        lines.append(f"{p.name:<22} {body}")
    return lines
