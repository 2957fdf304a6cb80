"""Reading a spec: YAML file -> ``--set`` overrides -> the checker -> one :class:`SweepSpec`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from hpo_cls.errors import SpecError, echo
from hpo_cls.spec.schema import (
    METRIC_MODES,
    BudgetConfig,
    DataConfig,
    FaultToleranceConfig,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SweepSpec,
    TrackingConfig,
    TrialConfig,
)
from hpo_cls.search.storage import storage_problem
from hpo_cls.spec.safe_yaml import load_yaml, read_text
from hpo_cls.spec.objectives import parse_constraints, parse_objectives
from hpo_cls.spec.space import parse_space
from hpo_cls.spec.validate import coerce_scalar, name_problem, parse_section

__all__ = ["parse_overrides", "parse_spec", "load_spec"]

_TOP_LEVEL = {f.name for f in dataclasses.fields(SweepSpec) if not f.metadata.get("internal")}


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """``["budget.epochs=1"]`` -> ``[(["budget", "epochs"], 1)]``; values are read as YAML."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"{{set}} {item}: expected key.path=value")
            continue
        try:
            value = load_yaml(text, f"{{set}} {key}") if text else ""
        except SpecError as exc:
            problems.extend(exc.template.split("\n"))
            continue
        parsed.append((key.split("."), value))
    if problems:
        raise SpecError(problems)
    return parsed


def _apply_overrides(raw: dict, overrides: list[tuple[list[str], Any]], problems: list[str]) -> None:
    for keys, value in overrides:
        node = raw
        for i, part in enumerate(keys[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"{{set}} {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a mapping")
                break
            node = child
        else:
            node[keys[-1]] = value


_SECTIONS = {
    "data": DataConfig,
    "budget": BudgetConfig,
    "resources": ResourcesConfig,
    "scheduler": SchedulerConfig,
    "fixed": TrialConfig,
    "tracking": TrackingConfig,
    "fault_tolerance": FaultToleranceConfig,
}


def parse_spec(raw: Any, source: Path | str = "<spec>", overrides: list[str] = ()) -> SweepSpec:
    """Validate a spec dict (as read from YAML) plus ``--set`` overrides into a :class:`SweepSpec`."""
    where = str(source)
    parsed_overrides = parse_overrides(list(overrides))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([f"{where}: expected a mapping at the top level, got {type(raw).__name__}"])
    raw = _deep_copy(raw)
    problems: list[str] = []
    _apply_overrides(raw, parsed_overrides, problems)
    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(f"{where}: {key}: unknown key (known: {', '.join(sorted(_TOP_LEVEL))})")
    sections = {key: parse_section(cls, raw.get(key), key, problems, where) for key, cls in _SECTIONS.items()}
    root_from_cli = any(keys == ["data", "root"] for keys, _ in parsed_overrides)
    sections["data"] = _resolve_data_root(sections["data"], source, root_from_cli)
    if sections["data"].cache_dir is not None:  # trials run in other folders: make it absolute here
        sections["data"] = dataclasses.replace(sections["data"],
                                               cache_dir=sections["data"].cache_dir.expanduser().resolve())
    search = _parse_search(raw.get("search"), sections["fixed"], sections["tracking"].uri, problems, where)
    fixed_raw = raw.get("fixed") if isinstance(raw.get("fixed"), Mapping) else {}
    fixed_keys = frozenset(k for k in fixed_raw if k in TrialConfig.__dataclass_fields__)
    top_level = _parse_top_level(raw, problems, where)
    objectives = parse_objectives(raw.get("objectives"), raw.get("metric"), problems, where)
    if objectives:
        top_level.update(metric=objectives[0].metric, mode=objectives[0].mode)
    constraints = parse_constraints(raw.get("constraints"), problems, where)
    budget = sections["budget"]
    if problems:
        raise SpecError(problems)
    if budget.max_concurrent > budget.num_samples:
        sections["budget"] = dataclasses.replace(budget, max_concurrent=budget.num_samples)
    return SweepSpec(**top_level, **sections, search=search, source=Path(source) if source else None,
                     objectives=objectives, constraints=constraints, fixed_keys=fixed_keys)


def _resolve_data_root(data: DataConfig, source: Path | str, root_from_cli: bool) -> DataConfig:
    """A relative root written in a spec file (``source`` a Path, whatever its extension) is relative to
    that file; one given with an override, or in a spec that is no file, to the current folder."""
    if data.root.is_absolute():
        return data
    base = source.parent if isinstance(source, Path) and not root_from_cli else Path.cwd()
    return dataclasses.replace(data, root=(base / data.root).resolve())


def _parse_search(raw: Any, fixed: TrialConfig, tracking_uri: str, problems: list[str], where: str) -> SearchConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):  # 0, false, '' or [] would otherwise mean "no search" in silence
        problems.append(f"{where}: search: expected a mapping, got {echo(raw)}")
        raw = {}
    search = parse_section(SearchConfig, {k: v for k, v in raw.items() if k != "space"}, "search", problems, where)
    if "space" in raw and not raw["space"]:
        problems.append(f"{where}: search.space: is empty; list at least one parameter or remove the key")
    space = parse_space(raw.get("space"), fixed, problems, where)
    storage_problem_text = storage_problem(search.storage, tracking_uri)
    if storage_problem_text:
        problems.append(f"{where}: search.storage: {storage_problem_text}")
    if search.sampler == "grid":
        for p in space:
            if p.kind != "choice":
                problems.append(f"{where}: search.space.{p.name}: the grid sampler needs choice parameters")
    return dataclasses.replace(search, space=space)


def _parse_top_level(raw: dict, problems: list[str], where: str) -> dict[str, Any]:
    """The scalar top-level keys: name, trainable, metric, mode, max_params, storage_path."""
    name = raw.get("name")
    problem = name_problem(name)
    if problem:
        problems.append(f"{where}: name: {problem}")
        name = name if isinstance(name, str) else "invalid"
    trainable = raw.get("trainable", "trainables.image_classifier")
    if not isinstance(trainable, str) or not all(part.isidentifier() for part in trainable.split(".")):
        problems.append(f"{where}: trainable: expected a dotted module path, got {echo(trainable)}")
    metric = raw.get("metric", "val_acc")
    if not isinstance(metric, str) or metric not in METRIC_MODES:
        problems.append(f"{where}: metric: {echo(metric)} is not one of {', '.join(METRIC_MODES)}")
        metric = "val_acc"
    mode = raw.get("mode", METRIC_MODES[metric])
    if mode != METRIC_MODES[metric]:
        problems.append(f"{where}: mode: {metric} is optimised with mode {METRIC_MODES[metric]}, got {echo(mode)}")
    max_params = raw.get("max_params", 100_000_000)
    try:  # like every other integer: 1e8 (read as a string by PyYAML) and 5.0e7 are accepted
        max_params = coerce_scalar(int, max_params)
    except ValueError:
        max_params = 0
    if max_params <= 0:
        problems.append(f"{where}: max_params: expected a positive integer, got {echo(raw.get('max_params'))}")
        max_params = 100_000_000
    storage = raw.get("storage_path", "ray_results")
    if not isinstance(storage, str) or not storage:
        problems.append(f"{where}: storage_path: expected a path or URI, got {echo(storage)}")
        storage = "ray_results"
    return {"name": name, "trainable": trainable, "metric": metric, "mode": mode, "max_params": max_params,
            "storage_path": Path(storage) if "://" not in storage else storage}


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read and validate a sweep spec file; raises :class:`SpecError` with one line per problem."""
    path = Path(path)
    return parse_spec(load_yaml(read_text(path), str(path)), path, overrides)


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value

