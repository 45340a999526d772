"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018), plain and octave.

Octave placement follows the official OctConv models (arXiv 1904.05049, Table 5):
- MobileNetV1: plain 3x3/2 stem; over the 13 depthwise-separable blocks the depthwise convs have
  alpha [0] + [a] * 10 + [0] * 2 and the pointwise convs go to [a] * 10 + [0] * 3.
- MobileNetV2: only the expanded middle channels of the first 13 inverted-residual blocks are octave
  (expand 1x1: 0 -> a, depthwise a -> a, project 1x1: a -> 0); the residual path and the last 4 blocks
  stay plain. octzoo keeps torchvision's layout (``mobilenet_v2`` is torchvision's network), whose first
  block has no expansion conv, so that block stays plain too: Oct-MobileNetV2 1.0 (a .375) counts
  247.6 M MACs here against the paper's 256 M, whose first block keeps an expansion conv.

``MobileNetV2.onnx_form`` is the network ``octzoo.export.export_onnx`` writes: its octave blocks rewritten as
:class:`OnnxInvertedResidual`, the same function in the operators ONNX Runtime's CPU provider runs best.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import OctConvNormAct, add_upsampled, check_alpha, pool2x
from ..layers.paths import path_weights
from ._common import (
    IMAGENET_CFG,
    check_drop_rate,
    check_in_chans,
    check_num_classes,
    check_width_mult,
    init_weights,
    make_divisible,
)
from ._interface import TimmInterface
from ._registry import register_model

# the preprocessing and layout facts timm reads (the registry's and every model's pretrained_cfg)
MOBILENET_CFG = dict(IMAGENET_CFG, first_conv="features.0.conv.h2h", classifier="classifier")

__all__ = ["MobileNetV1", "MobileNetV2", "DepthwiseSeparable", "InvertedResidual", "OnnxInvertedResidual"]

# MobileNetV1 depthwise-separable blocks: (pointwise out channels, depthwise stride)
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

# MobileNetV2 inverted residuals: t (expansion), c (out channels), n (repeats), s (first stride)
V2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
V2_OCTAVE_BLOCKS = 13  # the first 13 inverted residuals carry octave middle channels


class _FeaturesSequence(TimmInterface):
    """The MobileNets' feature plumbing: one ``features`` Sequential, feature levels at some of its blocks."""

    head_name = "classifier"

    def forward_features(self, x: Tensor) -> Tensor:
        """The unpooled last feature map, (N, num_features, H / 32, W / 32)."""
        self.check_input(x)
        return self._run(self.features, x)

    def _units(self) -> list[tuple[nn.Module, int | None]]:
        levels = {f["module"]: i for i, f in enumerate(self.feature_info)}
        return [(m, levels.get(f"features.{name}")) for name, m in self.features.named_children()]

    def _prune_after(self, level: int) -> None:
        self.features = self.features[: int(self.feature_info[level]["module"].split(".")[1]) + 1]

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter groups (layer-wise learning-rate decay): the stem, then one group per block."""
        return dict(stem=r"^features\.0\.", blocks=r"^features\.(\d+)")


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise (alpha_dw -> alpha_dw, carries the stride), then 1x1 pointwise (alpha_dw -> alpha_pw)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, alpha_dw: float, alpha_pw: float) -> None:
        super().__init__()
        self.dw = OctConvNormAct(in_ch, in_ch, 3, stride, groups=in_ch, alpha_in=alpha_dw, alpha_out=alpha_dw)
        self.pw = OctConvNormAct(in_ch, out_ch, 1, alpha_in=alpha_dw, alpha_out=alpha_pw)

    def forward(self, x):
        return self.pw(self.dw(x))


class MobileNetV1(_FeaturesSequence, nn.Module):
    """MobileNetV1 with octave depthwise-separable blocks; alpha = 0 gives the plain network.

    Widths are ``make_divisible(c * width_mult, 8)`` (timm's rounding; exact for widths 0.25-1.0).
    """

    def __init__(
        self,
        alpha: float = 0.0,
        width_mult: float = 1.0,
        num_classes: int | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.alpha = a = check_alpha(alpha)
        self.num_classes = check_num_classes(1000 if num_classes is None else num_classes)
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = check_drop_rate(drop_rate)
        width_mult = check_width_mult(width_mult)
        alpha_dw = [0.0] + [a] * 10 + [0.0] * 2
        alpha_pw = [a] * 10 + [0.0] * 3
        in_ch = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [OctConvNormAct(in_chans, in_ch, 3, 2)]  # (N, 32w, H/2, W/2), plain stem
        self.feature_info, reduction = [], 2
        for i, (c, s) in enumerate(V1_BLOCKS):
            out_ch = make_divisible(c * width_mult)
            layers.append(DepthwiseSeparable(in_ch, out_ch, s, alpha_dw[i], alpha_pw[i]))
            reduction *= s
            next_stride = V1_BLOCKS[i + 1][1] if i + 1 < len(V1_BLOCKS) else 2
            if next_stride == 2:  # the last block at each resolution is a feature level
                self.feature_info.append(dict(num_chs=out_ch, reduction=reduction, module=f"features.{i + 1}"))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.num_features = in_ch
        self._init_head(self.num_classes, global_pool)
        self.pretrained_cfg = dict(MOBILENET_CFG, num_classes=self.num_classes)
        init_weights(self, linear_std=0.01)


class InvertedResidual(nn.Module):
    """1x1 expand (0 -> alpha), 3x3 depthwise (alpha, carries the stride), 1x1 project (alpha -> 0); ReLU6.

    The residual path is plain; only the expanded middle channels are octave.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int, alpha: float) -> None:
        super().__init__()
        hidden = round(in_ch * expand_ratio)
        self.use_res_connect = stride == 1 and in_ch == out_ch
        if expand_ratio == 1:
            alpha = 0.0  # no expansion conv to go 0 -> alpha (torchvision's first block)
        layers = []
        if expand_ratio != 1:
            layers.append(OctConvNormAct(in_ch, hidden, 1, alpha_out=alpha, act_layer=nn.ReLU6))
        project = OctConvNormAct(hidden, out_ch, 1, alpha_in=alpha, act_layer=None)
        if alpha > 0:
            # The residual sum and the next block's octave expansion work in channels_last, the octave maps'
            # layout: a plain output there saves a copy out of it and one back per block (5-7 % of a batch-1
            # forward of Oct-MobileNetV2 1.0 on the CPU). The plain blocks after the last octave one ran as fast
            # in either layout.
            project.conv.plain_output_format = torch.channels_last
        layers += [
            OctConvNormAct(
                hidden, hidden, 3, stride, groups=hidden, alpha_in=alpha, alpha_out=alpha, act_layer=nn.ReLU6
            ),
            project,
        ]
        self.conv = nn.Sequential(*layers)

    @property
    def octave(self) -> bool:
        """Whether the expanded middle channels have a low branch."""
        return len(self.conv) == 3 and self.conv[0].conv.out_split[1] > 0

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _pad_dim(t: Tensor | None, size: int, dim: int) -> Tensor | None:
    """``t`` with zeros appended along ``dim`` up to ``size``."""
    if t is None or t.shape[dim] == size:
        return t
    shape = list(t.shape)
    shape[dim] = size - t.shape[dim]
    return torch.cat([t, t.new_zeros(shape)], dim)


class OnnxInvertedResidual(nn.Module):
    """An eval-mode octave :class:`InvertedResidual` written for ONNX Runtime's CPU provider: the same function
    (up to float rounding) in operators its graph optimiser keeps in the blocked NCHWc layout, as it keeps the
    plain network. The operator's own export form (folded norms, pools as depthwise convolutions, Resize and Add;
    :mod:`octzoo.layers.resample`) brings the block there but for its channel counts:

    - each branch of the expanded channels is zero-padded to a multiple of ``channel_multiple``: ONNX Runtime runs
      a convolution in NCHWc only when its channels are a multiple of 4 (the 90 / 54 split of 144 channels is
      not), and 8 is AVX2's NCHWc block. The extra channels hold exact zeros and change no output;
    - ReLU6 is a Clip right after each convolution, and the residual is added to the project layer's h2h output
      before the upsampled l2h output, so that ONNX Runtime fuses the sum into that convolution.

    Its tensors are the block's weights with the batch norms folded in (``octzoo.layers.paths.path_weights``),
    taken at construction.
    """

    def __init__(self, block: InvertedResidual, channel_multiple: int = 8) -> None:
        super().__init__()
        if not block.octave:
            raise ValueError("OnnxInvertedResidual rewrites octave inverted residuals (alpha > 0) only")
        expand, depthwise, project = block.conv
        self.use_res_connect = block.use_res_connect
        self.stride, self.padding = depthwise.conv.stride, depthwise.conv.padding
        self.c_h, self.c_l = (-(-c // channel_multiple) * channel_multiple for c in expand.conv.out_split)
        with torch.no_grad():
            weights = [path_weights(m.conv, (m.norm_h, m.norm_l)) for m in (expand, depthwise, project)]
        (expand_w, depthwise_w, project_w), sizes = weights, {"h": self.c_h, "l": self.c_l}
        for name, w in (("expand", expand_w), ("dw", depthwise_w)):
            for path in ("h2h", "h2l") if name == "expand" else ("h2h", "l2l"):
                weight, bias, _ = w[path]
                self.register_buffer(f"{name}_{path[-1]}_weight", _pad_dim(weight, sizes[path[-1]], 0), False)
                self.register_buffer(f"{name}_{path[-1]}_bias", _pad_dim(bias, sizes[path[-1]], 0), False)
        for path in ("h2h", "l2h"):
            self.register_buffer(f"project_{path[0]}_weight", _pad_dim(project_w[path][0], sizes[path[0]], 1), False)
        self.register_buffer("project_bias", project_w["h2h"][1], False)

    def forward(self, x: Tensor) -> Tensor:
        x_h = F.hardtanh(F.conv2d(x, self.expand_h_weight, self.expand_h_bias), 0.0, 6.0)
        x_l = F.hardtanh(F.conv2d(pool2x(x), self.expand_l_weight, self.expand_l_bias), 0.0, 6.0)
        if self.stride == 2:
            x_h, x_l = pool2x(x_h), pool2x(x_l)
        x_h = F.hardtanh(F.conv2d(x_h, self.dw_h_weight, self.dw_h_bias, 1, self.padding, 1, self.c_h), 0.0, 6.0)
        x_l = F.hardtanh(F.conv2d(x_l, self.dw_l_weight, self.dw_l_bias, 1, self.padding, 1, self.c_l), 0.0, 6.0)
        y = F.conv2d(x_h, self.project_h_weight, self.project_bias)
        if self.use_res_connect:
            y = y + x
        return add_upsampled(y, F.conv2d(x_l, self.project_l_weight))


class MobileNetV2(_FeaturesSequence, nn.Module):
    """MobileNetV2 in torchvision's layout and width rounding; alpha = 0 is torchvision's network."""

    def __init__(
        self,
        alpha: float = 0.0,
        width_mult: float = 1.0,
        num_classes: int | None = None,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.num_classes = check_num_classes(1000 if num_classes is None else num_classes)
        self.in_chans = check_in_chans(in_chans)
        self.drop_rate = check_drop_rate(drop_rate)
        width_mult = check_width_mult(width_mult)
        in_ch = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [OctConvNormAct(in_chans, in_ch, 3, 2, act_layer=nn.ReLU6)]
        self.feature_info, reduction = [], 2
        for t, c, n, s in V2_BLOCKS:
            out_ch = make_divisible(c * width_mult)
            if s == 2 and len(layers) > 1:  # the block before a downsampling one ends a feature level
                self.feature_info.append(dict(num_chs=in_ch, reduction=reduction, module=f"features.{len(layers) - 1}"))
            for i in range(n):
                alpha = self.alpha if len(layers) <= V2_OCTAVE_BLOCKS else 0.0
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, alpha))
                in_ch = out_ch
            reduction *= s
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        layers.append(OctConvNormAct(in_ch, self.num_features, 1, act_layer=nn.ReLU6))
        self.feature_info.append(
            dict(num_chs=self.num_features, reduction=reduction, module=f"features.{len(layers) - 1}")
        )
        self.features = nn.Sequential(*layers)
        self._init_head(self.num_classes, global_pool)
        self.pretrained_cfg = dict(MOBILENET_CFG, num_classes=self.num_classes)
        init_weights(self, linear_std=0.01)

    def onnx_form(self) -> MobileNetV2:
        """The network ``octzoo.export.export_onnx`` writes: this one where it has no octave block, else an eval-mode
        copy whose octave blocks are :class:`OnnxInvertedResidual` (same outputs up to float rounding; this
        network's parameters and buffers are unchanged)."""
        if not any(isinstance(m, InvertedResidual) and m.octave for m in self.features):
            return self
        net = copy.deepcopy(self).eval()
        for i, block in enumerate(net.features):
            if isinstance(block, InvertedResidual) and block.octave:
                net.features[i] = OnnxInvertedResidual(block)
        return net


# Default alphas: the paper's Table 5 rows for width 1.0 (Oct-MobileNetV1 .5, Oct-MobileNetV2 .375).
@register_model(cfg=MOBILENET_CFG)
def mobilenet_v1(width_mult: float = 1.0, **kwargs) -> MobileNetV1:
    """MobileNetV1 (Howard et al. 2017): 4.23 M params, 569 M MACs at width 1.0."""
    return MobileNetV1(width_mult=width_mult, **kwargs)


@register_model(cfg=MOBILENET_CFG)
def oct_mobilenet_v1(alpha: float = 0.5, width_mult: float = 1.0, **kwargs) -> MobileNetV1:
    """Oct-MobileNetV1, arXiv 1904.05049, Table 5 (1.0 width, alpha .5: 321 M MACs; 0.75 width, .375: 213 M)."""
    return MobileNetV1(alpha=alpha, width_mult=width_mult, **kwargs)


@register_model(cfg=MOBILENET_CFG)
def mobilenet_v2(width_mult: float = 1.0, **kwargs) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018), torchvision's network: 3.50 M params, 300 M MACs."""
    return MobileNetV2(width_mult=width_mult, **kwargs)


@register_model(cfg=MOBILENET_CFG)
def oct_mobilenet_v2(alpha: float = 0.375, width_mult: float = 1.0, **kwargs) -> MobileNetV2:
    """Oct-MobileNetV2, arXiv 1904.05049, Table 5 (1.0 width, alpha .375; 1.125 width, alpha .5)."""
    return MobileNetV2(alpha=alpha, width_mult=width_mult, **kwargs)
