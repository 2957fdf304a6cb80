"""Assemble a trial's classifier from its config: backbone, attention, dropout, head, frozen stages."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from hpo_cls.spec import TrialConfig

from . import resnet, wrn  # noqa: F401  (importing them registers the backbones)
from .attention import CBAM, SqueezeExcitation
from .head import build_head
from .names import ATTENTION_KINDS
from .registry import create_backbone
from .wrn import PreActBlock

_ATTENTION = {"none": None, "se": SqueezeExcitation, "cbam": CBAM}
if set(_ATTENTION) != set(ATTENTION_KINDS):  # a kind named in names.py without a module, or the reverse
    raise ImportError(f"attention modules {sorted(_ATTENTION)} differ from names.ATTENTION_KINDS")
# the last layer of each block's residual branch: attention wraps it, so it acts right before the addition
_BRANCH_END = {BasicBlock: "bn2", Bottleneck: "bn3", PreActBlock: "conv2"}


class ImageClassifier(nn.Module):
    """``head(features(x))``; BatchNorms of the frozen parts of ``features`` stay in eval mode."""

    def __init__(self, features: nn.Sequential, head: nn.Module, frozen: tuple[str, ...] = ()):
        super().__init__()
        self.features = features
        self.head = head
        self.frozen = frozen
        self.train()

    def forward(self, x):
        return self.head(self.features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen:
            for m in self.features.get_submodule(name).modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self


def build_model(cfg: TrialConfig, num_classes: int) -> ImageClassifier:
    """The classifier ``cfg`` describes, giving logits ``[N, num_classes]``.

    ``features`` holds ``stem``, ``layer1``..``layerN`` (N = 3 for WRNs), attention modules named
    ``layer<i>_attn`` and ``dropout`` before the last stage. ``freeze_stages=k`` freezes the first k stages
    and, with ``freeze_stem`` (the default), the stem; attention inserted into them is new, so it stays
    trainable.
    """
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, small_input=cfg.small_input)
    n_stages = len(backbone.stages)
    n_frozen = min(cfg.freeze_stages, n_stages)
    frozen = tuple(f"layer{i}" for i in range(1, n_frozen + 1))
    if n_frozen and cfg.freeze_stem:
        frozen = ("stem", *frozen)
    parts = {"stem": backbone.stem, **{f"layer{i}": s for i, s in enumerate(backbone.stages, 1)}}
    for name in frozen:
        parts[name].requires_grad_(False)

    attention = _ATTENTION[cfg.attention]
    placement = cfg.attention_placement if attention else None
    layers = [("stem", backbone.stem)]
    for i, (stage, channels) in enumerate(zip(backbone.stages, backbone.channels), 1):
        if placement == "in_every_block":
            for block in stage:
                end = _BRANCH_END.get(type(block))
                if end:
                    branch_end = getattr(block, end)
                    setattr(block, end, nn.Sequential(branch_end, attention(channels, cfg.attention_reduction)))
        if i == n_stages and cfg.dropout_l3_l4 > 0:
            layers.append(("dropout", nn.Dropout(cfg.dropout_l3_l4)))
        layers.append((f"layer{i}", stage))
        if placement == "after_each_stage" or (placement == "after_layer4" and i == n_stages):
            layers.append((f"layer{i}_attn", attention(channels, cfg.attention_reduction)))
    head = build_head(backbone.channels[-1], cfg.head_hidden, cfg.dropout, num_classes, cfg.head_dropout)
    return ImageClassifier(nn.Sequential(OrderedDict(layers)), head, frozen)


def count_parameters(cfg: TrialConfig, num_classes: int) -> int:
    """Parameters of ``build_model(cfg, num_classes)``, counted on the meta device without loading weights."""
    with torch.device("meta"):
        model = build_model(dataclasses.replace(cfg, pretrained=False), num_classes)
    return sum(p.numel() for p in model.parameters())
