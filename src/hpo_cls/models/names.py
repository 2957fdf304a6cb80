"""The names of everything a spec can choose in a model, torch-free so the spec checker imports it.

Adding a backbone is one entry here: ``resnet.py`` and ``wrn.py`` register exactly these names.
"""

from __future__ import annotations

__all__ = ["TORCHVISION_BACKBONES", "WRN_BACKBONES", "BACKBONES", "ATTENTION_KINDS", "ATTENTION_PLACEMENTS",
           "ARCHITECTURE_FIELDS", "architecture_key"]

TORCHVISION_BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
# Pre-activation Wide-ResNets for ~32 px images: name -> (depth, width).
WRN_BACKBONES = {"wrn16_4": (16, 4), "wrn16_8": (16, 8), "wrn28_2": (28, 2), "wrn28_10": (28, 10), "wrn40_2": (40, 2)}
BACKBONES = TORCHVISION_BACKBONES + tuple(WRN_BACKBONES)

ATTENTION_KINDS = ("none", "se", "cbam")
ATTENTION_PLACEMENTS = ("after_layer4", "after_each_stage", "in_every_block")

# TrialConfig fields that change the network itself (its parameters or its forward pass); the others change
# only how it is trained.
ARCHITECTURE_FIELDS = ("backbone", "small_input", "attention", "attention_placement", "attention_reduction",
                       "head_hidden")


def architecture_key(cfg) -> tuple:
    """The values of ``cfg`` (a TrialConfig) that decide its network: equal keys, equal networks."""
    return tuple(getattr(cfg, name) for name in ARCHITECTURE_FIELDS)
