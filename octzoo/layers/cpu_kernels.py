"""The CPU fast path's resampling kernels: the octave operator's pool and upsample-add, written for speed in
eager PyTorch on the CPU (:mod:`octzoo.layers.resample` holds their plain definitions).

- ``fast_pool2x``: 2x2 average pool at stride 2 (ceil mode, so odd sizes work).
- ``add_upsampled_``: ``y_h += nearest_upsample_2x(y_lh)`` cropped to ``y_h``'s size, in place. For even
  sizes it is one broadcast add into a (N, H/2, 2, W/2, 2, C) view of ``y_h``, so the upsampled map is
  never materialised; under autograd its gradient for ``y_lh`` is a 2x2 sum pool of the output gradient.

Both are fastest on channels_last maps, where the innermost dimension is the channels: avg_pool2d's
channels_last kernel is about 7x faster than its NCHW one, and the broadcast add is as fast as a plain
add (in NCHW the innermost dimension of the view has size 2, which does not vectorise). With fewer channels
than one vector register holds, neither vectorises over the channels, and both work on whole rows instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .resample import CHANNELS_LAST, is_channels_last, upsample_to

__all__ = ["fast_pool2x", "pool2x_backward", "sum_pool2x", "add_upsampled_", "VECTOR_LANES"]

# float32 values in one vector register: channels_last kernels vectorise over the channels, and below this many
# they waste most of each register (avg_pool2d at 8 channels is as slow as at 16 on an AVX-512 CPU)
VECTOR_LANES = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def fast_pool2x(x: Tensor) -> Tensor:
    """2x2 average pool at stride 2; a partial window at an odd border averages the pixels it covers."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or (torch.is_grad_enabled() and x.requires_grad):
        return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)
    if is_channels_last(x) and not _few_channels(x):
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return sum_pool2x(x).mul_(0.25)  # even sizes, no autograd: NCHW or few channels, where two sums are faster


def _few_channels(x: Tensor) -> bool:
    """Whether a channels_last map on the CPU has too few channels for avg_pool2d's kernel to vectorise (float32
    and float64 only: in 16-bit types the two-step sum would round twice where avg_pool2d rounds once)."""
    return (
        x.shape[1] < VECTOR_LANES
        and x.numel() >= 16384  # below, its three operator calls cost more than avg_pool2d's one pass
        and x.dtype in (torch.float32, torch.float64)
        and x.device.type == "cpu"
    )


def _sum_pool2x_few_channels(x: Tensor) -> Tensor:
    """2x2 sum pool of a channels_last map with even sides and few channels, as two adds: row pairs (whole rows
    of W * C values, which vectorise), then column pairs (runs of C). 2-3.5x faster than avg_pool2d at 4-8
    channels (128 x 8 x 32 x 32: 394 against 736 us on one AVX-512 core); slower from 16 on."""
    n, c, h, w = x.shape
    v = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous
    rows = (v[:, 0::2] + v[:, 1::2]).view(n, h // 2, w // 2, 2 * c)  # (N, H/2, W/2, 2C): a pixel pair per run
    return (rows[..., :c] + rows[..., c:]).permute(0, 3, 1, 2)  # (N, C, H/2, W/2), channels_last


def pool2x_backward(grad: Tensor, x: Tensor) -> Tensor:
    """The gradient of ``pool2x(x)`` for ``x``: each pixel gets a quarter of its window's output gradient.

    At even sizes that is a nearest 2x upsample of ``grad / 4``, written once in ``grad``'s layout; PyTorch's
    ``avg_pool2d_backward`` zero-fills the input gradient and scatters into it: 1.1-1.6x slower in
    channels_last at CIFAR and ImageNet training shapes (as fast on 8 x 8 maps), 1.5-2.7x in NCHW. Odd sizes
    (partial windows) use it.
    """
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        return torch.ops.aten.avg_pool2d_backward(grad, x, [2, 2], [2, 2], [0, 0], True, True, None)
    layout = CHANNELS_LAST if is_channels_last(grad) else torch.contiguous_format
    out = torch.empty(x.shape, dtype=grad.dtype, device=grad.device, memory_format=layout)
    target, low = _upsampling_views(out, grad * 0.25)
    target.copy_(low)
    return out


def sum_pool2x(x: Tensor) -> Tensor:
    """2x2 sum pool at stride 2 (ceil mode: a partial window sums the pixels it covers)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True, divisor_override=1)
    if is_channels_last(x):
        if _few_channels(x):
            return _sum_pool2x_few_channels(x)
        return F.avg_pool2d(x, kernel_size=2, stride=2, divisor_override=1)
    # NCHW at even sizes: two strided sums beat avg_pool2d's NCHW kernel by about 3x
    rows = x[..., ::2, :] + x[..., 1::2, :]  # (N, C, H/2, W)
    return rows[..., ::2] + rows[..., 1::2]


def _upsampling_views(y: Tensor, low: Tensor) -> tuple[Tensor, Tensor]:
    """A view of ``y`` (N, C, H, W; even sizes, channels_last or contiguous) and ``low`` (N, C, H/2, W/2) shaped
    to broadcast over it as its nearest 2x upsample, for an in-place op that never materialises the upsample."""
    n, c, h, w = y.shape
    if is_channels_last(y):
        low = low.permute(0, 2, 3, 1)  # (N, H/2, W/2, C)
        if c >= 64:  # (N, H/2, 2, W/2, 2, C) view of the NHWC map; the low map broadcasts over both 2s
            return y.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c), low[:, :, None, :, None, :]
        # few channels: runs of C are too short to vectorise; double the columns once, write whole rows
        return y.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2 * c), torch.cat([low, low], dim=-1)[:, :, None]
    # NCHW: double the low map's columns once, (N, C, H/2, 1, W), then broadcast it over each row pair.
    cols = low[..., None].expand(n, c, h // 2, w // 2, 2).reshape(n, c, h // 2, 1, w)
    return y.view(n, c, h // 2, 2, w), cols


def _add_upsampled_kernel(y_h: Tensor, y_lh: Tensor) -> Tensor:
    h, w = y_h.shape[-2:]
    if h % 2 or w % 2 or not (is_channels_last(y_h) or y_h.is_contiguous()):
        return y_h.add_(upsample_to(y_lh, (h, w)))  # odd sizes (or odd strides): crop a materialised upsample
    target, low = _upsampling_views(y_h, y_lh)
    target.add_(low)
    return y_h


class _AddUpsampled(torch.autograd.Function):
    """Autograd for the in-place upsample-add: the low map's gradient is the 2x2 sum pool of the output's."""

    @staticmethod
    def forward(ctx, y_h: Tensor, y_lh: Tensor) -> Tensor:
        ctx.mark_dirty(y_h)
        return _add_upsampled_kernel(y_h, y_lh)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        return grad, sum_pool2x(grad)


def add_upsampled_(y_h: Tensor, y_lh: Tensor) -> Tensor:
    """``y_h += upsample_to(y_lh, y_h.shape[-2:])`` in place, without materialising the upsampled map.

    ``y_h`` (N, C, H, W) must be a fresh tensor nothing else reads (a convolution's output); ``y_lh`` is
    (N, C, ceil(H/2), ceil(W/2)).
    """
    if torch.is_grad_enabled() and (y_h.requires_grad or y_lh.requires_grad):
        return _AddUpsampled.apply(y_h, y_lh)
    return _add_upsampled_kernel(y_h, y_lh)
