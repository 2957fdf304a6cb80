"""Trial 0 of a sweep: the spec's ``fixed`` configuration (``search.baseline_first``, on by default).

A sweep then starts from its recipe and can only end at or above it. Here: which searched parameters
trial 0 sets (those active under the fixed values), the check that each of their fixed values lies in the
searched range or choices, and the notes ``validate`` prints for keys that are both fixed and searched.
"""

from __future__ import annotations

from typing import Any

from hpo_cls.spec.schema import Param, SweepSpec, TrialConfig, format_value
from hpo_cls.spec.space import is_active

__all__ = ["baseline_values", "baseline_problems", "sweep_problems", "fixed_and_searched_notes"]


def baseline_values(space: tuple[Param, ...], fixed: TrialConfig) -> dict[str, Any]:
    """The searched parameters trial 0 suggests, with their fixed values (typed): those whose ``when``
    holds for the fixed configuration, in the order of the space."""
    values = {name: getattr(fixed, name) for name in TrialConfig.__dataclass_fields__}
    return {p.name: values[p.name] for p in space if is_active(p, values)}


def _outside(param: Param, value: Any) -> str | None:
    """Why Optuna could not suggest ``value`` for ``param``; None when it can."""
    if param.kind == "choice":
        return None if value in param.choices else f"not one of the choices {_domain(param)}"
    if value is None or not param.low <= value <= param.high:
        return f"outside the searched range {_domain(param)}"
    if param.step and abs((value - param.low) / param.step - round((value - param.low) / param.step)) > 1e-9:
        return f"not on the searched grid (from {param.low:g} in steps of {param.step:g})"
    return None


def baseline_problems(space: tuple[Param, ...], fixed: TrialConfig, fixed_keys: frozenset[str],
                      where: str) -> list[str]:
    """One problem line per parameter whose fixed value trial 0 cannot train: Optuna suggests only
    values inside a parameter's distribution, and widening the space silently would change the search."""
    problems = []
    for name, value in baseline_values(space, fixed).items():
        param = next(p for p in space if p.name == name)
        reason = _outside(param, value)
        if reason is None:
            continue
        shown = f"fixed.{name}={format_value(value)}" + ("" if name in fixed_keys else " (the default)")
        problems.append(f"{where}: search.space.{name}: {shown} is trial 0's value (search.baseline_first) but "
                        f"{reason}; set fixed.{name} inside it, change the space, or set search.baseline_first: false")
    return problems


def sweep_problems(spec: SweepSpec) -> list[str]:
    """What only a sweep needs of a spec (``validate`` and ``sweep`` check it; ``train``, which trains the
    fixed configuration for ``budget.epochs`` whatever the space and scheduler, does not): ASHA's grace
    period within the epoch budget, and trial 0's fixed values in their searched ranges (a grid sweep
    reaches its fixed configuration by itself, if it is a grid point)."""
    where = str(spec.source or "<spec>")
    problems = []
    scheduler, epochs = spec.scheduler, spec.budget.epochs
    if scheduler.type == "asha" and scheduler.grace_period > epochs:
        problems.append(f"{where}: scheduler.grace_period: {scheduler.grace_period} exceeds budget.epochs {epochs}")
    if spec.search.baseline_first and spec.search.sampler != "grid":
        problems += baseline_problems(spec.search.space, spec.fixed, spec.fixed_keys, where)
    return problems


def _domain(param: Param) -> str:
    if param.kind == "choice":
        return "[" + ", ".join(str(format_value(c)) for c in param.choices) + "]"
    return f"[{param.low:g}, {param.high:g}]"


def fixed_and_searched_notes(spec: SweepSpec) -> list[str]:
    """One note per key written under ``fixed`` that is also searched: which trials train its fixed value."""
    values = {name: getattr(spec.fixed, name) for name in TrialConfig.__dataclass_fields__}
    trial_zero = ({id(p) for p in spec.search.space if is_active(p, values)}  # per alternative, not per key
                  if spec.search.baseline_first else set())
    notes = []
    for param in spec.search.space:
        if param.name not in spec.fixed_keys:
            continue
        shown = f"fixed.{param.name}={format_value(getattr(spec.fixed, param.name))}"
        domain = _domain(param)
        if id(param) in trial_zero:
            notes.append(f"{shown} is trial 0's value; other trials search {domain}")
        elif param.when:
            condition = ", ".join(f"{k} in [{', '.join(str(format_value(x)) for x in v)}]"
                                  for k, v in param.when.items())
            notes.append(f"{shown} is used whenever {condition} does not hold; trials where it holds "
                         f"search {domain}")
        else:
            notes.append(f"{shown} is never trained: every trial searches {domain} "
                         "(search.baseline_first is false)")
    return notes
