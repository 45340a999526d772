"""Tier 2: the model families, their registry and weight loading (torch and timm only)."""

from . import mobilenet, resnet  # noqa: F401  (registers the families)
from ._pretrained import (
    PretrainedWeight,
    list_pretrained,
    looks_like_a_file,
    pretrained_weight,
    sha256_of,
    split_tag,
)
from ._registry import WeightSource, create_model, list_models, model_entry, register_model, resolve_weights
from ._weights import load_weights, read_state_dict
from .mobilenet import MobileNetV1, MobileNetV2
from .resnet import ResNet

__all__ = [
    "create_model",
    "list_models",
    "list_pretrained",
    "load_weights",
    "looks_like_a_file",
    "model_entry",
    "pretrained_weight",
    "read_state_dict",
    "register_model",
    "resolve_weights",
    "sha256_of",
    "split_tag",
    "MobileNetV1",
    "MobileNetV2",
    "PretrainedWeight",
    "ResNet",
    "WeightSource",
]

from ._timm import register_in_timm

register_in_timm()
