"""The two resampling operators of octave convolution, as plain ATen operators in the input's layout.

- ``pool2x``: 2x2 average pool at stride 2 (ceil mode, so odd sizes work).
- ``add_upsampled``: ``y_h + nearest_upsample_2x(y_lh)`` cropped to ``y_h``'s size. In eager mode at even sizes
  it is one broadcast add of the low map over a (N, C, H/2, 2, W/2, 2) view of ``y_h``: the upsampled map is
  never materialised, and the op count is that of a plain add (its backward, a sum over the two broadcast axes,
  is one op as the upsample's backward is).

These are the operator's definition path (GPUs, torch.compile, torch.export, ONNX, FX, TorchScript). The CPU
eager fast path has its own kernels in :mod:`octzoo.layers.cpu_kernels`.

Exported to ONNX, both take the form ONNX Runtime's CPU provider keeps in its blocked NCHWc layout: at even
sizes the pool is a depthwise 2x2 stride-2 convolution with weights 1/4 (its AveragePool runs blocked only for
channel counts that are a multiple of 16, and otherwise took about 9x longer per element), and the upsample-add
is a Resize and an Add on fixed sizes (the broadcast view exports as chains of shape operations and a 6-D Add).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pool2x", "upsample_to", "add_upsampled", "is_channels_last", "is_fx_tracing", "CHANNELS_LAST"]

CHANNELS_LAST = torch.channels_last


def is_fx_tracing() -> bool:
    """Whether torch.fx's symbolic tracer is recording the call (shapes are then symbolic: no branch on them)."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def is_channels_last(x: Tensor) -> bool:
    """True for a 4-D map laid out as NHWC (and not also plain NCHW, as maps with C = 1 or H = W = 1 are)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous()


def pool2x(x: Tensor) -> Tensor:
    """2x2 average pool at stride 2; a partial window at an odd border averages the pixels it covers."""
    if torch.onnx.is_in_onnx_export() and not (int(x.shape[-2]) % 2 or int(x.shape[-1]) % 2):
        c = int(x.shape[1])
        return F.conv2d(x, torch.full((c, 1, 2, 2), 0.25, dtype=x.dtype, device=x.device), None, 2, 0, 1, c)
    return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour 2x upsample cropped to ``size`` (the high branch's exact H, W)."""
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return up[..., : size[0], : size[1]]


def add_upsampled(y_h: Tensor, y_lh: Tensor) -> Tensor:
    """``y_h + upsample_to(y_lh, y_h.shape[-2:])``; ``y_lh`` is (N, C, ceil(H/2), ceil(W/2))."""
    h, w = y_h.shape[-2:]
    if torch.onnx.is_in_onnx_export():
        h, w = int(h), int(w)
        up = F.interpolate(y_lh, scale_factor=2.0, mode="nearest")
        return y_h + (up if h % 2 == w % 2 == 0 else up[..., :h, :w])
    if is_fx_tracing() or torch.compiler.is_compiling() or h % 2 or w % 2:
        # compilers fuse the upsample into the add themselves, and with dynamic shapes the view's sizes would nest
        # layer after layer into symbolic expressions that take minutes to reason about; an FX graph must hold for
        # every size, odd ones included
        return y_h + upsample_to(y_lh, (h, w))
    pairs = y_h.unflatten(3, (w // 2, 2)).unflatten(2, (h // 2, 2))  # (N, C, H/2, 2, W/2, 2), a view
    return (pairs + y_lh[:, :, :, None, :, None]).flatten(4, 5).flatten(2, 3)
