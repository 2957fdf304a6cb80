"""Checks made before any training: the data folder and the parameter budget.

Shared by ``validate``, ``train`` and ``sweep`` so that a bad dataset or an oversized model is reported
in seconds, not hours into a sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hpo_cls.data import DatasetSummary, describe_dataset, shown_name
from hpo_cls.errors import DataError, SpecError, echo
from hpo_cls.models.names import architecture_key
from hpo_cls.spec import SweepSpec, TrialConfig, trial_config_from_dict
from hpo_cls.spec.baseline import sweep_problems

__all__ = ["ParameterBudget", "FlopsCount", "Preflight", "run_preflight", "check_tracking_uri", "health_request",
           "check_trainable", "check_pretrained_weights", "deferred_problems", "checked", "check_cluster_resources"]


class ParameterBudget:
    """``config -> parameter count`` of the model a (partial) trial config builds; cached, picklable."""

    def __init__(self, fixed: TrialConfig, num_classes: int):
        self.fixed, self.num_classes = fixed, num_classes
        self._cache: dict[tuple, int] = {}

    def __call__(self, config: dict[str, Any] | TrialConfig) -> int:
        from hpo_cls.models.classifier import count_parameters

        cfg = config if isinstance(config, TrialConfig) else trial_config_from_dict(config, base=self.fixed)
        key = architecture_key(cfg)
        if key not in self._cache:
            self._cache[key] = count_parameters(dataclasses.replace(cfg, pretrained=False), self.num_classes)
        return self._cache[key]


class FlopsCount:
    """``config -> {"flops_g": forward GFLOPs per image}`` for constraints on it; cached, picklable."""

    def __init__(self, fixed: TrialConfig, num_classes: int, image_size: int):
        self.fixed, self.num_classes, self.image_size = fixed, num_classes, image_size
        self._cache: dict[tuple, float] = {}

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        from hpo_cls.models.cost import count_flops

        cfg = trial_config_from_dict(config, base=self.fixed)
        key = architecture_key(cfg)
        if key not in self._cache:
            self._cache[key] = count_flops(cfg, self.num_classes, self.image_size)
        return {"flops_g": self._cache[key]}


@dataclass
class Preflight:
    summary: DatasetSummary | None
    problems: list[str] = field(default_factory=list)
    parameter_counts: dict[str, int] = field(default_factory=dict)  # backbone -> count with fixed values


def run_preflight(spec: SweepSpec, *, scan_images: bool = True, bad_files_are_errors: bool = True,
                  fixed_only: bool = False) -> Preflight:
    """Check the data folder (class folders, unreadable images), every backbone against max_params, and
    (unless ``fixed_only``) what a sweep needs: ASHA's grace period, trial 0's fixed values.

    Backbones checked: the search-space choices, plus ``fixed.backbone`` when a trial can use it (it is
    not searched, or only under a ``when``). ``fixed_only`` (``train``): just ``fixed.backbone``.
    """
    where = str(spec.source or "<spec>")
    problems = [] if fixed_only else sweep_problems(spec)  # ASHA's grace period, trial 0's values
    try:
        summary = describe_dataset(spec.data.root, scan=scan_images)
    except DataError as exc:
        return Preflight(None, [*problems, f"{where}: data.root: {exc}"])
    if bad_files_are_errors and summary.bad_files:
        shown = ", ".join(f"{shown_name(path)} ({reason})" for path, reason in summary.bad_files[:5])
        more = f" and {len(summary.bad_files) - 5} more" if len(summary.bad_files) > 5 else ""
        problems.append(f"{where}: data.root: {len(summary.bad_files)} unreadable image(s): {shown}{more}; "
                        "remove or replace them")
    budget = ParameterBudget(spec.fixed, len(summary.class_to_idx))
    counts = {}
    searched = [] if fixed_only else [p for p in spec.search.space if p.name == "backbone"]
    if not searched or searched[0].when:  # else every trial takes its backbone from the choices
        fixed_count = budget(spec.fixed)
        counts[spec.fixed.backbone] = fixed_count
        if fixed_count > spec.max_params:
            problems.append(f"{where}: fixed.backbone: {spec.fixed.backbone} has {fixed_count:,} parameters, "
                            f"over max_params {spec.max_params:,}")
    for param in searched:
        for i, backbone in enumerate(param.choices):
            count = budget(dataclasses.replace(spec.fixed, backbone=backbone))
            counts[backbone] = count
            if count > spec.max_params:
                problems.append(f"{where}: search.space.backbone.choice[{i}]: {backbone} has {count:,} "
                                f"parameters, over max_params {spec.max_params:,}")
    if not fixed_only:  # the constraints bound the search, not `train`'s one configuration
        problems += _unmeetable_size(spec, budget, counts, where)
    return Preflight(summary, problems, counts)


def _unmeetable_size(spec: SweepSpec, budget: ParameterBudget, counts: dict[str, int], where: str) -> list[str]:
    """A ``params_m`` max below every network the space can build: the searcher would reject every
    configuration it proposes. Bounded from below by each backbone of the space at its smallest (the CIFAR
    stem, no attention, no head layers), whatever else is fixed or searched."""
    limits = [c.max for c in spec.constraints if c.metric == "params_m" and c.max is not None]
    if not limits or not counts:
        return []
    smallest = {backbone: budget(dataclasses.replace(spec.fixed, backbone=backbone, small_input=True,
                                                     attention="none", head_hidden=())) for backbone in counts}
    backbone = min(smallest, key=smallest.get)
    if smallest[backbone] / 1e6 <= min(limits):
        return []
    return [f"{where}: constraints.params_m.max: {min(limits):g} is below every network of the space: the "
            f"smallest, {backbone} without attention or head layers, has {smallest[backbone] / 1e6:.3g} M "
            "parameters"]


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> str | None:
    """A problem line if the store cannot take a sweep's writes, found in seconds: an MLflow server at an
    http(s) URI or a database server that does not answer (or a URI that cannot be parsed), a SQLite store
    that cannot be created or written where its URI points (:func:`_sqlite_store_problem`), a folder
    (``file:``) store. The one pre-flight of the tracking store, for every command that opens one."""
    import urllib.error
    import urllib.request

    from hpo_cls.tracking.uri import NOT_A_VALID_URI, redact_uri, unreachable_reason

    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme == "file" or not scheme and not uri.startswith("databricks"):
        return (f"tracking.uri: {redact_uri(uri)}: a folder (file:) store, which MLflow {_mlflow_version()} no "
                "longer writes; use a SQLite store, e.g. sqlite:///mlflow.db")
    if scheme not in _TRACKING_SCHEMES:
        return (f"tracking.uri: {redact_uri(uri)}: unknown scheme {scheme}:// (MLflow stores: "
                f"{', '.join(s + '://' for s in _TRACKING_SCHEMES)})")
    if uri.startswith("sqlite:///"):
        problem = _sqlite_store_problem(uri[len("sqlite:///"):])
        return f"tracking.uri: {uri}: {problem}" if problem else None
    if not uri.startswith(("http://", "https://")):  # a database server (postgresql, mysql): does it answer?
        reason = unreachable_reason(uri)
        return f"tracking.uri: cannot reach {redact_uri(uri)} ({reason}); start it or fix {{tracking_uri}}" \
            if reason else None
    try:
        request = health_request(uri)
    except ValueError:
        return f"tracking.uri: {redact_uri(uri)} is {NOT_A_VALID_URI}; fix {{tracking_uri}}"
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if response.status == 200:
                return None
            return f"tracking.uri: MLflow server at {redact_uri(uri)} answered {response.status} to its health check"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact_uri(str(getattr(exc, "reason", exc)))
        return (f"tracking.uri: cannot reach an MLflow server at {redact_uri(uri)} ({reason}); "
                "start it or fix {tracking_uri}")


_TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def _mlflow_version() -> str:
    from importlib import metadata

    return metadata.version("mlflow")


def _sqlite_store_problem(path: str, timeout_s: float = 2.0) -> str | None:
    """Why a SQLite store at ``path`` cannot take a sweep's writes, found in seconds: its folder is missing or
    read-only (tried with a real file: MLflow would hang creating the store), the file is not a SQLite
    database, or another process holds its write lock. None when it can."""
    import os
    import sqlite3
    import tempfile

    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist; create it or fix {{tracking_uri}}"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hpo-cls-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"folder {folder} is not writable ({exc.strerror or exc}); use a store in a writable folder"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return "is not a SQLite database; move it away or point {tracking_uri} at another file"
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=timeout_s, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock, taken and given back at once
            db.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return (f"the database is locked by another process (waited {timeout_s:g}s); wait for it to end or "
                    "use another store")
        return f"cannot be opened as a database ({exc}); move it away or use another store"
    except sqlite3.DatabaseError as exc:
        return f"is not a usable SQLite database ({exc}); move it away or use another store"
    return None


def check_trainable(dotted: str) -> str | None:
    """A problem line if the spec's ``trainable`` cannot be imported (the sweep would fail on it later)."""
    from hpo_cls.errors import SweepError
    from hpo_cls.sweep.experiment import resolve_trainable

    try:
        resolve_trainable(dotted)
    except SweepError as exc:
        return str(exc)
    except Exception as exc:  # the user's module itself fails to import: say how, in one line
        return f"trainable: importing {echo(dotted)} fails: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def check_pretrained_weights(spec: SweepSpec, timeout_s: float = 5.0) -> list[str]:
    """One line per torchvision backbone a trial may start from ImageNet weights that are neither in torch
    hub's cache nor downloadable now (a machine without internet). ``validate`` warns rather than refuses:
    the trials may run on machines that hold them, and the shipped seed specs ask for them."""
    import os
    import urllib.request

    from hpo_cls.models.names import TORCHVISION_BACKBONES
    from hpo_cls.models.resnet import imagenet_weights

    space = {p.name: p for p in spec.search.space}
    pretrained = space["pretrained"].choices if "pretrained" in space else (spec.fixed.pretrained,)
    if True not in pretrained:
        return []
    backbones = set(space["backbone"].choices) if "backbone" in space else set()
    if "backbone" not in space or space["backbone"].when:
        backbones.add(spec.fixed.backbone)
    wanted = [(name, *imagenet_weights(name)) for name in sorted(backbones & set(TORCHVISION_BACKBONES))]
    missing = [(name, url, target) for name, url, target in wanted
               if not (os.path.isfile(target) and os.path.getsize(target))]
    if not missing:
        return []
    try:
        with urllib.request.urlopen(urllib.request.Request(missing[0][1], method="HEAD"), timeout=timeout_s):
            return []  # train downloads them
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
    return [f"{spec.source}: fixed.pretrained: ImageNet weights for {name} are not in torch hub's cache and cannot "
            f"be downloaded ({reason}); train would fail here: download {url} and place it at {target}, or set pretrained: false"
            for name, url, target in missing]


def check_cluster_resources(spec: SweepSpec) -> None:
    """A SweepError when no node of the connected Ray cluster can run one trial (``resources.gpu`` on a cluster
    without GPUs, more CPUs than any node has): Tune would wait for such a node forever."""
    import ray

    from hpo_cls.errors import SweepError

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, want in (("GPU", spec.resources.gpu), ("CPU", spec.resources.cpu)):
        most = max((n.get(key, 0.0) for n in nodes), default=0.0)
        if want > most:
            raise SweepError(f"{spec.source}: resources.{key.lower()}: each trial asks for {want:g} {key}, but no "
                             f"node of the Ray cluster has that many (at most {most:g}); lower it or join a "
                             "cluster that has them")


def deferred_problems(spec: SweepSpec) -> list[str]:
    """What ``sweep`` finds only when it starts (the tracking store, the trainable), for ``validate`` to
    report up front. (Missing ImageNet weights are a warning: see :func:`check_pretrained_weights`.)"""
    problems = [check_tracking_uri(spec.tracking.uri), check_trainable(spec.trainable)]
    return [f"{spec.source}: {p}" for p in problems if p]


def health_request(uri: str):
    """The ``GET <uri>/health`` request for an http(s) tracking URI: ``user:password@`` goes into a Basic
    Authorization header, not the host. Raises ValueError for a URI urllib cannot parse (a bad port, an
    unclosed ``[``, no host)."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    port = parts.port  # raises ValueError: not a number, or out of range
    if not parts.hostname:
        raise ValueError("no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port is None else f"{host}:{port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def checked(spec: SweepSpec, *, scan: bool = True, check_tracking: bool = False,
            fixed_only: bool = False) -> Preflight:
    """:func:`run_preflight` (plus the tracking URI with ``check_tracking``); raises SpecError with every
    problem found, or returns the result when the spec is usable."""
    result = run_preflight(spec, scan_images=scan, fixed_only=fixed_only)
    problems = list(result.problems)
    if check_tracking:
        problem = check_tracking_uri(spec.tracking.uri)
        if problem:
            problems.append(f"{spec.source}: {problem}")
    if problems:
        raise SpecError(problems)
    return result
