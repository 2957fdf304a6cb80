"""What a trial's run logs: its configuration without the keys that do not act under its other values
(``spec.recipe.inactive_keys``, the rule `hpo-cls train`'s printed recipe follows too)."""

from __future__ import annotations

import dataclasses

import pytest

from hpo_cls.spec import TrialConfig
from hpo_cls.spec.recipe import active_trial_params, inactive_keys


@pytest.mark.parametrize("changes, absent, present", [
    ({}, {"attention_placement", "attention_reduction", "mixup_alpha", "cutmix_alpha", "mix_prob", "milestones",
          "gamma", "plateau_patience", "plateau_metric", "head_dropout", "freeze_stem"},
     {"attention", "mix", "momentum", "min_lr", "crop_scale", "lr"}),
    ({"attention": "cbam", "mix": "mixup"}, {"cutmix_alpha"}, {"attention_placement", "mixup_alpha", "mix_prob"}),
    ({"optimizer": "adamw", "lr_scheduler": "plateau"}, {"momentum", "milestones"},
     {"gamma", "plateau_patience", "plateau_metric", "min_lr"}),
    ({"lr_scheduler": "multistep", "resize": "full", "head_hidden": (64,), "freeze_stages": 1},
     {"min_lr", "crop_scale"}, {"milestones", "gamma", "head_dropout", "freeze_stem"}),
])
def test_a_key_that_does_not_act_is_not_logged(changes, absent, present):
    cfg = dataclasses.replace(TrialConfig(), **changes)
    params = active_trial_params(cfg, image_size=224)
    assert not absent & set(params), f"inactive keys logged: {sorted(absent & set(params))}"
    assert present <= set(params)
    assert set(params) | inactive_keys(cfg, 224) == set(TrialConfig.__dataclass_fields__), "every other key is logged"


def test_crop_scale_does_not_act_on_small_images():
    assert "crop_scale" not in active_trial_params(TrialConfig(), image_size=32)


def test_a_sampled_key_stays_though_inactive():
    """The searcher's study holds it: a warm start reads it back from the run."""
    params = active_trial_params(TrialConfig(mix="none", mixup_alpha=0.4), 224, {"mixup_alpha"})
    assert params["mixup_alpha"] == 0.4


def test_an_inactive_attention_placement_builds_the_same_network():
    """The rule says what training does: without attention, the placement changes nothing."""
    from hpo_cls.models.classifier import build_model

    shapes = [[tuple(p.shape) for p in build_model(TrialConfig(attention="none", attention_placement=placement),
                                                   num_classes=3).parameters()]
              for placement in ("after_layer4", "in_every_block")]
    assert shapes[0] == shapes[1]
