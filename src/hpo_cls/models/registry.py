"""Backbone registry: ``@register_model(name)`` entry points and :func:`create_backbone`."""

from __future__ import annotations

from typing import Callable, NamedTuple

from torch import nn


class Backbone(NamedTuple):
    """A stem and residual stages, each stage's output channels alongside."""

    stem: nn.Module
    stages: list[nn.Sequential]
    channels: list[int]


MODEL_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_model(name: str):
    """Register ``fn(*, pretrained, small_input) -> Backbone`` under ``name``."""

    def decorator(fn):
        if name in MODEL_REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        MODEL_REGISTRY[name] = fn
        return fn

    return decorator


def create_backbone(name: str, *, pretrained: bool = False, small_input: bool = False) -> Backbone:
    """Build the registered backbone ``name``."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown backbone {name!r} (known: {', '.join(MODEL_REGISTRY)})")
    return MODEL_REGISTRY[name](pretrained=pretrained, small_input=small_input)
