"""The checker: coerce YAML values to the typed fields of :mod:`hpo_cls.spec.schema` and collect one
readable problem line per bad key (``<file>: <dotted.key>: <message>``), never stopping at the first."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from hpo_cls.errors import SpecError, echo
from hpo_cls.spec.safe_yaml import load_yaml
from hpo_cls.spec.schema import TrialConfig

__all__ = ["field_types", "scalar_type", "check_value", "coerce_scalar", "parse_section", "trial_config_from_dict",
           "name_problem"]

MAX_NAME_LENGTH = 128


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a sweep (a spec's ``name``, ``sweep --name``): it becomes a folder name, so
    letters, digits, '-', '_' and '.' only, not starting with '.' (no ``..``, no separators); None if it can."""
    if not isinstance(name, str) or not name.strip():
        return "required, a non-empty string"
    if len(name) > MAX_NAME_LENGTH or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        return (f"use letters, digits, '-', '_' and '.' only (not first), at most {MAX_NAME_LENGTH} characters; "
                f"got {echo(name)}")
    return None


@functools.cache
def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def scalar_type(tp: Any) -> Any:
    """``X`` of an ``X | None`` annotation; any other annotation as it is."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None))
    return tp


def check_value(f: dataclasses.Field, value: Any, tp: Any) -> Any:
    """Coerce ``value`` to type ``tp``, check ``f``'s constraints; raise ValueError(message)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if isinstance(value, str):  # "[1024, 512]": how lists travel through Optuna and MLflow params
            try:
                value = load_yaml(value, "")  # aliases bounded: a quoted string may hold an alias bomb
            except SpecError:
                raise ValueError(f"expected a list, got {echo(value)}") from None
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {echo(value)}")
        items = tuple(coerce_scalar(args[0], v) for v in value)
        length = f.metadata.get("length")
        if length is not None and len(items) != length:
            raise ValueError(f"expected {length} values, got {len(items)}")
        for i, item in enumerate(items):  # bounds of a tuple field hold for each item
            try:
                _check_bounds(f.metadata, item)
            except ValueError as exc:
                raise ValueError(f"item {i} {exc}") from None
        return items
    value = coerce_scalar(tp, value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{echo(value)} is not one of {', '.join(map(str, meta['choices']))}")
    _check_bounds(meta, value)
    return value


def _check_bounds(meta: Mapping[str, Any], value: Any) -> None:
    for key, op, word in (("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"), ("le", float.__le__, "<="), ("lt", float.__lt__, "<")):
        bound = meta.get(key)
        if bound is not None and not op(float(value), float(bound)):
            raise ValueError(f"must be {word} {bound}, got {value}")


def _as_number(value, what: str) -> float:
    # PyYAML reads 1e-4 (no dot) as a string; accept it as the number the user meant.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {what}, got {echo(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected {what}, got {echo(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite value, got {echo(value)}")
    return number


def coerce_scalar(tp, value):
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {echo(value)}")
    if tp is int:
        number = _as_number(value, "an integer")
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {echo(value)}")
        return int(number)
    if tp is float:
        return _as_number(value, "a number")
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty string, got {echo(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ValueError(f"expected a path, got {echo(value)}")
        return Path(value)
    raise TypeError(f"unsupported config type {tp}")  # a bug in this module, not user input


def parse_section(cls, raw: Any, path: str, problems: list[str], where: str):
    """Build dataclass ``cls`` from a mapping, collecting one problem line per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: {path}: expected a mapping, got {echo(raw)}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = field_types(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{where}: {path}.{key}: unknown key (known: {', '.join(fields)})")
            continue
        try:
            values[key] = check_value(fields[key], value, hints[key])
        except ValueError as exc:
            problems.append(f"{where}: {path}.{key}: {exc}")
    return cls(**values)


def trial_config_from_dict(values: Mapping[str, Any], base: TrialConfig | None = None) -> TrialConfig:
    """Validated TrialConfig from a flat dict (e.g. a sampled Tune config); raises SpecError."""
    problems: list[str] = []
    parsed = parse_section(TrialConfig, dict(values), "fixed", problems, "config")
    if problems:
        raise SpecError(problems)
    explicit = {k: getattr(parsed, k) for k in values}
    return dataclasses.replace(base or TrialConfig(), **explicit)

