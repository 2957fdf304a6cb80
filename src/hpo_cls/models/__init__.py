"""Model zoo: ResNet-family and Wide-ResNet classifiers with optional SE/CBAM attention."""

from . import resnet as _resnet, wrn as _wrn  # noqa: F401  (register the backbones)
from .attention import CBAM, SqueezeExcitation
from .classifier import ImageClassifier, build_model, count_parameters
from .registry import MODEL_REGISTRY, Backbone, create_backbone, register_model
from .resnet import PretrainedWeightsUnavailable

__all__ = [
    "build_model",
    "count_parameters",
    "ImageClassifier",
    "CBAM",
    "SqueezeExcitation",
    "MODEL_REGISTRY",
    "register_model",
    "create_backbone",
    "Backbone",
    "PretrainedWeightsUnavailable",
]
