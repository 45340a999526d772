"""The CPU eager fast path: octave convolution as it runs fastest in eager PyTorch on a CPU.

The operator's definition (:meth:`OctConv2d.forward`, paper Eq. 1-2 in plain ATen operators in the input's layout)
is what runs on GPUs and under torch.compile, torch.export, ONNX export, TorchScript and FX. On the CPU, in eager
mode, this strategy computes the same function faster:

- octave maps live in channels_last, oneDNN's preferred layout and the one in which pooling and the upsample-add
  vectorise over channels (:mod:`octzoo.layers.cpu_kernels`);
- the upsampled l2h output is added in place without being materialised; at stride 1, l2h and l2l run as one
  convolution on their concatenated weights (prepared once and cached for inference, :mod:`octzoo.layers.paths`);
- h2l's pooled input is not kept for backward (:func:`pooled_conv2d`), which saves training memory;
- a training-mode batch norm of a few-channel map runs on an NCHW copy (:func:`normalize`).

It is chosen per call by :func:`fast_path_active`: a CPU tensor, eager mode, and the switch on. The switch,
:func:`set_cpu_fast_path` or the :func:`cpu_fast_path` context manager (initially off where the environment
variable ``OCTZOO_CPU_FAST_PATH=0``), lets tests and benchmarks run the definition path on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cpu_kernels import VECTOR_LANES, add_upsampled_, fast_pool2x, pool2x_backward
from .resample import CHANNELS_LAST, is_channels_last, is_fx_tracing

# The batch norms the block folds for inference and, in training, may run on an NCHW copy here.
BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)

__all__ = [
    "BATCH_NORMS",
    "cpu_fast_path",
    "set_cpu_fast_path",
    "fast_path_active",
    "tracing",
    "octave_forward",
    "normalize",
]

_enabled = os.environ.get("OCTZOO_CPU_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")


def set_cpu_fast_path(enabled: bool) -> bool:
    """Use the CPU eager fast path where it applies (``True``, the default) or the definition path everywhere
    (``False``); returns the previous setting. Outputs agree to float rounding either way."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


@contextlib.contextmanager
def cpu_fast_path(enabled: bool = True) -> Iterator[None]:
    """``with cpu_fast_path(False):`` runs the octave layers on their definition path, then restores the setting."""
    previous = set_cpu_fast_path(enabled)
    try:
        yield
    finally:
        set_cpu_fast_path(previous)


def tracing() -> bool:
    """Whether a tracer, compiler or exporter is recording the call (they see the definition path only).

    ONNX export records through one of them: the TorchScript tracer, or dynamo (``dynamo=True``).
    """
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting() or is_fx_tracing()


def fast_path_active(x: Tensor) -> bool:
    """Whether a call on ``x`` takes the fast path: switch on, a CPU tensor, eager mode."""
    return _enabled and not tracing() and x.device.type == "cpu"  # symbolic first: an FX Proxy has no device


def octave_forward(layer: nn.Module, x_h: Tensor, x_l: Tensor | None, w) -> Tensor | tuple[Tensor, Tensor]:
    """Eq. 1-2 of an octave (not plain) ``OctConv2d`` on the prepared weights ``w`` (``paths.path_weights(...,
    fast=True)``); returns ``y_h`` or ``(y_h, y_l)``."""
    # No copy when the map already is channels_last, as between octave layers.
    x_h = x_h.contiguous(memory_format=CHANNELS_LAST)
    if layer.stride == 2:
        x_h = fast_pool2x(x_h)  # (N, C_h, ceil(H/2), ceil(W/2)): pool before conv (paper Table 3)
    y_h = _conv(layer, x_h, *w["h2h"])
    y_ll = None
    if x_l is not None:
        x_l = x_l.contiguous(memory_format=CHANNELS_LAST)
        if "l2h+l2l" in w:  # stride 1: one conv for both paths that read x_l, (N, C_h + C_l, H/2, W/2)
            y_lh, y_ll = _conv(layer, x_l, *w["l2h+l2l"]).split(layer.out_split, dim=1)
            y_h = add_upsampled_(y_h, y_lh)
        elif "l2h" in w:  # from the un-pooled low map: at stride 2 it already has y_h's size
            y_lh = _conv(layer, x_l, *w["l2h"])
            y_h = y_h.add_(y_lh) if layer.stride == 2 else add_upsampled_(y_h, y_lh)
        if layer.stride == 2:
            x_l = fast_pool2x(x_l)  # (N, C_l, ceil(H/4), ceil(W/4))
    if layer.out_split[1] == 0:
        # a plain output keeps the layout of the model's weights (NCHW unless converted to channels_last)
        return y_h.contiguous(memory_format=_plain_layout(layer))
    if y_ll is None and "l2l" in w:
        y_ll = _conv(layer, x_l, *w["l2l"])
    if "h2l" not in w:
        return y_h, y_ll
    y_hl = pooled_conv2d(x_h, *w["h2l"][:2], layer.padding, layer.dilation, w["h2l"][2])  # (N, C_l, H/2, W/2)
    return y_h, y_hl if y_ll is None else y_hl.add_(y_ll)


def _conv(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    return F.conv2d(x, weight, bias, 1, layer.padding, layer.dilation, groups)


def _plain_layout(layer: nn.Module) -> torch.memory_format:
    if layer.plain_output_format is not None:
        return layer.plain_output_format
    w = layer.h2h.weight  # (C_out, C_in, k, k); channels_last strides put C_in innermost
    return CHANNELS_LAST if w.stride(1) == 1 and w.stride(-1) != 1 else torch.contiguous_format


def normalize(norm: nn.Module, y: Tensor) -> Tensor:
    """``norm(y)``; a training-mode batch norm of a channels_last CPU map runs on an NCHW copy when the map's
    channels are not a whole number of vector registers and PyTorch uses more than one thread.

    PyTorch's channels_last batch norm is pathologically slow there. On two threads of an AVX-512 CPU the forward
    and backward of a (128, 8, 16, 16) map took 2.6 ms against 0.37 ms in NCHW (float32; bfloat16: 2.3 against
    0.19 ms), 3-16x slower likewise at 4, 12, 20-28 and 40 channels, but within 1.4x of NCHW at 16, 32, 48 and 64
    (faster in float32). A CIFAR Oct-ResNet-20 training step on two threads takes 21-36 % less time this way.
    With one thread channels_last is the faster layout, and nothing changes. Octave branches and plain layers
    alike take this path.
    """
    if (
        y.shape[1] % VECTOR_LANES
        and isinstance(norm, BATCH_NORMS)
        and norm.training
        and is_channels_last(y)
        and torch.get_num_threads() > 1
    ):
        return _ToChannelsLast.apply(norm(y.contiguous()))
    return norm(y)


class _ToChannelsLast(torch.autograd.Function):
    """A channels_last copy of an NCHW map whose gradient goes back in NCHW (``Tensor.contiguous`` would pass it
    on in channels_last, and the norm's backward would run the slow channels_last kernel after all)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def pooled_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding, dilation, groups: int) -> Tensor:
    """``F.conv2d(pool2x(x), weight, bias)`` at stride 1; under autograd the pooled map is not stored."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _PooledConv.apply(x, weight, bias, padding, dilation, groups)
    return F.conv2d(fast_pool2x(x), weight, bias, 1, padding, dilation, groups)


class _PooledConv(torch.autograd.Function):
    """h2l's pool + conv, saving only ``x`` (which h2h saves anyway) and pooling it again in backward.

    Storing the pooled map would add a quarter of the high branch to every layer's training memory (at
    alpha .5 that is 0.125 of the plain layer's activations against the 0.625 the octave maps take).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (padding, dilation, groups, bias is not None)
        return F.conv2d(fast_pool2x(x), weight, bias, 1, padding, dilation, groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        padding, dilation, groups, has_bias = ctx.conf
        dtype = grad.dtype  # the forward's conv dtype (bfloat16 under autocast) for the conv's backward
        pooled = fast_pool2x(x).to(dtype)  # (N, C, ceil(H/2), ceil(W/2)), recomputed: one cheap pass over x
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_p, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, pooled, weight.to(dtype), [weight.shape[0]] if has_bias else None,
            [1, 1], _pair(padding), _pair(dilation), False, [0, 0], groups, [need_x, need_w, need_b and has_bias],
        )  # fmt: skip
        grad_x = None
        if need_x:
            grad_p = grad_p.to(x.dtype)
            grad_x = pool2x_backward(grad_p, x)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_x, grad_w, None if grad_b is None else grad_b.to(weight.dtype), None, None, None


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]
