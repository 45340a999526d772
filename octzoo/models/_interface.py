"""timm's model interface, shared by every family: head, features, intermediates, checkpointing, scripting.

A family subclasses :class:`TimmInterface` and provides:

- ``num_features``, ``num_classes``, ``in_chans``, ``drop_rate``, ``head_name`` (the attribute holding the
  classifier: ``fc`` for ResNets as in torchvision, ``classifier`` for MobileNets as in timm) and
  ``feature_info`` (timm's list of ``dict(num_chs, reduction, module)``, one per stage);
- ``forward_features``, which runs its modules through ``_run`` (activation checkpointing);
- ``_units()``: the same modules in order, each with the index of the feature level it completes (or ``None``),
  for ``forward_intermediates``;
- ``_prune_after(level)``: drop every unit after feature level ``level``.

Octave stages hand out one merged map (:func:`octzoo.layers.from_octave`): no caller ever sees a (high, low) pair.
"""

# No ``from __future__ import annotations``: FX copies ``forward``'s annotations into the code it generates, and
# TorchScript must be able to read them there (timm's FX + TorchScript path), so they stay real types.

import torch
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models._features import feature_take_indices  # timm exports it only there
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layers import OctMap, from_octave, is_fx_tracing, scriptable_trace
from ._common import check_image_batch, check_num_classes

__all__ = ["TimmInterface", "GLOBAL_POOLS"]

# timm's SelectAdaptivePool2d types; "" keeps the spatial map (no pooling, no flatten)
GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax", "fast", "fastavg", "fastmax", "fastavgmax", "fastcatavgmax", "")


class TimmInterface:
    head_name: str = "fc"
    in_chans: int = 3
    grad_checkpointing: bool = False

    # -- classifier --------------------------------------------------------------------------------------------
    def _init_head(self, num_classes: int, global_pool: str = "avg") -> None:
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool={global_pool!r} is not one of timm's pooling types {GLOBAL_POOLS}")
        self.num_classes = check_num_classes(num_classes)
        self.global_pool, head = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        setattr(self, self.head_name, head)

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised head for ``num_classes`` (0: none) on the model's device and dtype;
        ``global_pool`` None keeps the pooling, "" removes it (``forward`` then returns the unpooled map)."""
        weight = next(self.parameters())
        self._init_head(num_classes, self.global_pool.pool_type if global_pool is None else global_pool)
        self.get_classifier().to(device=weight.device, dtype=weight.dtype)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # -- features ----------------------------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        """TypeError / ValueError naming the model for anything but a float (N, in_chans, H >= 1, W >= 1) Tensor."""
        cfg = getattr(self, "pretrained_cfg", None) or {}
        check_image_batch(x, self.in_chans, cfg.get("architecture") or type(self).__name__)

    def _units(self) -> list[tuple[nn.Module, int | None]]:
        raise NotImplementedError

    def _prune_after(self, level: int) -> None:
        raise NotImplementedError

    def _run(self, module: nn.Module, x: OctMap) -> OctMap:
        """``module(x)``; with checkpointing on and under autograd, one checkpoint per block of a stage."""
        if not (self.grad_checkpointing and torch.is_grad_enabled()) or is_fx_tracing():
            return module(x)
        for block in module if isinstance(module, nn.Sequential) else (module,):
            x = checkpoint(block, x, use_reentrant=False)
        return x

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's ``forward_intermediates``: the feature maps of the levels ``indices`` (None: all, an int n: the
        last n, a sequence: those levels, negative from the end) as plain NCHW maps, octave ones merged, with the
        final features unless ``intermediates_only``. ``stop_early`` (or ``intermediates_only``) stops after the
        last level asked for. ``norm`` has nothing to act on: these networks end without a norm layer."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: octzoo models give NCHW feature maps only")
        take, last = feature_take_indices(len(self.feature_info), indices)
        self.check_input(x)
        intermediates = []
        for unit, level in self._units():
            x = self._run(unit, x)
            if level is not None and level in take:
                intermediates.append(from_octave(x))
            if level == last and (stop_early or intermediates_only):
                break
        return intermediates if intermediates_only else (from_octave(x), intermediates)

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the layers after the last of ``indices`` (and the head, with ``prune_head`` or when layers went),
        as timm's feature wrapper does before calling :meth:`forward_intermediates`; returns the levels kept."""
        take, last = feature_take_indices(len(self.feature_info), indices)
        if last < len(self.feature_info) - 1:
            self._prune_after(last)
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
            prune_head = True
        if prune_head:
            self.reset_classifier(0, "")
        return take

    # -- training helpers --------------------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing: under autograd each block's activations are recomputed in backward instead
        of being kept (less memory, about one more forward of time). Outputs and gradients are unchanged; batch
        norms in training update their running statistics once more per block, as in timm."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> set[str]:
        """Parameter names timm's optimizer factory exempts from weight decay beyond its own 1-D rule: none."""
        return set()

    # -- TorchScript -------------------------------------------------------------------------------------------
    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script(model)`` scripts this network's operator definition path, as torch.fx traces it
        (the plain-ATen form of paper Eq. 1-2, without the CPU fast path's eager-only code). The script computes
        ``forward`` in the mode the model was in (dropout as traced); script a model in eval mode for inference."""
        return scriptable_trace(self)
