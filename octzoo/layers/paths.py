"""The convolutions of OctConv2d's forward: its paths' weights as the forward uses them, and the h2l conv.

- ``path_weights``: (weight, bias, groups) per convolution the forward runs. Weights are channels_last (the
  layout of the octave maps; a no-op for 1x1 and depthwise kernels). At stride 1, l2h and l2l read the same
  input and run as one convolution on their weights concatenated along the output channels. Without autograd
  the result is cached on the layer, keyed on the parameters' storages and version counters.
- ``pooled_conv2d``: ``conv2d(pool2x(x))`` for h2l that keeps ``x``, not the pooled map, for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resample import CHANNELS_LAST, pool2x

__all__ = ["path_weights", "pooled_conv2d"]

PathWeights = dict[str, tuple[Tensor, Tensor | None, int]]


def path_weights(layer: nn.Module) -> PathWeights:
    """The weights of ``layer``'s convolutions, keyed "h2h", "h2l", "l2h", "l2l" or "l2h+l2l".

    Under autograd the copies are made afresh (they are differentiable, and cheap next to a training step).
    Without it they are cached: any in-place update (optimizer step, ``load_state_dict``, edits under
    ``torch.no_grad()``) bumps a version counter and any replacement (``.to()``, ``.double()``) changes a
    storage, and either rebuilds them. Writes through ``.data`` are invisible to both; after those call
    ``layer.clear_weight_cache()``. Reusing the copies saves about 4 % of a batch-1 Oct-ResNet-50 forward.
    """
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return _build(layer)  # torch.compile and torch.jit.trace record the copies in their graphs instead
    tensors = [t for conv in _convs(layer).values() for t in (conv.weight, conv.bias) if t is not None]
    key = tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)
    cache = layer.__dict__.get("_weight_cache")
    if cache is None or cache[0] != key:
        cache = layer.__dict__["_weight_cache"] = (key, _build(layer))
    return cache[1]


def _convs(layer: nn.Module) -> dict[str, nn.Conv2d]:
    convs = {name: getattr(layer, name) for name in ("h2h", "h2l", "l2h", "l2l")}
    return {name: conv for name, conv in convs.items() if conv is not None}


def _build(layer: nn.Module) -> PathWeights:
    w = {name: (conv.weight, conv.bias, conv.groups) for name, conv in _convs(layer).items()}
    if layer.stride == 1 and layer.groups == 1 and "l2h" in w and "l2l" in w:
        (w_lh, b_lh, _), (w_ll, b_ll, _) = w.pop("l2h"), w.pop("l2l")
        w["l2h+l2l"] = (torch.cat([w_lh, w_ll]), None if b_lh is None else torch.cat([b_lh, b_ll]), 1)
    return {name: (weight.contiguous(memory_format=CHANNELS_LAST), b, g) for name, (weight, b, g) in w.items()}


def pooled_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding, dilation, groups: int) -> Tensor:
    """``F.conv2d(pool2x(x), weight, bias)`` at stride 1; under autograd the pooled map is not stored."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return _PooledConv.apply(x, weight, bias, padding, dilation, groups)
    return F.conv2d(pool2x(x), weight, bias, 1, padding, dilation, groups)


class _PooledConv(torch.autograd.Function):
    """h2l's pool + conv, saving only ``x`` (which h2h saves anyway) and pooling it again in backward.

    Storing the pooled map would add a quarter of the high branch to every layer's training memory (at
    alpha .5 that is 0.125 of the plain layer's activations against the 0.625 the octave maps take).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (padding, dilation, groups, bias is not None)
        return F.conv2d(pool2x(x), weight, bias, 1, padding, dilation, groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        padding, dilation, groups, has_bias = ctx.conf
        dtype = grad.dtype  # the forward's conv dtype (bfloat16 under autocast) for the conv's backward
        pooled = pool2x(x).to(dtype)  # (N, C, ceil(H/2), ceil(W/2)), recomputed: one cheap pass over x
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_p, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, pooled, weight.to(dtype), [weight.shape[0]] if has_bias else None,
            [1, 1], _pair(padding), _pair(dilation), False, [0, 0], groups, [need_x, need_w, need_b and has_bias],
        )  # fmt: skip
        grad_x = None
        if need_x:
            grad_p = grad_p.to(x.dtype)
            grad_x = torch.ops.aten.avg_pool2d_backward(grad_p, x, [2, 2], [2, 2], [0, 0], True, True, None)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_x, grad_w, None if grad_b is None else grad_b.to(weight.dtype), None, None, None


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]
