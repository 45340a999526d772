"""Pieces the families share: the classifier head, weight initialisation and preprocessing configs."""

from __future__ import annotations

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

    The family sets ``num_features``, ``num_classes``, ``drop_rate`` and ``head_name`` (the attribute
    holding the Linear: ``fc`` for ResNets as in torchvision, ``classifier`` for MobileNets as in timm).
    """

    head_name: str = "fc"

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
