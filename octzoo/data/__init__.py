"""Tier 3 data: the CIFAR-10 and ImageNet DataModules, batch augmentation on tensors and the image decoding
they share (torch, torchvision, Lightning and Pillow)."""

from ._cifar_format import CIFAR10_CLASSES
from ._common import BadImageError, DataError
from .augment import BatchAugment, BatchAutoAugment, cutout, normalize, random_crop_flip
from .cifar import CIFAR10DataModule
from .imagenet import ImageNetDataModule

__all__ = [
    "CIFAR10_CLASSES",
    "BadImageError",
    "BatchAugment",
    "BatchAutoAugment",
    "CIFAR10DataModule",
    "DataError",
    "ImageNetDataModule",
    "cutout",
    "normalize",
    "random_crop_flip",
]
