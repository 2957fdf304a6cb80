"""Classifier head: global average pooling, optional hidden FC layers, dropout, linear."""

from __future__ import annotations

from torch import nn


def build_head(in_features: int, hidden: tuple[int, ...], dropout: float, num_classes: int) -> nn.Sequential:
    """Pool -> [Linear -> BatchNorm1d -> SiLU -> Dropout] per hidden size -> Dropout -> Linear."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for width in hidden:
        # no bias: the BatchNorm right after it has one
        layers += [nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width), nn.SiLU(), nn.Dropout(dropout)]
        in_features = width
    layers += [nn.Dropout(dropout), nn.Linear(in_features, num_classes)]
    return nn.Sequential(*layers)
