"""The reference to beat: octave convolution written the way the existing PyTorch ports write it.

Four ``nn.Conv2d`` calls, a separately computed average pool for every path that needs one, and a
materialised nearest-neighbour upsample added out of place, all in the input's (NCHW) layout. It reads the
layer's own parameters, so a model switched to it computes the same function as the fast forward
(``tests/bench/test_bench.py`` checks that, forward and backward).
"""

from __future__ import annotations

import copy
import types

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import OctaveTensor, OctConv2d
from ..models.resnet_blocks import StemMaxPool2d

__all__ = ["naive_forward", "naive_copy"]


def _pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


def _upsample(x: Tensor, size) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")[..., : size[0], : size[1]]


def naive_forward(self: OctConv2d, x):
    """Paper Eq. 1-2 path by path: ``OctConv2d.forward`` as the straightforward ports compute it."""
    x_h, x_l = self._split_input(x)
    if self.plain:
        return self.h2h(x_h)
    x_h_in, x_l_in = x_h, x_l
    if self.stride == 2:
        x_h = _pool(x_h_in)
        x_l = None if x_l_in is None else _pool(x_l_in)
    y_h = self.h2h(x_h)
    if self.l2h is not None:  # l2h reads the un-pooled low map; at stride 2 it already has the new high size
        y_lh = self.l2h(x_l_in)
        y_h = y_h + (y_lh if self.stride == 2 else _upsample(y_lh, y_h.shape[-2:]))
    if self.out_split[1] == 0:
        return y_h
    y_l = self.h2l(_pool(x_h)) if self.h2l is not None else None
    if self.l2l is not None:
        y_l = self.l2l(x_l) if y_l is None else y_l + self.l2l(x_l)
    return OctaveTensor(y_h, y_l)


def naive_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose octave layers all run :func:`naive_forward` (same parameter values).

    The copy works in NCHW throughout, as the ports do: a ResNet stem hands its octave stage NCHW maps.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, OctConv2d):
            module.forward = types.MethodType(naive_forward, module)
        elif isinstance(module, StemMaxPool2d):
            module.keep_channels_last = False
    return model
