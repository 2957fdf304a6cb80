"""The search-space grammar: ``search.space`` entries (choice, uniform, loguniform, int, quniform, with
``when`` conditions) parsed into :class:`~hpo_cls.spec.schema.Param` tuples, every problem reported.

A key may also take a list of such entries whose ``when`` conditions exclude each other, e.g. one ``lr``
range per optimizer; each becomes its own Optuna parameter (``lr|optimizer=sgd``) setting the same key."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from hpo_cls.errors import echo
from hpo_cls.spec.schema import Param, TrialConfig
from hpo_cls.spec.validate import check_value, coerce_scalar, field_types, scalar_type

__all__ = ["PARAM_KINDS", "parse_space", "is_active"]

PARAM_KINDS = ("choice", "uniform", "loguniform", "int", "quniform")


def is_active(param: Param, values: Mapping[str, Any]) -> bool:
    """Whether every ``when`` condition of ``param`` holds for the values chosen so far."""
    return all(values[parent] in allowed for parent, allowed in param.when.items())


def parse_space(raw: Any, fixed: TrialConfig, problems: list[str], where: str) -> tuple[Param, ...]:
    path = "search.space"
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: {path}: expected a mapping of parameter names, got {echo(raw)}")
        return ()
    fields = {f.name: f for f in dataclasses.fields(TrialConfig)}
    params: list[Param] = []
    seen: dict[str, tuple[Param, ...]] = {}
    names = list(raw)
    for position, (name, entry) in enumerate(raw.items()):
        key = f"{path}.{name}"
        if name not in fields:
            problems.append(f"{where}: {key}: unknown parameter (known: {', '.join(fields)})")
            continue
        alternatives = entry if isinstance(entry, list) else [entry]
        keys = [f"{key}[{i}]" for i in range(len(alternatives))] if isinstance(entry, list) else [key]
        if not alternatives:
            problems.append(f"{where}: {key}: expected a mapping like {{uniform: [low, high]}} or a list of them")
            continue
        if _forward_references(alternatives, keys, set(names[position + 1:]), problems, where):
            continue
        parsed = [_parse_entry(name, e, k, seen, fixed, fields, problems, where) for e, k in zip(alternatives, keys)]
        if None in parsed or not _exclusive(parsed, keys, problems, where):
            continue
        if len(parsed) > 1:
            parsed = [dataclasses.replace(p, label=_label(p)) for p in parsed]
        seen[name] = tuple(parsed)
        params.extend(parsed)
    return tuple(params)


def _forward_references(alternatives: list, keys: list[str], later: set[str], problems: list[str],
                        where: str) -> bool:
    """Report conditions on parameters listed further down: parameters are suggested in order, so such a
    condition would be checked against the fixed value (a cycle of two would always hold). True if any."""
    found = False
    for entry, key in zip(alternatives, keys):
        when = entry.get("when") if isinstance(entry, Mapping) else None
        for parent in when if isinstance(when, Mapping) else ():
            if parent in later:
                problems.append(f"{where}: {key}.when.{parent}: {parent} is listed after this parameter; "
                                f"list {parent} first (conditions may only name parameters listed above)")
                found = True
    return found


def _parse_entry(name, entry, key, seen, fixed, fields, problems, where) -> Param | None:
    """One ``{kind: ..., when: ...}`` mapping -> Param, or None after reporting its problem."""
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: {key}: expected a mapping like {{choice: [...]}} or {{uniform: [low, high]}}")
        return None
    kinds = [k for k in entry if k in PARAM_KINDS]
    extra = [k for k in entry if k not in PARAM_KINDS and k not in ("when", "log", "step")]
    if extra:
        problems.append(f"{where}: {key}.{extra[0]}: unknown key (known: {', '.join(PARAM_KINDS)}, when, log, step)")
        return None
    if len(kinds) != 1:
        problems.append(f"{where}: {key}: give exactly one of {', '.join(PARAM_KINDS)}")
        return None
    param = _parse_param(name, kinds[0], entry, fields[name], key, problems, where)
    if param is None:
        return None
    when = _parse_when(entry.get("when"), name, seen, fixed, fields, f"{key}.when", problems, where)
    return None if when is None else dataclasses.replace(param, when=when)


def _exclusive(alternatives: list[Param], keys: list[str], problems: list[str], where: str) -> bool:
    """Alternatives for one key must never hold together: some parameter they both name, with no value
    in common (``lr`` per ``optimizer``). True when they are, else the problem is reported."""
    for j, b in enumerate(alternatives):
        for i, a in enumerate(alternatives[:j]):
            if not any(set(a.when[k]).isdisjoint(b.when[k]) for k in set(a.when) & set(b.when)):
                problems.append(f"{where}: {keys[j]}.when: can hold together with {keys[i]}; alternatives for one "
                                "key need conditions that exclude each other (one parameter, different values)")
                return False
    return True


def _label(param: Param) -> str:
    """The Optuna name of one alternative: ``lr|optimizer=sgd``."""
    return param.name + "|" + ",".join(f"{k}={'/'.join(map(str, v))}" for k, v in param.when.items())


def _parse_param(name, kind, entry, f, key, problems, where) -> Param | None:
    spec = entry[kind]
    field_type = field_types(TrialConfig)[name]
    for option, kinds in (("step", ("int",)), ("log", ("uniform", "int"))):
        if option in entry and kind not in kinds:  # would be silently ignored
            problems.append(f"{where}: {key}.{option}: only with {' or '.join(kinds)}, not with {kind}")
            return None
    if kind == "choice":
        return _parse_choice(name, spec, f, field_type, f"{key}.{kind}", problems, where)
    return _parse_range(name, kind, entry, f, scalar_type(field_type), key, problems, where)


def _parse_choice(name, spec, f, field_type, key, problems, where) -> Param | None:
    if not isinstance(spec, list) or not spec:
        problems.append(f"{where}: {key}: expected a non-empty list of values")
        return None
    choices = []
    for i, value in enumerate(spec):
        try:
            choices.append(check_value(f, value, field_type))
        except ValueError as exc:
            problems.append(f"{where}: {key}[{i}]: {exc}")
            return None
    if len(set(map(repr, choices))) != len(choices):
        problems.append(f"{where}: {key}: duplicate values")
        return None
    return Param(name, "choice", choices=tuple(choices))


class _Problem(ValueError):
    """One problem line (``<key>: <message>``) of a range parameter."""


def _parse_range(name, kind, entry, f, field_type, key, problems, where) -> Param | None:
    try:
        low, high = _bounds(name, kind, entry[kind], f, field_type, f"{key}.{kind}")
        step = _step(kind, entry, low, high, key, field_type)
        log = kind == "loguniform" or _flag(entry, "log", f"{key}.log")
        # Optuna only rejects these when the first trial is sampled, i.e. minutes into a sweep.
        if log and low <= 0:
            raise _Problem(f"{key}.{kind}: low must be > 0 when log is true")
        if log and step not in (None, 1) and kind == "int":
            raise _Problem(f"{key}.step: cannot be combined with log (Optuna's log-scaled ints use step 1)")
    except _Problem as problem:
        problems.append(f"{where}: {problem}")
        return None
    return Param(name, kind, low=low, high=high, step=step, log=log)


def _bounds(name, kind, spec, f, field_type, key) -> tuple[float, float]:
    if not isinstance(spec, list) or len(spec) != (3 if kind == "quniform" else 2):
        raise _Problem(f"{key}: expected {'[low, high, q]' if kind == 'quniform' else '[low, high]'}")
    if field_type not in (int, float):
        raise _Problem(f"{key}: {name} is not numeric; use choice")
    if field_type is int and kind not in ("int", "quniform"):
        raise _Problem(f"{key}: {name} is an integer parameter; use int or quniform")
    try:
        low, high = (coerce_scalar(int if kind == "int" else float, v) for v in spec[:2])
    except ValueError as exc:
        raise _Problem(f"{key}: {exc}") from None
    if not low < high:
        raise _Problem(f"{key}: low must be < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise _Problem(f"{key}: low must be > 0")
    for bound in (low, high):
        try:
            check_value(f, int(bound) if field_type is int else bound, field_type)
        except ValueError as exc:
            raise _Problem(f"{key}: bound {bound}: {exc}") from None
    return low, high


def _step(kind, entry, low, high, key, field_type) -> float | int | None:
    """quniform's q (third value of its list) or an int parameter's ``step``; None otherwise."""
    step = None
    if kind == "quniform":
        try:
            step = coerce_scalar(float, entry[kind][2])
        except ValueError as exc:
            raise _Problem(f"{key}.{kind}: q: {exc}") from None
        if step <= 0 or step > high - low:
            raise _Problem(f"{key}.{kind}: q must be > 0 and <= high - low")
        if field_type is int and not all(float(v).is_integer() for v in (low, high, step)):
            # Optuna would sample 1.5, and the trial would fail on it, minutes into the sweep
            raise _Problem(f"{key}.{kind}: an integer parameter needs whole numbers for low, high and q, got "
                           f"[{low:g}, {high:g}, {step:g}]")
    if "step" in entry:
        try:
            step = coerce_scalar(int, entry["step"])
        except ValueError as exc:
            raise _Problem(f"{key}.step: {exc}") from None
        if not 1 <= step <= high - low:
            raise _Problem(f"{key}.step: must be >= 1 and <= high - low ({high - low}), got {step}")
    return step


def _flag(entry, name, key) -> bool:
    try:
        return coerce_scalar(bool, entry.get(name, False))
    except ValueError as exc:
        raise _Problem(f"{key}: {exc}") from None


def _condition_problem(parent: str, alternatives: tuple[Param, ...], values: tuple) -> str | None:
    """Why ``when: {parent: values}`` never holds (or holds with probability 0), ``parent`` being searched."""
    continuous = next((p for p in alternatives if p.kind in ("uniform", "loguniform")), None)
    if continuous is not None:
        return (f"holds with probability 0: {parent} is searched over a continuous range ({continuous.kind} "
                f"[{continuous.low:g}, {continuous.high:g}]), where any one value is never drawn; condition on a "
                f"choice parameter, or search {parent} with choice")
    if any(_can_take(p, value) for p in alternatives for value in values):
        return None
    ranges = ", ".join(str(list(p.choices)) if p.kind == "choice" else f"{p.kind} [{p.low:g}, {p.high:g}] step "
                       f"{p.step or 1:g}" for p in alternatives)
    return f"can never hold: {parent} is searched over {ranges}, none of {list(values)}"


def _can_take(param: Param, value: Any) -> bool:
    """Whether a discrete parameter (choice, int, quniform) can be drawn as ``value``."""
    if param.kind == "choice":
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not param.low <= value <= param.high:
        return False
    steps = (value - param.low) / (param.step or 1)
    return abs(steps - round(steps)) < 1e-9


def _parse_when(raw, name, seen, fixed, fields, key, problems, where) -> dict | None:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{where}: {key}: expected a mapping like {{mix: [cutmix, both]}}")
        return None
    when = {}
    for parent, values in raw.items():
        if parent not in fields:
            problems.append(f"{where}: {key}.{parent}: unknown parameter")
            return None
        if parent == name:
            problems.append(f"{where}: {key}.{parent}: a parameter cannot depend on itself")
            return None
        values = values if isinstance(values, list) else [values]
        try:
            values = tuple(check_value(fields[parent], v, field_types(TrialConfig)[parent]) for v in values)
        except ValueError as exc:
            problems.append(f"{where}: {key}.{parent}: {exc}")
            return None
        if parent in seen:
            problem = _condition_problem(parent, seen[parent], values)
            if problem:
                problems.append(f"{where}: {key}.{parent}: {problem}")
                return None
        elif getattr(fixed, parent) not in values:
            problems.append(
                f"{where}: {key}.{parent}: can never hold: {parent} is fixed to "
                f"{echo(getattr(fixed, parent))} (conditions may only name fixed values or parameters listed above)"
            )
            return None
        when[parent] = values
    return when

