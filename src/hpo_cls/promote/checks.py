"""Checks on the whole ensemble, made before any retraining starts: the sweeps' members can share one
input pipeline (epoch budget, image size, preprocessing) and the ensemble fits the parameter budget."""

from __future__ import annotations

from typing import Sequence

from hpo_cls.errors import PromoteError
from hpo_cls.promote.retrain import MemberPlan
from hpo_cls.promote.select import SweepRecord
from hpo_cls.promote.settings import sweep_spec_yaml
from hpo_cls.spec import SweepSpec, format_value
from hpo_cls.tracking.backend import TrackingStore

__all__ = ["DEFAULT_MAX_PARAMS", "common_epochs", "check_image_sizes", "sweep_max_params", "check_preprocessing",
           "ensemble_parameters"]

DEFAULT_MAX_PARAMS = SweepSpec.__dataclass_fields__["max_params"].default
# What every member's eval transform depends on; kept torch-free here (hpo_cls.data.transforms has the same).
_PREPROCESSING = ("resize", "mean", "std")


def common_epochs(sweeps: Sequence[SweepRecord], epochs: int | None) -> int:
    """``epochs`` if given, else the sweeps' epoch budget, which must then be one number."""
    if epochs is not None:
        if epochs < 1:
            raise PromoteError(f"{{epochs}} must be >= 1, got {epochs}")
        return epochs
    budgets = {s.sweep_id: int(float(s.params.get("epochs", 0))) for s in sweeps}
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{k}: {v}" for k, v in budgets.items())
        raise PromoteError(f"the sweeps have different epoch budgets ({listed}); pass {{epochs}} N")
    found = next(iter(budgets.values()), 0)
    if found < 1:
        raise PromoteError("the sweep records no epoch budget; pass {epochs} N")
    return found


def check_image_sizes(sweeps: Sequence[SweepRecord], image_size: int) -> None:
    """Every sweep trained at ``image_size`` (the members see the same images in the ensemble)."""
    other = {s.sweep_id: s.params["image_size"] for s in sweeps
             if "image_size" in s.params and int(float(s.params["image_size"])) != image_size}
    if other:
        listed = ", ".join(f"{k}: {v}" for k, v in other.items())
        raise PromoteError(f"the sweeps trained at different image sizes ({sweeps[0].sweep_id}: {image_size}, "
                           f"{listed}); an ensemble feeds all members the same images, so promote them separately")


def sweep_max_params(store: TrackingStore, sweep: SweepRecord) -> int:
    """The sweep's ``max_params``: its parent params, else its logged spec.yaml, else the default."""
    if "max_params" in sweep.params:
        return int(float(sweep.params["max_params"]))
    value = sweep_spec_yaml(store, sweep.run_id).get("max_params", DEFAULT_MAX_PARAMS)
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return DEFAULT_MAX_PARAMS


def check_preprocessing(members: Sequence[MemberPlan]) -> None:
    """Members agree on the eval preprocessing (resize mode, normalisation) they are fed with."""
    first = members[0]
    for m in members[1:]:
        for key in _PREPROCESSING:
            a, b = getattr(first.config, key), getattr(m.config, key)
            if a != b:
                raise PromoteError(f"members differ in {key} ({first.key}: {format_value(a)}, {m.key}: "
                                   f"{format_value(b)}); an ensemble feeds all members the same images: promote "
                                   f"them separately, or retrain all with {{set}} fixed.{key}=...")


def _model_name(member: MemberPlan) -> str:
    cfg = member.config
    return cfg.backbone + ("" if cfg.attention == "none" else f"+{cfg.attention}")


def ensemble_parameters(members: Sequence[MemberPlan], num_classes: int, max_params: int) -> list[int]:
    """Each member's parameter count (meta device, no weights loaded); raises PromoteError naming every
    member's count when their sum is over ``max_params``."""
    from hpo_cls.models.classifier import count_parameters

    counts = [count_parameters(m.config, num_classes) for m in members]
    if sum(counts) > max_params:
        listed = ", ".join(f"{m.key} ({_model_name(m)}) {c:,}" for m, c in zip(members, counts))
        raise PromoteError(f"the ensemble has {sum(counts):,} parameters, over max_params {max_params:,}: {listed}; "
                           "promote fewer or smaller members, or pass {max_params} N")
    return counts
