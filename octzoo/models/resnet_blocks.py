"""The ResNet blocks, plain and octave: basic and bottleneck residual blocks, their shortcuts (projection,
"option A" zero-padding, a parameter-free alpha change) and the stem's max pool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import (
    OctaveTensor,
    OctConvNormAct,
    OctMap,
    as_octave,
    convert_alpha,
    oct_add,
    oct_apply,
    scriptable_trace,
)
from ..layers.cpu_fast import fast_path_active
from ..layers.octconv import split_channels
from ..layers.resample import is_channels_last

__all__ = ["BasicBlock", "Bottleneck", "ConvertAlpha", "ShortcutA", "StemMaxPool2d"]


class StemMaxPool2d(nn.MaxPool2d):
    """The ImageNet stem's 3x3/2 max-pool; on the CPU fast path, without autograd, it pools in channels_last.

    PyTorch's NCHW max-pool kernel is slow on the CPU: a (1, 64, 112, 112) map took 6.8 ms in NCHW and 0.4 ms
    in channels_last (one thread), so converting there and back is 3x faster at batch 1 and 8 and takes 4-7 ms
    off a batch-1 ResNet-50, plain or octave (docs/benchmarks.md). ``keep_channels_last`` (set when the first
    stage is octave, which works in channels_last) skips the copy back. Under autograd the channels_last
    backward and the copies cost more than they save, so training pools as ``nn.MaxPool2d`` does; the values
    never differ.
    """

    def __init__(self, keep_channels_last: bool = False) -> None:
        super().__init__(kernel_size=3, stride=2, padding=1)
        self.keep_channels_last = keep_channels_last

    def forward(self, x: Tensor) -> Tensor:
        if (
            not fast_path_active(x)
            or x.dim() != 4
            or is_channels_last(x)
            or (torch.is_grad_enabled() and x.requires_grad)
        ):
            return super().forward(x)
        y = super().forward(x.contiguous(memory_format=torch.channels_last))
        return y if self.keep_channels_last else y.contiguous()


class ConvertAlpha(nn.Module):
    """Parameter-free identity shortcut across a change of alpha (split + pool, or upsample + concat)."""

    def __init__(self, channels: int, alpha_in: float, alpha_out: float) -> None:
        super().__init__()
        self.channels, self.alpha_out = channels, alpha_out
        self.octave_in = split_channels(channels, alpha_in)[1] > 0

    def forward(self, x: OctMap) -> OctMap:
        return convert_alpha(as_octave(x, self.octave_in), self.alpha_out, self.channels)

    def __prepare_scriptable__(self) -> nn.Module:  # as a leaf of timm's FX graphs
        return scriptable_trace(self, OctaveTensor if self.octave_in else Tensor)


class ShortcutA(nn.Module):
    """He et al.'s parameter-free "option A" downsampling: subsample 2x, zero-pad the new channels.

    Each branch is padded to its own share of the output channels, so an octave map stays octave.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, alpha_in: float, alpha_out: float):
        super().__init__()
        self.stride = stride
        c_in, c_out = split_channels(in_channels, alpha_in), split_channels(out_channels, alpha_in)
        self.pads = [c_out[0] - c_in[0], c_out[1] - c_in[1]]  # zero channels to add to (high, low)
        self.octave_in = c_in[1] > 0
        self.convert = ConvertAlpha(out_channels, alpha_in, alpha_out) if alpha_in != alpha_out else None

    def _branch(self, x: Tensor, pad: int) -> Tensor:
        x = x[..., :: self.stride, :: self.stride]  # (N, C, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, pad // 2, pad - pad // 2))

    def forward(self, x: OctMap) -> OctMap:
        x = as_octave(x, self.octave_in)
        if not isinstance(x, tuple):
            y = self._branch(x, self.pads[0])
        else:
            x_h, x_l = x
            y = OctaveTensor(self._branch(x_h, self.pads[0]), self._branch(x_l, self.pads[1]))
        return y if self.convert is None else self.convert(y)

    def __prepare_scriptable__(self) -> nn.Module:  # as a leaf of timm's FX graphs
        return scriptable_trace(self, OctaveTensor if self.octave_in else Tensor)


def _shortcut(in_ch: int, out_ch: int, stride: int, alpha_in: float, alpha_out: float, kind: str) -> nn.Module | None:
    """The shortcut's module; None for the identity (as in torchvision)."""
    if stride == 1 and in_ch == out_ch:
        return ConvertAlpha(out_ch, alpha_in, alpha_out) if alpha_in != alpha_out else None
    if kind == "A":
        return ShortcutA(in_ch, out_ch, stride, alpha_in, alpha_out)
    return OctConvNormAct(in_ch, out_ch, 1, stride, alpha_in=alpha_in, alpha_out=alpha_out, act_layer=None)


class BasicBlock(nn.Module):
    """Two 3x3 convs; conv1 goes alpha_in -> alpha_mid (and strides), conv2 alpha_mid -> alpha_out."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, alphas: tuple[float, float, float], shortcut: str):
        super().__init__()
        a_in, a_mid, a_out = alphas
        self.conv1 = OctConvNormAct(in_ch, planes, 3, stride, alpha_in=a_in, alpha_out=a_mid)
        self.conv2 = OctConvNormAct(planes, planes, 3, alpha_in=a_mid, alpha_out=a_out, act_layer=None)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, planes, stride, a_in, a_out, shortcut)
        self.octave_in, self.octave_out = self.conv1.conv.in_split[1] > 0, self.conv2.conv.out_split[1] > 0

    def forward(self, x: OctMap) -> OctMap:
        x = as_octave(x, self.octave_in)
        y = as_octave(self.conv2(self.conv1(x)), self.octave_out)
        shortcut = x if self.downsample is None else as_octave(self.downsample(x), self.octave_out)
        return oct_apply(self.act, oct_add(y, shortcut))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, v1b), 1x1 expand by 4; post-activation."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, alphas: tuple[float, float, float], shortcut: str):
        super().__init__()
        a_in, a_mid, a_out = alphas
        out_ch = planes * self.expansion
        self.conv1 = OctConvNormAct(in_ch, planes, 1, alpha_in=a_in, alpha_out=a_mid)
        self.conv2 = OctConvNormAct(planes, planes, 3, stride, alpha_in=a_mid, alpha_out=a_mid)
        self.conv3 = OctConvNormAct(planes, out_ch, 1, alpha_in=a_mid, alpha_out=a_out, act_layer=None)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride, a_in, a_out, shortcut)
        self.octave_in, self.octave_out = self.conv1.conv.in_split[1] > 0, self.conv3.conv.out_split[1] > 0

    def forward(self, x: OctMap) -> OctMap:
        x = as_octave(x, self.octave_in)
        y = as_octave(self.conv3(self.conv2(self.conv1(x))), self.octave_out)
        shortcut = x if self.downsample is None else as_octave(self.downsample(x), self.octave_out)
        return oct_apply(self.act, oct_add(y, shortcut))
