"""Typed, frozen sweep specs, parsed and validated once when the YAML is read.

Every problem is reported as one line ``<file>: <dotted.key>: <message>``; all problems of a file are
collected before :class:`SpecError` is raised, so a user fixes them in one pass.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = [
    "TrialConfig",
    "DataConfig",
    "BudgetConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SearchConfig",
    "Param",
    "TrackingConfig",
    "FaultToleranceConfig",
    "SweepSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "parse_overrides",
    "trial_config_from_dict",
    "flatten_trial_config",
    "format_value",
]

TORCHVISION_BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
WRN_BACKBONES = ("wrn16_4", "wrn16_8", "wrn28_2", "wrn28_10", "wrn40_2")  # pre-activation, for ~32 px images
BACKBONES = TORCHVISION_BACKBONES + WRN_BACKBONES  # hpo_cls.models registers exactly these


class SpecError(Exception):
    """A sweep spec (or override) is invalid. ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _opt(default, *, choices=None, ge=None, gt=None, le=None, lt=None, doc=""):
    return field(default=default, metadata=dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt, doc=doc))


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with: the keys of ``fixed`` and ``search.space``.

    Flat on purpose: one dict is logged with every MLflow run, and every key can be searched.
    """

    # model
    backbone: str = _opt("resnet18", choices=BACKBONES, doc="model architecture")
    pretrained: bool = _opt(False, doc="start from torchvision's ImageNet weights")
    small_input: bool = _opt(False, doc="CIFAR stem (3x3 conv, no max-pool) for ~32px images")
    attention: str = _opt("none", choices=("none", "se", "cbam"), doc="attention module")
    attention_placement: str = _opt(
        "after_layer4",
        choices=("after_layer4", "after_each_stage", "in_every_block"),
        doc="where the attention module goes",
    )
    attention_reduction: int = _opt(16, ge=1, doc="channel reduction ratio r of SE/CBAM")
    dropout: float = _opt(0.0, ge=0.0, lt=1.0, doc="dropout before the classifier (and in head_hidden)")
    dropout_l3_l4: float = _opt(0.0, ge=0.0, lt=1.0, doc="dropout between layer3 and layer4")
    head_hidden: tuple[int, ...] = _opt((), ge=1, doc="extra FC layers (BatchNorm1d + SiLU + dropout)")
    freeze_stages: int = _opt(0, ge=0, le=4, doc="freeze the stem and the first N stages")
    # optimisation
    optimizer: str = _opt("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = _opt(0.05, gt=0.0)
    momentum: float = _opt(0.9, ge=0.0, lt=1.0, doc="SGD momentum")
    weight_decay: float = _opt(5e-4, ge=0.0, doc="not applied to norm and bias parameters")
    batch_size: int = _opt(64, ge=1)
    lr_scheduler: str = _opt("cosine", choices=("cosine", "multistep", "plateau", "none"))
    warmup_epochs: int = _opt(0, ge=0, doc="linear warm-up before the cosine schedule")
    milestones: tuple[float, ...] = _opt((0.5, 0.75), gt=0.0, le=1.0, doc="multistep: fractions of the epoch budget")
    gamma: float = _opt(0.1, gt=0.0, lt=1.0, doc="multistep / plateau decay factor")
    plateau_patience: int = _opt(2, ge=0)
    label_smoothing: float = _opt(0.0, ge=0.0, lt=1.0)
    grad_clip: float = _opt(0.0, ge=0.0, doc="max gradient norm; 0 = off")
    ema_decay: float = _opt(0.0, ge=0.0, lt=1.0, doc="EMA of weights, evaluated instead; 0 = off")
    # augmentation
    mix: str = _opt("none", choices=("none", "mixup", "cutmix", "both"))
    mixup_alpha: float = _opt(0.2, gt=0.0)
    cutmix_alpha: float = _opt(1.0, gt=0.0)
    mix_prob: float = _opt(1.0, ge=0.0, le=1.0, doc="probability that a batch is mixed")
    trivial_augment: bool = _opt(False)
    rotation: float = _opt(0.0, ge=0.0, le=180.0, doc="max random rotation in degrees")
    color_jitter: float = _opt(0.0, ge=0.0, le=1.0)
    random_erasing: float = _opt(0.0, ge=0.0, le=1.0, doc="probability")
    # runtime
    seed: int = _opt(0, ge=0)
    amp: bool = _opt(True, doc="bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = _opt(True, doc="channels_last memory format on CUDA (ignored on CPU)")
    compile: bool = _opt(False, doc="torch.compile the model")


@dataclass(frozen=True)
class DataConfig:
    root: Path = _opt(Path("data"), doc="folder with train/<class_id>/, val/<class_id>/, optional test/")
    image_size: int = _opt(224, ge=8)
    workers: int = _opt(2, ge=0, doc="DataLoader worker processes per trial")
    balanced_sampling: bool = _opt(False, doc="WeightedRandomSampler by inverse class frequency")


@dataclass(frozen=True)
class BudgetConfig:
    epochs: int = _opt(10, ge=1, doc="epochs of a trial that is not stopped early")
    num_samples: int = _opt(8, ge=1, doc="number of trials")
    max_concurrent: int = _opt(2, ge=1, doc="trials running at once (TPE sees results between)")
    time_budget_s: float | None = _opt(None, gt=0.0, doc="stop starting trials after this many seconds")


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: float = _opt(1.0, gt=0.0)
    gpu: float = _opt(0.0, ge=0.0, doc="fractional values share a GPU between trials")


@dataclass(frozen=True)
class SchedulerConfig:
    type: str = _opt("asha", choices=("asha", "fifo"))
    grace_period: int = _opt(1, ge=1, doc="epochs every trial gets before it can be stopped")
    reduction_factor: float = _opt(3.0, gt=1.0)


@dataclass(frozen=True)
class Param:
    """One search-space entry. ``when`` maps parameter names to the values that activate this one."""

    name: str
    kind: str  # choice | uniform | loguniform | int | quniform
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    when: Mapping[str, tuple] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchConfig:
    sampler: str = _opt("tpe", choices=("tpe", "random", "grid"))
    seed: int = _opt(0, ge=0)
    space: tuple[Param, ...] = ()


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = _opt("sqlite:///mlflow.db", doc="MLflow tracking URI")
    experiment: str = _opt("hpo-cls", doc="MLflow experiment name")


@dataclass(frozen=True)
class FaultToleranceConfig:
    max_failures: int = _opt(2, ge=0, doc="retries of a crashed trial, from its last checkpoint")
    keep_checkpoints: int = _opt(2, ge=1, doc="best checkpoints kept per trial")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    data: DataConfig = DataConfig()
    trainable: str = "trainables.image_classifier"
    metric: str = "val_acc"
    mode: str = "max"
    budget: BudgetConfig = BudgetConfig()
    resources: ResourcesConfig = ResourcesConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    search: SearchConfig = SearchConfig()
    fixed: TrialConfig = TrialConfig()
    tracking: TrackingConfig = TrackingConfig()
    fault_tolerance: FaultToleranceConfig = FaultToleranceConfig()
    max_params: int = 100_000_000
    storage_path: Path = Path("ray_results")
    source: Path | None = None  # the YAML file this spec was read from

    @property
    def trial_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(TrialConfig))


_METRIC_MODES = {"val_acc": "max", "val_loss": "min", "train_acc": "max", "train_loss": "min"}
_TOP_LEVEL = {f.name for f in dataclasses.fields(SweepSpec)} - {"source"}
_PARAM_KINDS = ("choice", "uniform", "loguniform", "int", "quniform")


# ---------------------------------------------------------------------------------------------
# value checking


@functools.cache
def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_value(f: dataclasses.Field, value: Any, tp: Any) -> Any:
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
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ValueError(f"expected a list, got {value!r}") from None
        if value is None:
            value = []
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {value!r}")
        items = tuple(_coerce_scalar(args[0], v) for v in value)
        for i, item in enumerate(items):  # bounds of a tuple field hold for each item
            try:
                _check_bounds(f.metadata, item)
            except ValueError as exc:
                raise ValueError(f"item {i} {exc}") from None
        return items
    value = _coerce_scalar(tp, value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, meta['choices']))}")
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
        raise ValueError(f"expected {what}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected {what}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite value, got {value!r}")
    return number


def _coerce_scalar(tp, value):
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if tp is int:
        number = _as_number(value, "an integer")
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        return _as_number(value, "a number")
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ValueError(f"expected a path, got {value!r}")
        return Path(value)
    raise TypeError(f"unsupported config type {tp}")  # a bug in this module, not user input


def _parse_section(cls, raw: Any, path: str, problems: list[str], where: str):
    """Build dataclass ``cls`` from a mapping, collecting one problem line per bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: {path}: expected a mapping, got {raw!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _field_types(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{where}: {path}.{key}: unknown key (known: {', '.join(fields)})")
            continue
        try:
            values[key] = _check_value(fields[key], value, hints[key])
        except ValueError as exc:
            problems.append(f"{where}: {path}.{key}: {exc}")
    return cls(**values)


def trial_config_from_dict(values: Mapping[str, Any], base: TrialConfig | None = None) -> TrialConfig:
    """Validated TrialConfig from a flat dict (e.g. a sampled Tune config); raises SpecError."""
    problems: list[str] = []
    parsed = _parse_section(TrialConfig, dict(values), "fixed", problems, "config")
    if problems:
        raise SpecError(problems)
    explicit = {k: getattr(parsed, k) for k in values}
    return dataclasses.replace(base or TrialConfig(), **explicit)


def format_value(value: Any) -> Any:
    """Lists as ``"[a, b]"`` strings (Optuna categoricals and MLflow params take scalars only)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return value


def flatten_trial_config(cfg: TrialConfig) -> dict[str, Any]:
    """Plain dict of the trial config, lists for tuples (YAML- and JSON-friendly)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# ---------------------------------------------------------------------------------------------
# search space


def _parse_space(raw: Any, fixed: TrialConfig, problems: list[str], where: str) -> tuple[Param, ...]:
    path = "search.space"
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: {path}: expected a mapping of parameter names, got {raw!r}")
        return ()
    fields = {f.name: f for f in dataclasses.fields(TrialConfig)}
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, entry in raw.items():
        key = f"{path}.{name}"
        if name not in fields:
            problems.append(f"{where}: {key}: unknown parameter (known: {', '.join(fields)})")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: {key}: expected a mapping like {{choice: [...]}} or {{uniform: [low, high]}}")
            continue
        kinds = [k for k in entry if k in _PARAM_KINDS]
        extra = [k for k in entry if k not in _PARAM_KINDS and k not in ("when", "log", "step")]
        if extra:
            problems.append(f"{where}: {key}.{extra[0]}: unknown key (known: {', '.join(_PARAM_KINDS)}, when, log, step)")
            continue
        if len(kinds) != 1:
            problems.append(f"{where}: {key}: give exactly one of {', '.join(_PARAM_KINDS)}")
            continue
        kind = kinds[0]
        param = _parse_param(name, kind, entry, fields[name], key, problems, where)
        if param is None:
            continue
        when = _parse_when(entry.get("when"), name, seen, fixed, fields, f"{key}.when", problems, where)
        if when is None:
            continue
        param = dataclasses.replace(param, when=when)
        seen[name] = param
        params.append(param)
    return tuple(params)


def _parse_param(name, kind, entry, f, key, problems, where) -> Param | None:
    spec = entry[kind]
    field_type = _field_types(TrialConfig)[name]
    for option, kinds in (("step", ("int",)), ("log", ("uniform", "int"))):
        if option in entry and kind not in kinds:  # would be silently ignored
            problems.append(f"{where}: {key}.{option}: only with {' or '.join(kinds)}, not with {kind}")
            return None
    base = f"{key}."
    key = f"{key}.{kind}"
    if kind == "choice":
        if not isinstance(spec, list) or not spec:
            problems.append(f"{where}: {key}: expected a non-empty list of values")
            return None
        choices = []
        for i, value in enumerate(spec):
            try:
                choices.append(_check_value(f, value, field_type))
            except ValueError as exc:
                problems.append(f"{where}: {key}[{i}]: {exc}")
                return None
        if len(set(map(repr, choices))) != len(choices):
            problems.append(f"{where}: {key}: duplicate values")
            return None
        return Param(name, kind, choices=tuple(choices))
    expected_len = 3 if kind == "quniform" else 2
    if not isinstance(spec, list) or len(spec) != expected_len:
        form = "[low, high, q]" if kind == "quniform" else "[low, high]"
        problems.append(f"{where}: {key}: expected {form}")
        return None
    numeric_type = int if kind == "int" else float
    if field_type not in (int, float):
        problems.append(f"{where}: {key}: {name} is not numeric; use choice")
        return None
    if field_type is int and kind not in ("int", "quniform"):
        problems.append(f"{where}: {key}: {name} is an integer parameter; use int or quniform")
        return None
    try:
        low, high = (_coerce_scalar(numeric_type, v) for v in spec[:2])
    except ValueError as exc:
        problems.append(f"{where}: {key}: {exc}")
        return None
    if not low < high:
        problems.append(f"{where}: {key}: low must be < high, got [{low}, {high}]")
        return None
    if kind == "loguniform" and low <= 0:
        problems.append(f"{where}: {key}: low must be > 0")
        return None
    for bound in (low, high):
        try:
            _check_value(f, int(bound) if field_type is int else bound, field_type)
        except ValueError as exc:
            problems.append(f"{where}: {key}: bound {bound}: {exc}")
            return None
    step = None
    if kind == "quniform":
        try:
            step = _coerce_scalar(float, spec[2])
        except ValueError as exc:
            problems.append(f"{where}: {key}: q: {exc}")
            return None
        if step <= 0 or step > high - low:
            problems.append(f"{where}: {key}: q must be > 0 and <= high - low")
            return None
    if "step" in entry:
        try:
            step = _coerce_scalar(int, entry["step"])
        except ValueError as exc:
            problems.append(f"{where}: {base}step: {exc}")
            return None
        if not 1 <= step <= high - low:
            problems.append(f"{where}: {base}step: must be >= 1 and <= high - low ({high - low}), got {step}")
            return None
    try:
        log = kind == "loguniform" or _coerce_scalar(bool, entry.get("log", False))
    except ValueError as exc:
        problems.append(f"{where}: {base}log: {exc}")
        return None
    # Optuna only rejects these when the first trial is sampled, i.e. minutes into a sweep.
    if log and low <= 0:
        problems.append(f"{where}: {key}: low must be > 0 when log is true")
        return None
    if log and step not in (None, 1) and kind == "int":
        problems.append(f"{where}: {base}step: cannot be combined with log (Optuna's log-scaled ints use step 1)")
        return None
    return Param(name, kind, low=low, high=high, step=step, log=log)


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
            values = tuple(_check_value(fields[parent], v, _field_types(TrialConfig)[parent]) for v in values)
        except ValueError as exc:
            problems.append(f"{where}: {key}.{parent}: {exc}")
            return None
        if parent in seen:
            possible = seen[parent].choices if seen[parent].kind == "choice" else None
            if possible is not None and not set(values) & set(possible):
                problems.append(
                    f"{where}: {key}.{parent}: can never hold: {parent} is searched over "
                    f"{list(possible)}, none of {list(values)}"
                )
                return None
        elif getattr(fixed, parent) not in values:
            problems.append(
                f"{where}: {key}.{parent}: can never hold: {parent} is fixed to "
                f"{getattr(fixed, parent)!r} (conditions may only name fixed values or parameters listed above)"
            )
            return None
        when[parent] = values
    return when


# ---------------------------------------------------------------------------------------------
# the whole spec


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """``["budget.epochs=1"]`` -> ``[(["budget", "epochs"], 1)]``; values are read as YAML."""
    parsed, problems = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"--set {item}: expected key.path=value")
            continue
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            problems.append(f"--set {item}: value is not valid YAML")
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
                problems.append(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a mapping")
                break
            node = child
        else:
            node[keys[-1]] = value


def parse_spec(raw: Any, source: Path | str = "<spec>", overrides: list[str] = ()) -> SweepSpec:
    """Validate a spec dict (as read from YAML) plus ``--set`` overrides into a :class:`SweepSpec`."""
    where = str(source)
    problems: list[str] = []
    parsed_overrides = parse_overrides(list(overrides))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError([f"{where}: expected a mapping at the top level, got {type(raw).__name__}"])
    raw = _deep_copy(raw)
    _apply_overrides(raw, parsed_overrides, problems)
    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(f"{where}: {key}: unknown key (known: {', '.join(sorted(_TOP_LEVEL))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name: required, a non-empty string")
        name = "invalid"
    elif not all(c.isalnum() or c in "-_." for c in name):
        problems.append(f"{where}: name: use letters, digits, '-', '_' and '.' only, got {name!r}")

    data = _parse_section(DataConfig, raw.get("data"), "data", problems, where)
    # A path written in the file is relative to the file; one given with --set, to the current folder.
    root_from_cli = any(keys == ["data", "root"] for keys, _ in parsed_overrides)
    spec_dir = Path(source).parent if source and Path(str(source)).suffix in (".yaml", ".yml") else Path(".")
    if not data.root.is_absolute():
        data = dataclasses.replace(data, root=((Path.cwd() if root_from_cli else spec_dir) / data.root).resolve())
    budget = _parse_section(BudgetConfig, raw.get("budget"), "budget", problems, where)
    resources = _parse_section(ResourcesConfig, raw.get("resources"), "resources", problems, where)
    scheduler = _parse_section(SchedulerConfig, raw.get("scheduler"), "scheduler", problems, where)
    fixed = _parse_section(TrialConfig, raw.get("fixed"), "fixed", problems, where)
    tracking = _parse_section(TrackingConfig, raw.get("tracking"), "tracking", problems, where)
    fault = _parse_section(FaultToleranceConfig, raw.get("fault_tolerance"), "fault_tolerance", problems, where)

    search_raw = raw.get("search") or {}
    if not isinstance(search_raw, Mapping):
        problems.append(f"{where}: search: expected a mapping, got {search_raw!r}")
        search_raw = {}
    search = _parse_section(
        SearchConfig, {k: v for k, v in search_raw.items() if k != "space"}, "search", problems, where
    )
    if "space" in search_raw and not search_raw["space"]:
        problems.append(f"{where}: search.space: is empty; list at least one parameter or remove the key")
    space = _parse_space(search_raw.get("space"), fixed, problems, where)
    search = dataclasses.replace(search, space=space)
    if search.sampler == "grid":
        for p in space:
            if p.kind != "choice":
                problems.append(f"{where}: search.space.{p.name}: the grid sampler needs choice parameters")

    trainable = raw.get("trainable", "trainables.image_classifier")
    if not isinstance(trainable, str) or not all(part.isidentifier() for part in trainable.split(".")):
        problems.append(f"{where}: trainable: expected a dotted module path, got {trainable!r}")
    metric = raw.get("metric", "val_acc")
    if metric not in _METRIC_MODES:
        problems.append(f"{where}: metric: {metric!r} is not one of {', '.join(_METRIC_MODES)}")
        metric = "val_acc"
    mode = raw.get("mode", _METRIC_MODES[metric])
    if mode != _METRIC_MODES[metric]:
        problems.append(f"{where}: mode: {metric} is optimised with mode {_METRIC_MODES[metric]}, got {mode!r}")
    max_params = raw.get("max_params", 100_000_000)
    try:  # like every other integer: 1e8 (read as a string by PyYAML) and 5.0e7 are accepted
        max_params = _coerce_scalar(int, max_params)
    except ValueError:
        max_params = 0
    if max_params <= 0:
        problems.append(f"{where}: max_params: expected a positive integer, got {raw.get('max_params')!r}")
        max_params = 100_000_000
    storage = raw.get("storage_path", "ray_results")
    if not isinstance(storage, str) or not storage:
        problems.append(f"{where}: storage_path: expected a path or URI, got {storage!r}")
        storage = "ray_results"
    if scheduler.type == "asha" and scheduler.grace_period > budget.epochs:
        problems.append(
            f"{where}: scheduler.grace_period: {scheduler.grace_period} exceeds budget.epochs {budget.epochs}"
        )
    if budget.max_concurrent > budget.num_samples:
        budget = dataclasses.replace(budget, max_concurrent=budget.num_samples)
    if problems:
        raise SpecError(problems)
    return SweepSpec(
        name=name,
        data=data,
        trainable=trainable,
        metric=metric,
        mode=mode,
        budget=budget,
        resources=resources,
        scheduler=scheduler,
        search=search,
        fixed=fixed,
        tracking=tracking,
        fault_tolerance=fault,
        max_params=max_params,
        storage_path=Path(storage) if "://" not in storage else storage,
        source=Path(source) if source else None,
    )


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read and validate a sweep spec file; raises :class:`SpecError` with one line per problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{path}: invalid YAML: {at}{problem}"]) from None
    return parse_spec(raw, path, overrides)


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
