"""A spec's training recipe in words: the configuration ``hpo-cls train`` runs, grouped the way a report
lists it, with the keys that change nothing under the other values left out and defaults marked."""

from __future__ import annotations

import dataclasses
from typing import Any

from hpo_cls.models.names import WRN_BACKBONES
from hpo_cls.spec.schema import SweepSpec, TrialConfig, flatten_trial_config, format_value

__all__ = ["RECIPE_GROUPS", "RUNTIME_KEYS", "ungrouped_keys", "inactive_keys", "active_trial_params", "recipe_lines"]

# Every TrialConfig key, once, in the order a recipe reads.
RECIPE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("backbone", "pretrained", "small_input", "attention", "attention_placement", "attention_reduction",
               "head_hidden", "head_dropout", "dropout", "dropout_l3_l4", "freeze_stages", "freeze_stem")),
    ("input", ("resize", "crop_scale", "hflip", "vflip", "rotation", "color_jitter", "hue", "augment_one_of",
               "trivial_augment", "random_erasing", "mean", "std")),
    ("loss", ("label_smoothing", "mix", "mixup_alpha", "cutmix_alpha", "mix_prob")),
    ("optimizer", ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "grad_clip", "ema_decay")),
    ("schedule", ("lr_scheduler", "warmup_epochs", "milestones", "gamma", "plateau_metric", "plateau_patience",
                  "min_lr")),
    ("runtime", ("seed", "amp", "channels_last", "compile")),
)
# How a run executes, not what it trains: no report names them, so recipes may leave them to defaults.
RUNTIME_KEYS = frozenset(dict(RECIPE_GROUPS)["runtime"])


def ungrouped_keys() -> tuple[str, ...]:
    """TrialConfig keys missing from :data:`RECIPE_GROUPS` (shown as "other"; a test keeps this empty)."""
    grouped = {k for _, keys in RECIPE_GROUPS for k in keys}
    return tuple(f.name for f in dataclasses.fields(TrialConfig) if f.name not in grouped)


def inactive_keys(cfg: TrialConfig, image_size: int) -> set[str]:
    """Keys whose value changes nothing given the others (e.g. ``momentum`` with Adam)."""
    off: set[str] = set()
    if cfg.attention == "none":
        off |= {"attention_placement", "attention_reduction"}
    if not cfg.head_hidden:
        off.add("head_dropout")
    if cfg.backbone in WRN_BACKBONES:  # always the CIFAR stem, never ImageNet weights
        off.add("small_input")
    if cfg.freeze_stages == 0:
        off.add("freeze_stem")
    if cfg.resize == "full" or image_size <= 64:
        off.add("crop_scale")
    off |= {"mixup_alpha", "cutmix_alpha", "mix_prob"} - {
        "none": set(), "mixup": {"mixup_alpha", "mix_prob"}, "cutmix": {"cutmix_alpha", "mix_prob"},
        "both": {"mixup_alpha", "cutmix_alpha", "mix_prob"}}[cfg.mix]
    if cfg.optimizer != "sgd":
        off.add("momentum")
    schedule = {"cosine": {"min_lr"}, "multistep": {"milestones", "gamma"},
                "plateau": {"gamma", "plateau_metric", "plateau_patience", "min_lr"}, "none": set()}
    off |= {"milestones", "gamma", "plateau_metric", "plateau_patience", "min_lr"} - schedule[cfg.lr_scheduler]
    return off


def active_trial_params(cfg: TrialConfig, image_size: int, sampled: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """:func:`flatten_trial_config` without the :func:`inactive_keys`: what a trial's MLflow run logs, so the UI
    never shows a value that did not act (``attention_placement`` without attention). A key the searcher
    ``sampled`` stays: the study holds its value, and warm starts read it back from the run."""
    dropped = inactive_keys(cfg, image_size) - set(sampled)
    return {k: v for k, v in flatten_trial_config(cfg).items() if k not in dropped}


def _shown(key: str, value: Any, cfg: TrialConfig, epochs: int) -> str:
    text = f"{key}={str(value).lower() if isinstance(value, bool) else format_value(value)}"
    if key == "milestones":  # the report says "at epochs 60, 90"; the spec holds fractions of the budget
        text += " (epochs " + ", ".join(str(max(1, round(f * epochs))) for f in value) + ")"
    if key == "head_dropout" and value is None:
        text += f" (= dropout {cfg.dropout:g})"
    return text


def recipe_lines(spec: SweepSpec, width: int = 110) -> list[str]:
    """The configuration ``train`` runs: data, budget and the trial keys by group; ``*`` marks a value not
    written in the spec (a default)."""
    cfg, data = spec.fixed, spec.data
    off = inactive_keys(cfg, data.image_size)
    explicit = spec.fixed_keys
    groups = [("data", [f"root={data.root}", f"image_size={data.image_size}",
                        f"balanced_sampling={str(data.balanced_sampling).lower()}", f"workers={data.workers}"]),
              ("budget", [f"epochs={spec.budget.epochs}"])]
    for group, keys in (*RECIPE_GROUPS, ("other", ungrouped_keys())):
        items = [_shown(k, getattr(cfg, k), cfg, spec.budget.epochs) + ("" if k in explicit else "*")
                 for k in keys if k not in off]
        if items:
            groups.append((group, items))
    lines = []
    for group, items in groups:
        line = f"  {group:<10}"
        for item in items:
            if len(line) + len(item) + 2 > width and line.strip() != group:
                lines.append(line.rstrip())
                line = " " * 12
            line += item + "  "
        lines.append(line.rstrip())
    return lines
