"""Pre-activation Wide-ResNets for 32px images (Zagoruyko & Komodakis 2016), e.g. WRN-28-10."""

from __future__ import annotations

import functools

from torch import nn
from torch.nn import functional as F

from .names import WRN_BACKBONES
from .registry import Backbone, register_model


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice, plus the identity (or a 1x1 conv shortcut when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        # as in the paper's code, a projection shortcut sees the pre-activated input
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


def _wide_resnet(name: str, depth: int, width: int, *, pretrained: bool, small_input: bool) -> Backbone:
    """WRN-depth-width; always the 3x3 CIFAR stem, so ``small_input`` changes nothing."""
    if pretrained:
        raise ValueError(f"no ImageNet weights for {name}: WRNs train from scratch; set pretrained: false")
    blocks_per_stage = (depth - 4) // 6
    channels = [16 * width, 32 * width, 64 * width]
    stem = _conv3x3(3, 16)
    stages, in_channels = [], 16
    for i, out_channels in enumerate(channels):
        stride = 1 if i == 0 else 2
        stage = [PreActBlock(in_channels if j == 0 else out_channels, out_channels, stride if j == 0 else 1)
                 for j in range(blocks_per_stage)]
        stages.append(nn.Sequential(*stage))
        in_channels = out_channels
    # pre-activation blocks leave the last output un-normalised
    stages[-1].extend([nn.BatchNorm2d(channels[-1]), nn.ReLU()])
    for module in [stem, *stages]:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return Backbone(stem, stages, channels)


for _name, (_depth, _width) in WRN_BACKBONES.items():
    register_model(_name)(functools.partial(_wide_resnet, _name, _depth, _width))
