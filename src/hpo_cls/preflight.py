"""Checks made before any training: the data folder and the parameter budget.

Shared by ``validate``, ``train`` and ``sweep`` so that a bad dataset or an oversized model is reported
in seconds, not hours into a sweep.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hpo_cls.config import SweepSpec, TrialConfig, trial_config_from_dict
from hpo_cls.data import DataError, DatasetSummary, describe_dataset

__all__ = ["ParameterBudget", "Preflight", "run_preflight"]

# TrialConfig fields that change the parameter count; everything else shares one cache entry.
_MODEL_FIELDS = ("backbone", "small_input", "attention", "attention_placement", "attention_reduction",
                 "head_hidden")


class ParameterBudget:
    """``config -> parameter count`` of the model a (partial) trial config builds; cached, picklable."""

    def __init__(self, fixed: TrialConfig, num_classes: int):
        self.fixed, self.num_classes = fixed, num_classes
        self._cache: dict[tuple, int] = {}

    def __call__(self, config: dict[str, Any] | TrialConfig) -> int:
        from hpo_cls.models import count_parameters

        cfg = config if isinstance(config, TrialConfig) else trial_config_from_dict(config, base=self.fixed)
        key = tuple(getattr(cfg, name) for name in _MODEL_FIELDS)
        if key not in self._cache:
            self._cache[key] = count_parameters(dataclasses.replace(cfg, pretrained=False), self.num_classes)
        return self._cache[key]


@dataclass
class Preflight:
    summary: DatasetSummary | None
    problems: list[str] = field(default_factory=list)
    parameter_counts: dict[str, int] = field(default_factory=dict)  # backbone -> count with fixed values


def run_preflight(spec: SweepSpec, *, scan_images: bool = True, bad_files_are_errors: bool = True) -> Preflight:
    """Check the data folder (class folders, unreadable images) and every backbone against max_params."""
    where = str(spec.source or "<spec>")
    try:
        summary = describe_dataset(spec.data.root, scan=scan_images)
    except DataError as exc:
        return Preflight(None, [f"{where}: data.root: {exc}"])
    problems = []
    if bad_files_are_errors and summary.bad_files:
        shown = ", ".join(f"{path} ({reason})" for path, reason in summary.bad_files[:5])
        more = f" and {len(summary.bad_files) - 5} more" if len(summary.bad_files) > 5 else ""
        problems.append(f"{where}: data.root: {len(summary.bad_files)} unreadable image(s): {shown}{more}; "
                        "remove or replace them")
    budget = ParameterBudget(spec.fixed, len(summary.class_to_idx))
    counts = {}
    fixed_count = budget(spec.fixed)
    counts[spec.fixed.backbone] = fixed_count
    if fixed_count > spec.max_params:
        problems.append(f"{where}: fixed.backbone: {spec.fixed.backbone} has {fixed_count:,} parameters, "
                        f"over max_params {spec.max_params:,}")
    for param in spec.search.space:
        if param.name != "backbone":
            continue
        for i, backbone in enumerate(param.choices):
            count = budget(dataclasses.replace(spec.fixed, backbone=backbone))
            counts[backbone] = count
            if count > spec.max_params:
                problems.append(f"{where}: search.space.backbone.choice[{i}]: {backbone} has {count:,} "
                                f"parameters, over max_params {spec.max_params:,}")
    return Preflight(summary, problems, counts)
