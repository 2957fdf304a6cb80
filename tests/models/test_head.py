"""Head semantics of the reports: head_hidden layers carry head_dropout, dropout is the one before the
classifier; specs, runs and bundles from before head_dropout mean what they meant; freezing without the stem."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from hpo_cls.models.classifier import build_model
from hpo_cls.models.head import build_head
from hpo_cls.spec import TrialConfig, trial_config_from_dict

REPORT_001_HEAD = [nn.AdaptiveAvgPool2d, nn.Flatten,
                   nn.Linear, nn.BatchNorm1d, nn.SiLU, nn.Dropout,
                   nn.Linear, nn.BatchNorm1d, nn.SiLU, nn.Dropout,
                   nn.Identity, nn.Linear]


def test_report_001_head_is_expressible_exactly():
    """Linear -> BN -> SiLU -> Dropout(0.3) twice, then Linear: no dropout before the classifier."""
    head = build_head(2048, (1024, 512), dropout=0.0, num_classes=100, hidden_dropout=0.3)
    assert [type(m) for m in head] == REPORT_001_HEAD
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [
        (2048, 1024), (1024, 512), (512, 100)]
    head.eval()
    x = torch.randn(2, 2048, 3, 3)
    assert head(x).shape == (2, 100)


def test_unset_head_dropout_means_what_dropout_meant_before():
    old = trial_config_from_dict({"head_hidden": [64], "dropout": 0.3})  # a spec or MLflow run from before
    assert old.head_dropout is None and old.hidden_dropout == 0.3
    head = build_model(dataclasses.replace(old, backbone="wrn16_4"), 3).head
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.3, 0.3]  # after the layer and before the classifier


@pytest.mark.parametrize("dropout,hidden_dropout", [(0.0, None), (0.3, None), (0.0, 0.3), (0.5, 0.0)])
def test_head_state_dict_keys_do_not_move(dropout, hidden_dropout):
    """Bundles saved before head_dropout load: every parameter sits at the index it always had."""
    head = build_head(16, (8,), dropout, 3, hidden_dropout)
    assert set(head.state_dict()) == {"2.weight", "3.weight", "3.bias", "3.running_mean", "3.running_var",
                                      "3.num_batches_tracked", "7.weight", "7.bias"}


def test_freeze_without_the_stem():
    """Report 002 froze layer1 and layer2 only."""
    cfg = TrialConfig(backbone="resnet18", small_input=True, freeze_stages=2)
    for freeze_stem, stem_trains in ((True, False), (False, True)):
        model = build_model(dataclasses.replace(cfg, freeze_stem=freeze_stem), 3).train()
        grads = {name: any(p.requires_grad for p in model.features.get_submodule(name).parameters())
                 for name in ("stem", "layer1", "layer2", "layer3")}
        assert grads == {"stem": stem_trains, "layer1": False, "layer2": False, "layer3": True}
        assert model.features.stem.bn1.training is stem_trains
