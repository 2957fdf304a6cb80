"""The sweep spec: YAML -> typed, frozen, validated config objects (every problem named by its key)."""

from hpo_cls.errors import SpecError
from hpo_cls.spec.load import load_spec, parse_overrides, parse_spec
from hpo_cls.spec.schema import (
    COST_METRICS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    METRIC_MODES,
    BudgetConfig,
    Constraint,
    DataConfig,
    FaultToleranceConfig,
    Objective,
    Param,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SweepSpec,
    TrackingConfig,
    TrialConfig,
    flatten_trial_config,
    format_value,
)
from hpo_cls.spec.validate import trial_config_from_dict

__all__ = [
    "SpecError",
    "load_spec",
    "parse_spec",
    "parse_overrides",
    "SweepSpec",
    "TrialConfig",
    "DataConfig",
    "BudgetConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearchConfig",
    "Param",
    "TrackingConfig",
    "FaultToleranceConfig",
    "METRIC_MODES",
    "COST_METRICS",
    "Objective",
    "Constraint",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "trial_config_from_dict",
    "flatten_trial_config",
    "format_value",
]
