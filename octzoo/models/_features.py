"""``features_only`` models: one plain feature map per stage (timm's convention)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..layers import from_octave
from ._common import check_image_batch

__all__ = ["FeatureListNet"]


class FeatureListNet(nn.Module):
    """Runs a model's top-level modules in order and returns the maps named in its ``feature_info``.

    An octave stage's output is merged into one Tensor (high branch, then the low branch upsampled by
    nearest neighbour), so each map has the stage's channel count at the stage's resolution. Modules
    after the last requested stage (pooling, classifier) are dropped.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        info = list(model.feature_info)
        out_indices = tuple(range(len(info))) if out_indices is None else tuple(out_indices)
        bad = [i for i in out_indices if not -len(info) <= i < len(info)]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: this model has {len(info)} feature levels")
        self.feature_info = [info[i] for i in out_indices]
        wanted = {f["module"] for f in self.feature_info}
        self.return_layers: list[str] = []
        layers: dict[str, nn.Module] = {}
        for name, module in self._flatten(model, {f["module"] for f in info}):
            layers[name.replace(".", "_")] = module
            if name in wanted:
                self.return_layers.append(name.replace(".", "_"))
                if len(self.return_layers) == len(wanted):
                    break
        self.layers = nn.ModuleDict(layers)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})
        self.in_chans = getattr(model, "in_chans", 3)
        self.model_name = self.pretrained_cfg.get("architecture") or type(model).__name__

    @staticmethod
    def _flatten(model: nn.Module, feature_modules: set[str]):
        """Top-level children, expanding a container whose children hold feature points ('features.3')."""
        for name, child in model.named_children():
            if any(m.startswith(name + ".") for m in feature_modules):
                for sub, grandchild in child.named_children():
                    yield f"{name}.{sub}", grandchild
            else:
                yield name, child

    def forward(self, x: Tensor) -> list[Tensor]:
        check_image_batch(x, self.in_chans, f"{self.model_name} (features_only)")
        out = []
        for name, layer in self.layers.items():
            x = layer(x)
            if name in self.return_layers:
                out.append(from_octave(x))
        return out
