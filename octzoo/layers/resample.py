"""The two resampling operators of octave convolution, as plain ATen operators in the input's layout.

- ``pool2x``: 2x2 average pool at stride 2 (ceil mode, so odd sizes work).
- ``add_upsampled``: ``y_h + nearest_upsample_2x(y_lh)`` cropped to ``y_h``'s size. At even sizes it is one
  broadcast add of the low map over a (N, C, H/2, 2, W/2, 2) view of ``y_h``: the upsampled map is never
  materialised, and the op count is that of a plain add (its backward, a sum over the two broadcast axes, is
  one op as the upsample's backward is).

These are the operator's definition path (GPUs, torch.compile, torch.export, ONNX, FX). The CPU eager fast
path has its own kernels in :mod:`octzoo.layers.cpu_kernels`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pool2x", "upsample_to", "add_upsampled", "is_channels_last", "CHANNELS_LAST"]

CHANNELS_LAST = torch.channels_last


def is_channels_last(x: Tensor) -> bool:
    """True for a 4-D map laid out as NHWC (and not also plain NCHW, as maps with C = 1 or H = W = 1 are)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous()


def pool2x(x: Tensor) -> Tensor:
    """2x2 average pool at stride 2; a partial window at an odd border averages the pixels it covers."""
    return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour 2x upsample cropped to ``size`` (the high branch's exact H, W)."""
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return up[..., : size[0], : size[1]]


def add_upsampled(y_h: Tensor, y_lh: Tensor) -> Tensor:
    """``y_h + upsample_to(y_lh, y_h.shape[-2:])``; ``y_lh`` is (N, C, ceil(H/2), ceil(W/2))."""
    h, w = y_h.shape[-2:]
    if h % 2 or w % 2:
        return y_h + upsample_to(y_lh, (h, w))
    pairs = y_h.unflatten(3, (w // 2, 2)).unflatten(2, (h // 2, 2))  # (N, C, H/2, 2, W/2, 2), a view
    return (pairs + y_lh[:, :, :, None, :, None]).flatten(4, 5).flatten(2, 3)
