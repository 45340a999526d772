"""Octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049).

A feature map is split by frequency into a high branch at full resolution and a low branch at half
resolution. One octave convolution maps (X^H, X^L) to (Y^H, Y^L) through four paths (paper Eq. 1-2):

    Y^H = h2h(X^H) + upsample_nearest2x(l2h(X^L))
    Y^L = l2l(X^L) + h2l(avgpool2x2(X^H))

A path exists only when both its input and its output branch have channels, so alpha_in = alpha_out = 0
is exactly one ``nn.Conv2d``.
"""

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cpu_fast
from .paths import WEIGHT_CACHES, path_weights
from .resample import add_upsampled, is_fx_tracing, pool2x

__all__ = ["OctaveTensor", "OctConv2d", "split_channels", "check_alpha", "low_size"]


class OctaveTensor(NamedTuple):
    """Feature map split by frequency: high (N, C_h, H, W) and low (N, C_l, ceil(H/2), ceil(W/2)).

    (Its fields are annotated with the Tensor type itself, not a string, so that TorchScript can read them.)
    """

    high: Tensor
    low: Tensor


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a low-frequency share; octave layers need a high branch, so alpha must lie in [0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha < 1.0:
        raise ValueError(
            f"{name}={alpha!r} is not a valid low-frequency share: use a number in [0, 1) "
            f"(0 = plain convolution, e.g. 0.25 or 0.5 for octave)"
        )
    return float(alpha)


def split_channels(channels: int, alpha: float) -> tuple[int, int]:
    """(c_high, c_low) for a valid ``alpha`` (checked)."""
    return _split(channels, check_alpha(alpha))


def _split(channels: int, alpha: float) -> tuple[int, int]:
    """(c_high, c_low) for an alpha already checked; the only place where the low share is rounded (official:
    int(alpha * c))."""
    c_low = int(alpha * channels)
    return channels - c_low, c_low


def low_size(size: int) -> int:
    """Side of the low branch for a high branch of side ``size`` (ceil, so odd sizes work)."""
    return math.ceil(size / 2)


def _conv(c_in: int, c_out: int, kernel_size, stride, padding, dilation, groups, bias) -> nn.Conv2d | None:
    if c_in == 0 or c_out == 0:
        return None
    return nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation, groups, bias)


class OctConv2d(nn.Module):
    """Octave convolution, a drop-in for ``nn.Conv2d`` (arXiv 1904.05049, Eq. 1-2).

    Input is a Tensor when ``alpha_in == 0``, else a (high, low) pair; output is a Tensor when
    ``alpha_out == 0``, else an :class:`OctaveTensor`. Stride 2 follows the official code wherever a low
    branch is involved: average-pool first, then a stride-1 convolution (paper Table 3: better than a
    strided conv); h2l pools twice and l2h is not upsampled, since it already has the new high
    resolution. With ``alpha_in = alpha_out = 0`` the layer is exactly a (strided) ``nn.Conv2d``.
    Depthwise (``groups == in_channels == out_channels`` with ``alpha_in == alpha_out``) keeps only h2h and
    l2l, each depthwise on its own branch.

    Two paths compute the same function. The definition (Eq. 1-2 in plain ATen operators: conv2d, avg_pool2d,
    a nearest-upsample add, in the input's layout) runs on GPUs and under torch.compile, torch.export, ONNX
    export, TorchScript and FX. On the CPU in eager mode the fast path of :mod:`octzoo.layers.cpu_fast` runs
    instead (channels_last octave maps, cached prepared weights, a memory-saving pooled convolution); its
    octave outputs are channels_last, and a plain output (``alpha_out == 0``) has the layout of the layer's
    weights unless ``plain_output_format`` names another. ``octzoo.layers.cpu_fast_path(False)`` selects the
    definition on the CPU too.
    """

    # CPU fast path: set by a model whose layers after this one work in that layout (MobileNetV2's inverted residuals).
    plain_output_format: torch.memory_format | None = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        alpha_in: float = 0.5,
        alpha_out: float = 0.5,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups = groups
        self.alpha_in, self.alpha_out = alpha_in, alpha_out
        for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise ValueError(f"{self._desc()}: {name} must be a positive integer, got {c!r}")
        try:
            self.alpha_in = check_alpha(alpha_in, "alpha_in")
            self.alpha_out = check_alpha(alpha_out, "alpha_out")
        except ValueError as e:
            raise ValueError(f"{self._desc()}: {e}") from None
        self.in_split = _split(in_channels, self.alpha_in)  # (c_high, c_low)
        self.out_split = _split(out_channels, self.alpha_out)
        (ci_h, ci_l), (co_h, co_l) = self.in_split, self.out_split

        # A plain layer is one (strided) conv; wherever a low branch is involved, stride is a pool.
        self.plain = ci_l == 0 and co_l == 0
        if not self.plain:
            if stride not in (1, 2):
                raise ValueError(f"{self._desc()}: octave layers support stride 1 or 2, got stride={stride}")
            if 2 * padding != dilation * (kernel_size - 1):
                raise ValueError(
                    f"{self._desc()}: octave layers need 'same' padding so that the branches keep their sizes; "
                    f"use an odd kernel_size with padding=None (got kernel_size={kernel_size}, padding={padding})"
                )
        conv_stride = stride if self.plain else 1
        args = (kernel_size, conv_stride, padding, dilation)
        self.depthwise = groups > 1 and groups == in_channels == out_channels and alpha_in == alpha_out
        if self.depthwise:
            self.h2h = nn.Conv2d(ci_h, co_h, *args, groups=ci_h, bias=bias)
            self.l2l = _conv(ci_l, co_l, *args, groups=max(ci_l, 1), bias=bias)
            self.h2l = self.l2h = None
        else:
            for c in (ci_h, ci_l, co_h, co_l):
                if c % groups:
                    raise ValueError(
                        f"{self._desc()}: groups={groups} must divide every branch's channels, "
                        f"but the splits are in {self.in_split}, out {self.out_split} (high, low); "
                        f"choose channels and alpha so that each branch is a multiple of {groups}"
                    )
            self.h2h = _conv(ci_h, co_h, *args, groups, bias)
            self.h2l = _conv(ci_h, co_l, *args, groups, bias)
            self.l2h = _conv(ci_l, co_h, *args, groups, bias)
            self.l2l = _conv(ci_l, co_l, *args, groups, bias)

    def _desc(self) -> str:
        return (
            f"OctConv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, alpha_in={self.alpha_in}, alpha_out={self.alpha_out})"
        )

    def extra_repr(self) -> str:
        return f"alpha_in={self.alpha_in}, alpha_out={self.alpha_out}, stride={self.stride}"

    def _split_input(self, x) -> tuple[Tensor, Tensor | None]:
        """Validate the input against the declared split; returns (x_h, x_l).

        Under torch.fx symbolic tracing the values are symbolic and nothing is checked: the split is the declared
        one, and an octave map traced as one value (the output of a module FX keeps as a leaf) is indexed."""
        ci_h, ci_l = self.in_split
        if is_fx_tracing():
            return (x, None) if ci_l == 0 else (x[0], x[1])
        if ci_l == 0:
            if not isinstance(x, Tensor):
                why = (
                    "alpha_in=0"
                    if self.alpha_in == 0
                    else f"its low branch int({self.alpha_in} * {self.in_channels}) is empty"
                )
                raise ValueError(f"{self._desc()} takes a plain Tensor ({why}), got {type(x).__name__}")
            x_h, x_l = x, None
        else:
            if isinstance(x, Tensor) or not isinstance(x, (tuple, list)) or len(x) != 2:
                raise ValueError(
                    f"{self._desc()} takes a (high, low) pair such as OctaveTensor since alpha_in > 0, "
                    f"got {type(x).__name__}; convert a plain map with octzoo.layers.to_octave(x, alpha)"
                )
            x_h, x_l = x
            if not isinstance(x_h, Tensor) or not isinstance(x_l, Tensor):
                raise ValueError(
                    f"{self._desc()} takes a (high, low) pair of Tensors, "
                    f"got ({type(x_h).__name__}, {type(x_l).__name__})"
                )
        if not isinstance(x_h, Tensor):
            raise ValueError(f"{self._desc()} takes Tensors, got {type(x_h).__name__}")
        if x_h.dim() != 4:
            raise ValueError(f"{self._desc()}: expected a 4-D (N, C, H, W) input, got shape {tuple(x_h.shape)}")
        if x_h.shape[1] != ci_h:
            raise ValueError(f"{self._desc()}: high branch must have {ci_h} channels, got {x_h.shape[1]}")
        if x_l is not None:
            want = (x_h.shape[0], ci_l, low_size(x_h.shape[2]), low_size(x_h.shape[3]))
            if tuple(x_l.shape) != want:
                raise ValueError(
                    f"{self._desc()}: low branch must have shape {want} (N, C_low, ceil(H/2), ceil(W/2)) "
                    f"for a high branch of shape {tuple(x_h.shape)}, got {tuple(x_l.shape)}"
                )
        return x_h, x_l

    def forward(self, x: Tensor | OctaveTensor | tuple[Tensor, Tensor]) -> Tensor | OctaveTensor:
        x_h, x_l = self._split_input(x)
        if self.plain:
            return self.h2h(x_h)
        if cpu_fast.fast_path_active(x_h):
            return _octave_output(cpu_fast.octave_forward(self, x_h, x_l, path_weights(self, fast=True)))
        return self._definition(x_h, x_l)

    def forward_folded(self, x, norms: tuple[nn.Module, nn.Module | None]) -> Tensor | OctaveTensor:
        """Inference only: this layer followed by the eval-mode batch norms ``norms`` of its (high, low) outputs,
        run as the layer alone on weights with the norms folded in (cached like the plain weights)."""
        x_h, x_l = self._split_input(x)
        fast = cpu_fast.fast_path_active(x_h)
        w = path_weights(self, norms, fast=fast and not self.plain)
        if self.plain:
            weight, bias, groups = w["h2h"]
            return F.conv2d(x_h, weight, bias, self.stride, self.padding, self.dilation, groups)
        if fast:
            return _octave_output(cpu_fast.octave_forward(self, x_h, x_l, w))
        return self._definition(x_h, x_l, w)

    def _definition(self, x_h: Tensor, x_l: Tensor | None, w=None) -> Tensor | OctaveTensor:
        """Eq. 1-2 path by path in plain ATen operators, in the input's layout: the path on GPUs and under
        tracing, compiling and export. ``w`` replaces the paths' weights (folded norms); else the path modules
        run, so that hooks and FX see them."""

        def conv(name: str, x: Tensor) -> Tensor:
            if w is None:
                return getattr(self, name)(x)
            weight, bias, groups = w[name]
            return F.conv2d(x, weight, bias, 1, self.padding, self.dilation, groups)

        if self.stride == 2:
            x_h = pool2x(x_h)  # pool before conv (paper Table 3)
        y_h = conv("h2h", x_h)
        if self.l2h is not None:  # from the un-pooled low map: at stride 2 it already has y_h's size
            y_lh = conv("l2h", x_l)
            y_h = y_h + y_lh if self.stride == 2 else add_upsampled(y_h, y_lh)
        if self.out_split[1] == 0:
            return y_h
        y_l = None if self.h2l is None else conv("h2l", pool2x(x_h))  # at stride 2: x_h pooled twice
        if self.l2l is not None:
            y_ll = conv("l2l", pool2x(x_l) if self.stride == 2 else x_l)
            y_l = y_ll if y_l is None else y_l + y_ll
        return OctaveTensor(y_h, y_l)

    def clear_weight_cache(self) -> None:
        """Drop the weights cached for inference (needed only after in-place writes through ``.data``)."""
        for name in WEIGHT_CACHES.values():
            self.__dict__.pop(name, None)

    def __getstate__(self):
        state = super().__getstate__()
        for name in WEIGHT_CACHES.values():
            state.pop(name, None)  # derived from the parameters: never pickled or deep-copied
        return state


def _octave_output(y: Tensor | tuple[Tensor, Tensor]) -> Tensor | OctaveTensor:
    return y if isinstance(y, Tensor) else OctaveTensor(*y)
