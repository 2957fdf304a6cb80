"""Channel/spatial attention modules: SE (Hu et al. 2018) and CBAM (Woo et al. 2018).

Both take ``(channels, reduction)``; the hidden width is ``max(channels // reduction, 1)``.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import functional as F


class SqueezeExcitation(torchvision.ops.SqueezeExcitation):
    """SE: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``, torchvision's module sized by a reduction ratio."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__(channels, max(channels // reduction, 1))


class ChannelAttention(nn.Module):
    """CBAM's ``Mc(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``, applied as ``Mc(F) * F``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        # bias-free, as W0 and W1 in the paper's equation
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False)
        )

    def forward(self, x):
        return x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
    """CBAM's ``Ms(F) = sigmoid(conv7x7([mean_c(F); max_c(F)]))``, applied as ``Ms(F) * F``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Channel attention, then spatial attention (the paper's best ordering)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x):
        return self.spatial(self.channel(x))
