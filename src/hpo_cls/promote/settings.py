"""What promote's retrains train with: the sweep's data and resources (its parent params and logged
spec.yaml), with ``data.*``, ``resources.*`` and ``fixed.*`` overrides applied and validated like a spec."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import yaml
from hpo_cls.errors import SpecError
from hpo_cls.promote.select import SweepRecord
from hpo_cls.spec import DataConfig, ResourcesConfig, parse_overrides, parse_spec
from hpo_cls.tracking.backend import TrackingStore

__all__ = ["promote_settings", "sweep_spec_yaml"]

_SET_SECTIONS = ("data", "resources", "fixed")


def promote_settings(store: TrackingStore, sweep: SweepRecord,
                     overrides: Sequence[str]) -> tuple[DataConfig, ResourcesConfig, dict[str, Any]]:
    """``(data, resources, fixed overrides)``: data and resources of the sweep (parent params, its
    spec.yaml), with ``data.*|resources.*|fixed.*`` overrides applied and validated like a spec."""
    parsed = parse_overrides(list(overrides))
    bad = [".".join(keys) for keys, _ in parsed if keys[0] not in _SET_SECTIONS or len(keys) != 2]
    if bad:
        raise SpecError([f"{{set}} {k}: promote takes data.<key>, resources.<key> or fixed.<key>" for k in bad])
    spec_raw = sweep_spec_yaml(store, sweep.run_id)
    data = dict(spec_raw.get("data") or {}) if isinstance(spec_raw.get("data"), dict) else {}
    if "data_root" in sweep.params:
        data["root"] = sweep.params["data_root"]
    if "image_size" in sweep.params:
        data["image_size"] = int(sweep.params["image_size"])
    resources = spec_raw.get("resources") if isinstance(spec_raw.get("resources"), dict) else {}
    spec = parse_spec({"name": "promote", "data": data, "resources": resources}, "--set", list(overrides))
    fixed = {keys[1]: value for keys, value in parsed if keys[0] == "fixed"}  # validated by parse_spec
    return spec.data, spec.resources, fixed


def sweep_spec_yaml(store: TrackingStore, run_id: str) -> dict:
    """The sweep's logged spec.yaml as a dict; ``{}`` for a sweep without one (its params suffice)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = store.download_artifact(run_id, "spec.yaml", Path(tmp))
        if path is None:
            return {}
        text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return raw if isinstance(raw, dict) else {}
