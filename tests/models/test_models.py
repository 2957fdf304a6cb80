"""Model zoo: every backbone trains, attention sits where the config says, freezing, counting, weights."""

import dataclasses
import os
import urllib.request

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from hpo_cls.errors import PretrainedWeightsUnavailable
from hpo_cls.models.attention import CBAM, SqueezeExcitation
from hpo_cls.models.classifier import build_model, count_parameters
from hpo_cls.models.names import BACKBONES
from hpo_cls.models.registry import MODEL_REGISTRY
from hpo_cls.spec import TrialConfig

NUM_CLASSES = 5
GRID_BACKBONES = ("resnet18", "resnet50", "resnext50_32x4d", "wrn16_4")
ATTENTION_CASES = [("none", "after_layer4")] + [
    (a, p) for a in ("se", "cbam") for p in ("after_layer4", "after_each_stage", "in_every_block")
]
# Every backbone with every attention placement; the big torchvision models use the standard stem at
# 32 px (1x1 maps at layer4) so the whole grid stays cheap on a CPU.
CASES = [(b, a, p, b in GRID_BACKBONES) for b in BACKBONES for a, p in ATTENTION_CASES]


def _meta_model(**kw):
    with torch.device("meta"):
        return build_model(TrialConfig(**kw), NUM_CLASSES)


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_registry_holds_exactly_the_configurable_backbones():
    assert set(MODEL_REGISTRY) == set(BACKBONES)


@pytest.mark.parametrize(
    "backbone,attention,placement,small_input", CASES, ids=[f"{b}-{a}-{p}" for b, a, p, _ in CASES]
)
def test_forward_backward(backbone, attention, placement, small_input):
    torch.manual_seed(0)
    cfg = TrialConfig(backbone=backbone, attention=attention, attention_placement=placement, small_input=small_input)
    model = build_model(cfg, NUM_CLASSES).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, NUM_CLASSES)
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_cbam_matches_paper_equations():
    torch.manual_seed(0)
    cbam = CBAM(8, reduction=2)
    x = torch.randn(2, 8, 5, 6)
    w0, w1, w_spatial = cbam.channel.mlp[0].weight, cbam.channel.mlp[2].weight, cbam.spatial.conv.weight

    def mlp(v):  # shared by both poolings
        return F.conv2d(F.relu(F.conv2d(v, w0)), w1)

    mc = torch.sigmoid(mlp(F.avg_pool2d(x, x.shape[2:])) + mlp(F.max_pool2d(x, x.shape[2:])))
    f1 = mc * x
    pooled = torch.cat([f1.mean(1, keepdim=True), f1.max(1, keepdim=True).values], 1)
    ms = torch.sigmoid(F.conv2d(pooled, w_spatial, padding=3))
    torch.testing.assert_close(cbam(x), ms * f1)


def test_cbam_channel_attention_uses_max_pooling():
    torch.manual_seed(0)
    cbam = CBAM(8, reduction=2)
    x = torch.zeros(1, 8, 6, 6)
    x[0, :, 2, 3] = torch.linspace(5.0, 40.0, 8)  # max differs from mean by a factor of 36
    avg_only = x * torch.sigmoid(2 * cbam.channel.mlp(x.mean((2, 3), keepdim=True)))
    assert not torch.allclose(cbam.channel(x), avg_only, atol=1e-3)


def test_squeeze_excitation_scales_channels_by_gate():
    torch.manual_seed(0)
    se = SqueezeExcitation(8, reduction=4)
    x = torch.randn(2, 8, 4, 4)
    gate = torch.sigmoid(se.fc2(F.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), gate * x)
    assert se.fc1.out_channels == 2


@pytest.mark.parametrize(
    "backbone,placement,expected",
    [
        ("resnet50", "in_every_block", 16),
        ("resnet18", "in_every_block", 8),
        ("wrn28_10", "in_every_block", 12),
        ("resnet50", "after_each_stage", 4),
        ("wrn16_4", "after_each_stage", 3),
        ("resnet50", "after_layer4", 1),
    ],
)
@pytest.mark.parametrize("attention,cls", [("cbam", CBAM), ("se", SqueezeExcitation)])
def test_attention_module_count(backbone, placement, expected, attention, cls):
    assert _count(_meta_model(backbone=backbone, attention=attention, attention_placement=placement), cls) == expected


def test_no_attention_ignores_placement():
    model = _meta_model(backbone="resnet50", attention="none", attention_placement="in_every_block")
    assert _count(model, CBAM) + _count(model, SqueezeExcitation) == 0


def test_in_every_block_attention_acts_on_residual_branch_before_addition():
    model = _meta_model(backbone="resnet50", attention="cbam", attention_placement="in_every_block")
    block = model.features.layer2[0]
    assert isinstance(block.bn3[0], nn.BatchNorm2d) and isinstance(block.bn3[1], CBAM)
    assert block.bn3[1].channel.mlp[0].in_channels == 512
    wrn_block = _meta_model(backbone="wrn16_4", attention="se", attention_placement="in_every_block").features.layer3[0]
    assert isinstance(wrn_block.conv2[1], SqueezeExcitation)


def test_freeze_stages_freezes_stem_and_first_stages_and_their_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_model(TrialConfig(backbone="resnet18", small_input=True, freeze_stages=2), NUM_CLASSES)
    for name, p in model.named_parameters():
        frozen = name.startswith(("features.stem.", "features.layer1.", "features.layer2."))
        assert p.requires_grad is not frozen, name
    model.eval().train()
    stats = {n: b.clone() for n, b in model.named_buffers() if "running_mean" in n}
    model(torch.randn(4, 3, 32, 32))
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            frozen = name.startswith(("features.stem.", "features.layer1.", "features.layer2."))
            assert m.training is not frozen, name
            assert torch.equal(stats[f"{name}.running_mean"], m.running_mean) is frozen, name


def test_attention_in_frozen_stages_stays_trainable():
    model = _meta_model(backbone="resnet18", attention="se", attention_placement="in_every_block", freeze_stages=4)
    for name, p in model.named_parameters():
        assert p.requires_grad is (".bn2.1." in name or name.startswith("head.")), name


def test_freeze_beyond_wrn_stages_freezes_whole_backbone():
    model = _meta_model(backbone="wrn16_4", freeze_stages=4)
    assert all(p.requires_grad is name.startswith("head.") for name, p in model.named_parameters())


def test_head_hidden_layers():
    head = _meta_model(backbone="resnet50", head_hidden=(32, 16), dropout=0.3).head
    linears = [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)]
    assert linears == [(2048, 32), (32, 16), (16, NUM_CLASSES)]
    assert _count(head, nn.BatchNorm1d) == 2 and _count(head, nn.SiLU) == 2
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.3] * 3


@pytest.mark.parametrize("backbone,before", [("resnet18", "layer4"), ("wrn16_4", "layer3")])
def test_dropout_l3_l4_sits_before_last_stage(backbone, before):
    names = list(_meta_model(backbone=backbone, dropout_l3_l4=0.5).features._modules)
    assert names[names.index("dropout") + 1] == before
    assert "dropout" not in _meta_model(backbone=backbone).features._modules


def test_dropout_l3_l4_is_active_only_in_training():
    torch.manual_seed(0)
    model = build_model(TrialConfig(backbone="resnet18", small_input=True, dropout_l3_l4=0.5), NUM_CLASSES)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize(
    "cfg",
    [
        TrialConfig(backbone="resnet18", attention="se", attention_placement="after_each_stage", head_hidden=(64,)),
        TrialConfig(backbone="resnet50", small_input=True, attention="cbam", attention_placement="in_every_block"),
        TrialConfig(backbone="wrn16_4", attention="cbam", attention_placement="after_layer4", freeze_stages=2),
    ],
    ids=["resnet18-se", "resnet50-cbam", "wrn16_4-frozen"],
)
def test_count_parameters_matches_built_model(cfg):
    assert count_parameters(cfg, NUM_CLASSES) == sum(p.numel() for p in build_model(cfg, NUM_CLASSES).parameters())


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if not b.startswith("wrn")])
def test_count_parameters_matches_torchvision_published_size(backbone):
    expected = torchvision.models.get_model_weights(backbone).DEFAULT.meta["num_params"]
    assert count_parameters(TrialConfig(backbone=backbone), 1000) == expected


def test_parameter_budget_of_100m():
    assert count_parameters(TrialConfig(backbone="wide_resnet101_2"), 10) > 100_000_000
    assert count_parameters(TrialConfig(backbone="resnet50"), 10) < 100_000_000


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, and downloads that fail fast even on a machine with internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens there: connection refused
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen reads the proxy settings afresh
    return tmp_path / "hub" / "checkpoints"


def test_pretrained_without_cached_weights_names_the_file_to_place(offline_torch_home):
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_model(TrialConfig(backbone="resnet18", pretrained=True), NUM_CLASSES)
    message = str(info.value)
    assert str(offline_torch_home / "resnet18-f37072fd.pth") in message
    assert "pretrained: false" in message


def test_pretrained_loads_weights_from_torch_hub_cache(offline_torch_home):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    state = {k: torch.rand_like(v) if v.is_floating_point() else v for k, v in state.items()}
    offline_torch_home.mkdir(parents=True)
    torch.save(state, offline_torch_home / "resnet18-f37072fd.pth")
    cfg = TrialConfig(backbone="resnet18", pretrained=True, attention="cbam", attention_placement="in_every_block")
    features = build_model(cfg, NUM_CLASSES).features
    torch.testing.assert_close(features.stem.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(features.layer4[1].bn2[0].weight, state["layer4.1.bn2.weight"])
    torch.testing.assert_close(features.layer3[0].downsample[1].running_var, state["layer3.0.downsample.1.running_var"])
    small = build_model(dataclasses.replace(cfg, small_input=True), NUM_CLASSES).features
    assert small.stem.conv1.kernel_size == (3, 3) and isinstance(small.stem.maxpool, nn.Identity)
    torch.testing.assert_close(small.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_count_parameters_with_pretrained_does_not_fetch_weights(offline_torch_home):
    assert count_parameters(TrialConfig(backbone="resnet50", pretrained=True), NUM_CLASSES) > 0
    assert not offline_torch_home.exists() or not os.listdir(offline_torch_home)


def test_wrn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="no ImageNet weights for wrn28_10"):
        build_model(TrialConfig(backbone="wrn28_10", pretrained=True), NUM_CLASSES)
