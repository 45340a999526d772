"""Pieces the families share: the classifier head, weight initialisation and preprocessing configs."""

from __future__ import annotations

import numbers

from torch import Tensor, nn

IMAGENET_CFG = dict(
    input_size=(3, 224, 224),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    crop_pct=0.875,
    interpolation="bilinear",
    num_classes=1000,
)
# CIFAR-10 training-set statistics (per channel, pixels in [0, 1]).
CIFAR_CFG = dict(
    input_size=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    crop_pct=1.0,
    interpolation="nearest",
    num_classes=10,
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never more than 10 % down (torchvision)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


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

    Cheap (no data is read) and static under ``torch.jit.trace``, ``torch.onnx.export`` and ``torch.compile``.
    """
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


class ClassifierMixin:
    """timm's classifier interface over a ``global_pool`` -> ``drop`` -> ``<head_name>`` head.

    The family sets ``num_features``, ``num_classes``, ``in_chans``, ``drop_rate`` and ``head_name`` (the
    attribute holding the Linear: ``fc`` for ResNets as in torchvision, ``classifier`` for MobileNets as in
    timm), and its ``forward_features`` starts with ``check_input``.
    """

    head_name: str = "fc"
    in_chans: int = 3

    def check_input(self, x: Tensor) -> None:
        """TypeError / ValueError naming the model for anything but a float (N, in_chans, H >= 1, W >= 1) Tensor."""
        cfg = getattr(self, "pretrained_cfg", None) or {}
        check_image_batch(x, self.in_chans, cfg.get("architecture") or type(self).__name__)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        if global_pool != "avg":
            raise ValueError(f"global_pool={global_pool!r} is not supported; octzoo models pool with 'avg'")
        self.num_classes = check_num_classes(num_classes)
        setattr(self, self.head_name, self._make_head(num_classes))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
