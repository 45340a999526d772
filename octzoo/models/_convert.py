"""State dicts of other OctConv ports, renamed to octzoo's keys.

``octconv.pytorch`` (d-li14): its ``OctResNet`` (26/50/101/152 at alpha 0.5; the published Oct-ResNet-50
reached 77.64 % top-1) has octzoo's ``oct_resnet`` placement: a plain stem, the first block of layer1 going
0 -> alpha (its projection too), every later layer alpha -> alpha, the first block of layer4 coming back
alpha -> 0 in conv1 and its projection, stride on the 3x3 convolution, pooling before strided paths and no
upsampling of a strided l2h path. Only the names differ:

====================================================  ==============================================
octconv.pytorch                                        octzoo
====================================================  ==============================================
``conv1.weight``, ``bn1.*``                            ``conv1.conv.h2h.weight``, ``conv1.norm_h.*``
``layerI.J.convK.conv.conv_h2l.weight``                ``layerI.J.convK.conv.h2l.weight`` (h2h, l2h, l2l)
``layerI.J.convK.bn_h.*`` / ``bn_l.*``                 ``layerI.J.convK.norm_h.*`` / ``norm_l.*``
``layerI.0.downsample.0.{conv.conv_*, bn_h, bn_l}``    ``layerI.0.downsample.{conv.*, norm_h, norm_l}``
``fc.*``                                               ``fc.*``
====================================================  ==============================================

Its ``OctMobileNet`` is not convertible: its depthwise layers pass ``groups=in_channels`` to branch
convolutions that have fewer channels, so the model cannot be built, and no weights were published for it.
"""

from __future__ import annotations

import re

from torch import Tensor

__all__ = ["from_octconv_pytorch", "is_octconv_pytorch"]


def is_octconv_pytorch(state: dict[str, Tensor]) -> bool:
    """True for a state dict in octconv.pytorch's layout (its branch convolutions are named ``conv_h2h`` ...)."""
    return any(re.search(r"\.conv\.conv_(h2h|h2l|l2h|l2l)\.weight$", k) for k in state)


def from_octconv_pytorch(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """octconv.pytorch's ``OctResNet`` state dict (``module.`` prefixes of DataParallel allowed) with octzoo's
    ``oct_resnet`` names; the tensors are the same objects."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("conv1."):
            key = "conv1.conv.h2h." + key.removeprefix("conv1.")
        elif key.startswith("bn1."):
            key = "conv1.norm_h." + key.removeprefix("bn1.")
        else:
            key = key.replace(".downsample.0.", ".downsample.")
            key = re.sub(r"\.conv\.conv_(h2h|h2l|l2h|l2l)\.", r".conv.\1.", key)
            key = re.sub(r"\.bn_(h|l)\.", r".norm_\1.", key)
        out[key] = value
    return out
