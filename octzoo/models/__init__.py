"""Tier 2: the model families, their registry and weight loading (torch and timm only)."""

from . import mobilenet, resnet  # noqa: F401  (registers the families)
from ._pretrained import list_pretrained
from ._registry import create_model, list_models, model_entry, register_model
from ._weights import load_weights
from .mobilenet import MobileNetV1, MobileNetV2
from .resnet import ResNet

__all__ = [
    "create_model",
    "list_models",
    "list_pretrained",
    "load_weights",
    "model_entry",
    "register_model",
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
]

from ._timm import register_in_timm

register_in_timm()
