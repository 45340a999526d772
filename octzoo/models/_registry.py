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
from ._pretrained import (
    PretrainedWeight,
    default_weight,
    list_pretrained,
    looks_like_a_file,
    pretrained_weight,
    split_tag,
    torchvision_state_dict,
    weight_file,
)

__all__ = [
    "ModelEntry",
    "WeightSource",
    "create_model",
    "list_models",
    "model_entry",
    "register_model",
    "resolve_weights",
]


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


@dataclass(frozen=True)
class WeightSource:
    """What ``create_model`` builds and loads, as ``resolve_weights`` finds it in ``name`` and ``pretrained``.

    ``weight`` is the published weight the name's tag or ``pretrained`` selects: its architecture arguments,
    head and preprocessing apply whether it is loaded or not. ``load`` is what is loaded: that weight,
    ``"torchvision"`` (torchvision's ImageNet weights), a weights file, or ``None`` (a fresh model).
    """

    arch: str
    weight: PretrainedWeight | None = None
    load: PretrainedWeight | str | os.PathLike | None = None

    @property
    def kind(self) -> str | None:
        """``"published"``, ``"torchvision"``, ``"file"`` or ``None`` (nothing to load)."""
        if self.load is None:
            return None
        if isinstance(self.load, PretrainedWeight):
            return "published"
        return "torchvision" if self.load == "torchvision" else "file"


def resolve_weights(
    name: str, pretrained: bool | str | os.PathLike = False, alpha: float | None = None, kwargs: dict | None = None
) -> WeightSource:
    """The weights ``create_model(name, pretrained, alpha=alpha, **kwargs)`` loads (see its docstring).

    Refuses a tag of another model, ``pretrained=True`` where the architecture has no published weight at its
    default alpha, an ``alpha`` or builder argument that contradicts the selected weight's, and torchvision's
    weights for an octave model.
    """
    arch, tag = split_tag(name)
    entry = model_entry(arch)
    weight = pretrained_weight(name) if tag else None
    source: str | os.PathLike | None = None  # a file or "torchvision"
    if isinstance(pretrained, str) and pretrained != "torchvision" and not looks_like_a_file(pretrained):
        chosen = pretrained_weight(pretrained if "." in pretrained else f"{arch}.{pretrained}")
        if chosen.architecture != arch or (weight is not None and chosen != weight):
            raise ValueError(f"pretrained={pretrained!r} is a weight of another model than {name!r}")
        weight = chosen
    elif pretrained is True and weight is None:
        weight = default_weight(arch, entry.default_alpha)
        if weight is None:
            raise _no_default_weight(arch, entry.default_alpha)
    elif pretrained and pretrained is not True:
        source = pretrained
        if source == "torchvision" and weight is not None:
            raise ValueError(
                f"{name!r} names octzoo's published weight {weight.name} and pretrained='torchvision' names "
                f"torchvision's: pass one of them ({arch!r} with pretrained='torchvision', or {name!r} with "
                "pretrained=True)"
            )
    if weight is not None:
        for key, value in weight.model_kwargs.items():
            given = alpha if key == "alpha" else (kwargs or {}).get(key)
            if given is not None and given != value:
                raise ValueError(f"{key}={given} contradicts {weight.name}, which has {key}={value}")
    if source == "torchvision" and entry.is_octave:
        raise ValueError(f"torchvision has no weights for the octave model {arch}; use {arch.removeprefix('oct_')}")
    # a file loads into the architecture and preprocessing of the name's tag (timm's pretrained_cfg_overlay file)
    load = (source if source is not None else weight) if pretrained else None
    return WeightSource(arch, weight, load)


def _no_default_weight(arch: str, default_alpha: float | None) -> ValueError:
    own = list_pretrained(f"{arch}.*")
    return ValueError(
        f"no published weights for {arch} at its default alpha ({default_alpha}); "
        + (f"published: {', '.join(own)}; " if own else "")
        + "pass a tag, a weights file (pretrained='path/to/file') or, for plain ImageNet models, "
        "pretrained='torchvision'"
    )


def _builder_kwargs(entry: ModelEntry, weight: PretrainedWeight | None, alpha: float | None, kwargs: dict) -> dict:
    """The builder's arguments: the weight's architecture arguments, then ``alpha``, validated here once."""
    kwargs = dict(kwargs)
    if weight is not None:
        kwargs.update({k: v for k, v in weight.model_kwargs.items() if k != "alpha"})
        alpha = weight.model_kwargs.get("alpha", alpha)
    if alpha is not None:
        check_alpha(alpha)
        if not entry.is_octave and alpha != 0:
            raise ValueError(
                f"{entry.name} is a plain model and takes no alpha; use 'oct_{entry.name}' for alpha={alpha}"
            )
        if entry.is_octave:
            kwargs["alpha"] = alpha
    return kwargs


def create_model(
    name: str,
    pretrained: bool | str | os.PathLike = False,
    num_classes: int | None = None,
    in_chans: int = 3,
    alpha: float | None = None,
    width_mult: float | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    feature_cls: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    ``name`` is an architecture (``"oct_resnet20"``) or a published weight ``"arch.tag"``
    (``"oct_resnet20.a250_c10"``), whose architecture arguments (alpha) it takes; an explicit ``alpha`` that
    contradicts the tag is an error. ``alpha`` (octave models only) defaults to the family's headline value;
    plain models reject a non-zero alpha. ``num_classes=0`` removes the classifier (timm's convention).

    ``pretrained``: ``False``; ``True`` (the tag in ``name``, else the architecture's published weight at its
    default alpha); a tag (``"a250_c10"`` or ``"oct_resnet20.a250_c10"``); ``"torchvision"`` (torchvision's
    ImageNet weights, plain ResNets and mobilenet_v2); or the path of a weights file (octzoo's safetensors, a
    torchvision state dict or an octzoo training checkpoint). Published files are checked against their sha256.
    A ``num_classes`` or ``in_chans`` other than the weights' gets a fresh head or an adapted stem (logged).
    A file with a tagged ``name`` loads into the tag's architecture, head and preprocessing (as timm's
    ``pretrained_cfg_overlay=dict(file=...)``); ``pretrained_cfg`` then names the file and drops the published
    file's checksum and metrics. ``resolve_weights`` says which weights these arguments select. ``cache_dir``: where
    published weights not in the package are downloaded (default: ``$OCTZOO_CACHE_DIR`` or the user cache).

    ``features_only=True`` returns timm's feature wrapper: one plain map per level of ``out_indices`` (timm's
    convention; octave stages merged), with a ``FeatureInfo`` (``.channels()``, ``.reduction()``).
    """
    source = resolve_weights(name, pretrained, alpha, kwargs)
    entry, weight = model_entry(source.arch), source.weight
    kwargs = _builder_kwargs(entry, weight, alpha, kwargs)
    if width_mult is not None:
        kwargs["width_mult"] = width_mult
    if weight is not None and num_classes is None:
        num_classes = weight.num_classes
    model = entry.fn(num_classes=num_classes, in_chans=in_chans, **kwargs)
    cfg = dict(model.pretrained_cfg, architecture=source.arch)
    if weight is not None:
        cfg.update(weight.pretrained_cfg())  # num_classes: the weights' (timm's meaning), not the new head's
        if source.kind == "file":  # the tag's architecture and preprocessing, another file's numbers
            cfg.update(file=str(source.load))
            cfg.pop("sha256"), cfg.pop("metrics")
    model.pretrained_cfg = model.default_cfg = cfg  # default_cfg: timm's older name
    _load(model, source, cache_dir)
    if features_only:
        return _features_model(model, out_indices, feature_cls)
    return model


def _load(model: nn.Module, source: WeightSource, cache_dir: str | os.PathLike | None = None) -> None:
    """Load what ``source`` names into ``model`` (nothing for a fresh model); torchvision's go into its cfg."""
    from ._weights import load_weights

    if source.kind == "published":
        load_weights(model, weight_file(source.load, cache_dir))
    elif source.kind == "torchvision":
        state, tv_weights = torchvision_state_dict(source.arch)
        load_weights(model, state)
        model.pretrained_cfg.update(tag="torchvision", file=tv_weights.url, dataset="ImageNet-1k")
    elif source.kind == "file":
        load_weights(model, source.load)


def _features_model(model: nn.Module, out_indices=None, feature_cls: str | None = None) -> nn.Module:
    """timm's feature wrapper over ``model.forward_intermediates``: a list of plain NCHW maps, one per level of
    ``out_indices`` (all levels by default), and a ``feature_info`` of timm's ``FeatureInfo`` type."""
    from timm.models._features import FeatureGetterNet  # timm exports it only there

    if feature_cls not in (None, "getter"):
        raise ValueError(
            f"feature_cls={feature_cls!r}: octzoo models give their features through forward_intermediates, "
            "each octave stage merged into one map: leave feature_cls out (or pass 'getter')"
        )
    levels = len(model.feature_info)
    out_indices = tuple(range(levels)) if out_indices is None else tuple(out_indices)
    bad = [i for i in out_indices if isinstance(i, bool) or not isinstance(i, int) or not -levels <= i < levels]
    if bad or not out_indices:
        raise ValueError(f"out_indices={out_indices}: this model has {levels} feature levels, 0 to {levels - 1}")
    net = FeatureGetterNet(model, out_indices)
    net.pretrained_cfg = net.default_cfg = model.pretrained_cfg  # as timm's own builder sets them
    return net
