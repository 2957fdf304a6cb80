"""torchvision ResNet, ResNeXt and Wide-ResNet backbones, optionally with ImageNet weights."""

from __future__ import annotations

import functools
import os
import pickle
from collections import OrderedDict
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

from hpo_cls.errors import PretrainedWeightsUnavailable

from .names import TORCHVISION_BACKBONES
from .registry import Backbone, register_model


def imagenet_weights(name: str) -> tuple[str, str]:
    """(download URL, path in torch hub's cache) of torchvision backbone ``name``'s ImageNet weights."""
    url = models.get_model_weights(name).DEFAULT.url
    return url, os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def _load_torchvision(name: str, pretrained: bool) -> models.ResNet:
    if not pretrained:
        return models.get_model(name)
    try:
        return models.get_model(name, weights=models.get_model_weights(name).DEFAULT)
    # URLError is an OSError; a broken or truncated cached file raises RuntimeError, EOFError or UnpicklingError
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        url, target = imagenet_weights(name)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PretrainedWeightsUnavailable(
            f"fixed.pretrained: cannot get ImageNet weights {os.path.basename(target)} for {name} ({reason}); "
            f"download {url} and place it at {target}, or set pretrained: false"
        ) from None


def _torchvision_resnet(name: str, *, pretrained: bool, small_input: bool) -> Backbone:
    net = _load_torchvision(name, pretrained)
    if small_input:
        # at ~32px the 7x7/2 conv and max-pool would shrink layer4's map to 1x1
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    stem = nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))
    stages = [net.layer1, net.layer2, net.layer3, net.layer4]
    return Backbone(stem, stages, [64 * 2**i * net.layer1[0].expansion for i in range(4)])


for _name in TORCHVISION_BACKBONES:
    register_model(_name)(functools.partial(_torchvision_resnet, _name))
