"""ResNets for ImageNet (He et al. 2015, v1b) and CIFAR (He et al. 2016), plain and octave.

One class serves both layouts and every alpha; the plain baselines are the same networks with
alpha = 0 and then equal torchvision's (ImageNet) or the paper's (CIFAR, "option A" shortcuts).

Octave placement (arXiv 1904.05049 and its official code), as (alpha_in, alpha_mid, alpha_out) per block:
- ImageNet: stage 1 block 0 goes 0 -> a (conv1 and the projection); every other block of stages 1-3
  is a -> a; stage 4 block 0 goes a -> 0 (conv1 and the projection); the rest of stage 4 is plain.
- CIFAR (no official octave version): the first block goes 0 -> a (conv1; the identity shortcut is
  split without parameters), the last block's last conv goes a -> 0 (its shortcut merged without
  parameters), every conv in between is a -> a. Stem and head stay plain.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import (
    OctConvNormAct,
    check_alpha,
)
from ..layers.octconv import split_channels
from ._common import (
    CIFAR_CFG,
    IMAGENET_CFG,
    check_drop_rate,
    check_in_chans,
    check_num_classes,
    check_width_mult,
    init_weights,
    scale_width,
)
from ._interface import TimmInterface
from ._registry import register_model
from .resnet_blocks import BasicBlock, Bottleneck, StemMaxPool2d

# the preprocessing and layout facts timm reads, per layout (the registry's and every model's pretrained_cfg)
IMAGENET_RESNET_CFG = dict(IMAGENET_CFG, first_conv="conv1.conv.h2h", classifier="fc")
CIFAR_RESNET_CFG = dict(CIFAR_CFG, first_conv="conv1.conv.h2h", classifier="fc")
register_imagenet = register_model(cfg=IMAGENET_RESNET_CFG)  # the builders' decorators, one per layout
register_cifar = register_model(cfg=CIFAR_RESNET_CFG)

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "StemMaxPool2d"]


def octave_placement(layers: Sequence[int], alpha: float, layout: str) -> list[list[tuple[float, float, float]]]:
    """(alpha_in, alpha_mid, alpha_out) of every block, stage by stage (see the module docstring)."""
    a = alpha
    if layout == "imagenet":
        plan = [[(a, a, a)] * n for n in layers[:-1]] + [[(0.0, 0.0, 0.0)] * layers[-1]]
        plan[0][0] = (0.0, a, a)
        plan[-1][0] = (a, 0.0, 0.0)
    else:
        plan = [[(a, a, a)] * n for n in layers]
        plan[-1][-1] = (a, a, 0.0)
        plan[0][0] = (0.0, a, plan[0][0][2])  # the first block also ends the network when it is the only one
    return plan


def _check_cifar_low_branches(planes: Sequence[int], alpha: float, depth: int) -> None:
    """The parameter-free shortcuts of the CIFAR layout carry each branch from stage to stage, so a low branch
    cannot appear in a later stage when an earlier one rounds it away (int(alpha * planes) = 0)."""
    lows = [split_channels(p, alpha)[1] for p in planes]
    if 0 in lows and any(lows):
        first = next(p for p, low in zip(planes, lows, strict=True) if low)
        raise ValueError(
            f"CIFAR ResNet-{depth}: alpha={alpha} leaves the {planes[0]}-channel stage without low-frequency "
            f"channels (int({alpha} * {planes[0]}) = 0) while the {first}-channel stage has some, and its "
            f"parameter-free shortcuts cannot create a branch; use alpha >= {1 / planes[0]:g} or alpha = 0"
        )


class ResNet(TimmInterface, nn.Module):
    """ResNet with octave convolutions; ``alpha = 0`` gives the plain network.

    ``layout="imagenet"``: 7x7/2 stem, 3x3/2 max-pool, stages of 64/128/256/512 planes, projection shortcuts
    (torchvision's ResNet). ``layout="cifar"``: 3x3 stem with 16 channels, no max-pool, stages of
    16/32/64, parameter-free option-A shortcuts (He et al. 2016, Sec. 4.2).

    ``width_mult`` scales the stem's and every stage's channels, each rounded to the nearest whole channel (halves
    up, at least 1): CIFAR ResNet-20 at 0.84 has stages of 13/27/54 channels. Multiply-adds scale about as its
    square; 1.0 is the papers' width.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        alpha: float = 0.0,
        layout: str = "imagenet",
        num_classes: int | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        global_pool: str = "avg",
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if layout not in ("imagenet", "cifar"):
            raise ValueError(f"layout={layout!r}: use 'imagenet' or 'cifar'")
        cifar = layout == "cifar"
        self.alpha = check_alpha(alpha)
        cfg = CIFAR_RESNET_CFG if cifar else IMAGENET_RESNET_CFG
        self.num_classes = check_num_classes(cfg["num_classes"] if num_classes is None else num_classes)
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = check_drop_rate(drop_rate)
        stem_ch, planes, shortcut = (16, (16, 32, 64), "A") if cifar else (64, (64, 128, 256, 512), "B")
        self.width_mult = check_width_mult(width_mult)
        stem_ch, planes = scale_width(stem_ch, self.width_mult), tuple(scale_width(p, self.width_mult) for p in planes)
        if len(layers) != len(planes):
            raise ValueError(f"layout {layout!r} has {len(planes)} stages, got layers={tuple(layers)}")
        if cifar:
            _check_cifar_low_branches(planes, self.alpha, 2 * sum(layers) + 2)

        # (N, 3, H, W) -> (N, 64, H/4, W/4) ImageNet, (N, 16, H, W) CIFAR; the stem is always plain.
        self.conv1 = OctConvNormAct(in_chans, stem_ch, 3 if cifar else 7, 1 if cifar else 2)
        self.maxpool = nn.Identity() if cifar else StemMaxPool2d(keep_channels_last=self.alpha > 0)
        self.feature_info = [dict(num_chs=stem_ch, reduction=1 if cifar else 2, module="conv1")]
        in_ch, reduction = stem_ch, 1 if cifar else 4
        for i, (p, alphas) in enumerate(zip(planes, octave_placement(layers, alpha, layout), strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j, block_alphas in enumerate(alphas):
                blocks.append(block(in_ch, p, stride if j == 0 else 1, block_alphas, shortcut))
                in_ch = p * block.expansion
            reduction *= stride
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_ch, reduction=reduction, module=f"layer{i + 1}"))
        self.num_stages = len(layers)
        self.num_features = in_ch
        self._init_head(self.num_classes, global_pool)
        self.pretrained_cfg = dict(cfg, num_classes=self.num_classes)

        init_weights(self)
        if zero_init_residual:  # each residual branch starts as identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last = m.conv3 if isinstance(m, Bottleneck) else m.conv2
                    for norm in (last.norm_h, last.norm_l):
                        if norm is not None:
                            nn.init.zeros_(norm.weight)

    def _stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def forward_features(self, x: Tensor) -> Tensor:
        """The unpooled last feature map: (N, num_features, H / 32, W / 32) ImageNet, (N, 64, H / 4, W / 4) CIFAR."""
        self.check_input(x)
        x = self.maxpool(self.conv1(x))
        for stage in self._stages():
            x = self._run(stage, x)
        return x  # the last stage is plain in both layouts

    def _units(self) -> list[tuple[nn.Module, int | None]]:
        return [(self.conv1, 0), (self.maxpool, None)] + [(s, i) for i, s in enumerate(self._stages(), 1)]

    def _prune_after(self, level: int) -> None:
        for i in range(level + 1, self.num_stages + 1):
            setattr(self, f"layer{i}", nn.Sequential())  # empty: a stage that passes its input through
        if level == 0:
            self.maxpool = nn.Identity()

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter groups (layer-wise learning-rate decay): the stem, then stages or blocks."""
        return dict(stem=r"^conv1\.", blocks=r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)")


def _imagenet(block, layers, alpha=0.0, **kwargs) -> ResNet:
    return ResNet(block, layers, alpha=alpha, layout="imagenet", **kwargs)


def _cifar(depth: int, alpha=0.0, **kwargs) -> ResNet:
    return ResNet(BasicBlock, [(depth - 2) // 6] * 3, alpha=alpha, layout="cifar", **kwargs)


# ImageNet ResNets. Default alphas: .25 (Table 2's headline trade-off; Oct-ResNet-50 3.1 G MACs at 78.0 %),
# .125 for ResNet-152 (the paper's Oct-ResNet-152 row).
@register_imagenet
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (He et al. 2015), torchvision layout."""
    return _imagenet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_imagenet
def oct_resnet18(alpha: float = 0.25, **kwargs) -> ResNet:
    """Oct-ResNet-18, arXiv 1904.05049."""
    return _imagenet(BasicBlock, (2, 2, 2, 2), alpha, **kwargs)


@register_imagenet
def resnet26(**kwargs) -> ResNet:
    """ResNet-26: bottleneck blocks (2, 2, 2, 2), the paper's ablation baseline."""
    return _imagenet(Bottleneck, (2, 2, 2, 2), **kwargs)


@register_imagenet
def oct_resnet26(alpha: float = 0.25, **kwargs) -> ResNet:
    """Oct-ResNet-26, arXiv 1904.05049, Table 2/Fig. 4."""
    return _imagenet(Bottleneck, (2, 2, 2, 2), alpha, **kwargs)


@register_imagenet
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (He et al. 2015), torchvision layout."""
    return _imagenet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_imagenet
def oct_resnet34(alpha: float = 0.25, **kwargs) -> ResNet:
    """Oct-ResNet-34, arXiv 1904.05049."""
    return _imagenet(BasicBlock, (3, 4, 6, 3), alpha, **kwargs)


@register_imagenet
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (He et al. 2015), torchvision layout: 25,557,032 params, 4.09 G MACs."""
    return _imagenet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_imagenet
def oct_resnet50(alpha: float = 0.25, **kwargs) -> ResNet:
    """Oct-ResNet-50, arXiv 1904.05049, Table 2: 3.565 / 3.104 / 2.367 / 1.880 G MACs at alpha .125-.75."""
    return _imagenet(Bottleneck, (3, 4, 6, 3), alpha, **kwargs)


@register_imagenet
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (He et al. 2015), torchvision layout."""
    return _imagenet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_imagenet
def oct_resnet101(alpha: float = 0.25, **kwargs) -> ResNet:
    """Oct-ResNet-101, arXiv 1904.05049, Table 2."""
    return _imagenet(Bottleneck, (3, 4, 23, 3), alpha, **kwargs)


@register_imagenet
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (He et al. 2015), torchvision layout."""
    return _imagenet(Bottleneck, (3, 8, 36, 3), **kwargs)


@register_imagenet
def oct_resnet152(alpha: float = 0.125, **kwargs) -> ResNet:
    """Oct-ResNet-152 in the v1b layout (9.69 G MACs at .125; the paper's 10.9 G uses a deep stem)."""
    return _imagenet(Bottleneck, (3, 8, 36, 3), alpha, **kwargs)


# CIFAR ResNets (6n + 2 layers). Default alpha .25.
@register_cifar
def resnet14(**kwargs) -> ResNet:
    """CIFAR ResNet-14: two basic blocks per stage, ResNet-20 made shallower (0.65 of its MACs)."""
    return _cifar(14, **kwargs)


@register_cifar
def oct_resnet14(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-14."""
    return _cifar(14, alpha, **kwargs)


@register_cifar
def resnet20(**kwargs) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2016): 269,722 params, 40.55 M MACs."""
    return _cifar(20, **kwargs)


@register_cifar
def oct_resnet20(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-20: octave from the first block to the last block's last conv."""
    return _cifar(20, alpha, **kwargs)


@register_cifar
def resnet32(**kwargs) -> ResNet:
    """CIFAR ResNet-32 (He et al. 2016)."""
    return _cifar(32, **kwargs)


@register_cifar
def oct_resnet32(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-32."""
    return _cifar(32, alpha, **kwargs)


@register_cifar
def resnet44(**kwargs) -> ResNet:
    """CIFAR ResNet-44 (He et al. 2016)."""
    return _cifar(44, **kwargs)


@register_cifar
def oct_resnet44(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-44."""
    return _cifar(44, alpha, **kwargs)


@register_cifar
def resnet56(**kwargs) -> ResNet:
    """CIFAR ResNet-56 (He et al. 2016): 0.85 M params, 125.5 M MACs."""
    return _cifar(56, **kwargs)


@register_cifar
def oct_resnet56(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-56."""
    return _cifar(56, alpha, **kwargs)


@register_cifar
def resnet110(**kwargs) -> ResNet:
    """CIFAR ResNet-110 (He et al. 2016)."""
    return _cifar(110, **kwargs)


@register_cifar
def oct_resnet110(alpha: float = 0.25, **kwargs) -> ResNet:
    """CIFAR Oct-ResNet-110."""
    return _cifar(110, alpha, **kwargs)
