"""Pieces the families share: argument checks, weight initialisation and preprocessing configs."""

from __future__ import annotations

import numbers

from torch import Tensor, nn

from ..layers import is_fx_tracing
from .constants import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IMAGENET_CFG = dict(
    input_size=(3, 224, 224),
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    crop_pct=0.875,
    interpolation="bilinear",
    num_classes=1000,
    pool_size=(7, 7),  # the last feature map at input_size
)
# CIFAR-10 training-set statistics (per channel, pixels in [0, 1]).
CIFAR_CFG = dict(
    input_size=(3, 32, 32),
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    crop_pct=1.0,
    interpolation="nearest",
    num_classes=10,
    pool_size=(8, 8),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never more than 10 % down (torchvision)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def scale_width(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded to the nearest whole channel, halves up, at least 1 (the ResNets'
    rounding; the MobileNets round to multiples of 8 with :func:`make_divisible`, as timm and torchvision do)."""
    return max(1, int(channels * width_mult + 0.5))


def check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 0 (0 removes the classifier)")
    return num_classes


def check_width_mult(width_mult: float) -> float:
    if isinstance(width_mult, bool) or not isinstance(width_mult, numbers.Real) or not width_mult > 0:
        raise ValueError(f"width_mult={width_mult!r} must be a number > 0 (1.0 is the paper's width, 0.75 narrower)")
    return float(width_mult)


def check_in_chans(in_chans: int) -> int:
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans={in_chans!r} must be an integer >= 1 (3 for RGB, 1 for grayscale)")
    return in_chans


def check_drop_rate(drop_rate: float) -> float:
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate={drop_rate!r} must be a dropout probability in [0, 1) (0 disables dropout)")
    return float(drop_rate)


def check_image_batch(x: object, in_chans: int, model: str) -> None:
    """Shape checks of a model's input, so that a wrong input is named here and not deep inside a convolution.

    Cheap (no data is read) and static under ``torch.jit.trace``, ``torch.onnx.export`` and ``torch.compile``;
    skipped under torch.fx symbolic tracing, whose input is a symbolic value.
    """
    if is_fx_tracing():
        return
    want = f"a float Tensor of shape (N, {in_chans}, H, W)"
    if not isinstance(x, Tensor):
        hint = "; convert with torch.as_tensor(x)" if hasattr(x, "shape") else ""
        raise TypeError(f"{model} takes {want}, got {type(x).__name__}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} takes {want}, got dtype {x.dtype}; convert images with x.float() / 255 and normalise them "
            "with the model's pretrained_cfg mean and std"
        )
    if x.dim() != 4:
        hint = "; add the batch dimension with x.unsqueeze(0)" if x.dim() == 3 else ""
        raise ValueError(f"{model} takes {want}, got a {x.dim()}-D Tensor of shape {tuple(x.shape)}{hint}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"{model} takes {want}, got {x.shape[1]} channels (shape {tuple(x.shape)}); channels come second "
            f"(NCHW: x.permute(0, 3, 1, 2) turns NHWC into it), or build the model with in_chans={x.shape[1]}"
        )
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(
            f"{model} takes {want} with H, W >= 1, got the empty image shape {tuple(x.shape)}; check the crop "
            "or resize that produced it (any size from 1 x 1 up works)"
        )


def init_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """He init for convs (fan-out, as torchvision), unit/zero norms; ``linear_std`` for the classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
