"""The per-channel normalisation constants (pixels in [0, 1]): one home for the models' ``pretrained_cfg`` and
the DataModules, which import them from here."""

from __future__ import annotations

from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD"]

# ImageNet: timm's constants, re-exported under their own names (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
# CIFAR-10 training-set statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
