"""bfloat16 mixed precision on CPUs without native bfloat16 convolutions.

Under ``torch.autocast(dtype=torch.bfloat16)`` the convolutions and matrix products run on bfloat16 operands:
the products are exact, the sums float32, and the result is rounded to bfloat16. CPUs with AVX-512 (or AMX) have
oneDNN kernels for that; an AVX2-only CPU falls back to reference kernels, on which CIFAR (Oct-)ResNet-20 trains
10-18x slower than in float32 (their backward is also less exact: on an AMD EPYC, 59 % of a 3x3 convolution's
input gradient differed from the correctly rounded value, by up to 2 units in the last place).

:class:`BF16Emulation` computes the same operations with float32 kernels instead: the bfloat16 operands are
widened to float32 (exactly), convolved or multiplied with float32 accumulation, and the result is rounded to
bfloat16. The numbers are those of the native kernels up to the order of the float32 summation, the same
freedom two CPUs with native bfloat16 kernels have. Every other operation (norms, activations, pooling, the loss)
runs in the dtype autocast gives it, as before.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["BF16Emulation", "cpu_has_fast_bf16", "emulates"]

_aten = torch.ops.aten
# What autocast sends to bfloat16 in a convolutional network, forward and backward (Linear lowers to addmm/mm).
EMULATED_OPS = frozenset(
    {
        _aten.convolution.default,
        _aten.convolution_backward.default,
        _aten.addmm.default,
        _aten.mm.default,
        _aten.bmm.default,
        _aten.baddbmm.default,
    }
)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs oneDNN's bfloat16 convolutions natively (AVX-512 or newer).

    Without AVX-512 (an AVX2-only CPU), bfloat16 convolutions fall back to slow reference kernels: CIFAR
    (Oct-)ResNet-20 trained 10-18x slower under bf16 autocast than in float32 on an AVX2 EPYC
    (``octzoo bench --families "CIFAR ResNet-20" --dtype bfloat16`` against the float32 run).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: assume the fast path
        return True


class BF16Emulation(TorchDispatchMode):
    """Within this context, CPU convolutions and matrix products whose tensors are all bfloat16 (forward and
    backward) run as float32 kernels on the widened operands, with the results rounded to bfloat16.

    Use it around the forward and the backward of a step under bfloat16 autocast::

        with torch.autocast("cpu", dtype=torch.bfloat16), BF16Emulation():
            loss = criterion(model(x), y)
        with BF16Emulation():
            loss.backward()

    Every other operation, and every operation on other dtypes or devices, runs unchanged.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not emulates(func, args):
            return func(*args, **kwargs)
        out = func(*(_widen(a) for a in args), **kwargs)
        if isinstance(out, tuple):  # convolution_backward: (grad_input, grad_weight, grad_bias)
            return tuple(o if o is None else o.to(torch.bfloat16) for o in out)
        return out.to(torch.bfloat16)


def emulates(func, args) -> bool:
    """Whether :class:`BF16Emulation` runs ``func(*args)`` through float32: one of ``EMULATED_OPS`` with every tensor
    argument bfloat16 on the CPU."""
    if func not in EMULATED_OPS:
        return False
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    return bool(tensors) and all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors)


def _widen(a):
    return a.float() if isinstance(a, torch.Tensor) else a
