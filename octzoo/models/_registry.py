"""The model registry: ``register_model``, ``list_models`` and ``create_model``."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..layers import check_alpha
from ._common import IMAGENET_CFG

__all__ = ["register_model", "list_models", "create_model", "model_entry", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder and, for octave models, the default alpha."""

    name: str
    fn: Callable[..., nn.Module]
    default_alpha: float | None  # None: a plain model, which has no alpha argument
    pretrained_cfg: dict  # preprocessing and default head (input_size, mean, std, num_classes, ...)

    @property
    def is_octave(self) -> bool:
        return self.default_alpha is not None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, cfg: dict = IMAGENET_CFG):
    """Register a builder under its function name; an ``alpha`` parameter marks an octave model.

    Use as ``@register_model`` (ImageNet preprocessing) or ``@register_model(cfg=CIFAR_CFG)``.
    """

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        param = inspect.signature(fn).parameters.get("alpha")
        _REGISTRY[name] = ModelEntry(name, fn, None if param is None else param.default, dict(cfg))
        return fn

    return register if fn is None else register(fn)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard such as ``"oct_resnet*"``."""
    names = sorted(_REGISTRY)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``, or a ``ValueError`` that suggests the closest names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (octzoo.list_models() lists all)") from None


def create_model(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    num_classes: int | None = None,
    in_chans: int = 3,
    alpha: float | None = None,
    width_mult: float | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    ``alpha`` (octave models only) defaults to the family's headline value; plain models reject a non-zero
    alpha. ``num_classes=0`` removes the classifier (timm's convention). ``pretrained`` is ``False``, ``True``
    (published weights), or the path of a weights file: octzoo's safetensors or a torchvision state dict.
    ``features_only=True`` returns a module giving one feature map per stage (timm's convention).
    """
    entry = model_entry(name)
    if alpha is not None:
        check_alpha(alpha)
        if not entry.is_octave and alpha != 0:
            raise ValueError(f"{name} is a plain model and takes no alpha; use 'oct_{name}' for alpha={alpha}")
        if entry.is_octave:
            kwargs["alpha"] = alpha
    if width_mult is not None:
        if "width_mult" not in inspect.signature(entry.fn).parameters:
            raise ValueError(f"{name} has no width_mult; only the MobileNets take one")
        kwargs["width_mult"] = width_mult
    model = entry.fn(num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.pretrained_cfg = dict(model.pretrained_cfg, architecture=name)
    model.default_cfg = model.pretrained_cfg  # timm's older name
    if pretrained:
        from ._weights import load_pretrained

        load_pretrained(model, pretrained)
    if features_only:
        from ._features import FeatureListNet

        return FeatureListNet(model, out_indices)
    return model
