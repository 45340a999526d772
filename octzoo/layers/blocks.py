"""The one conv-norm-act block every family is built from, and parameter-free octave conversions."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from . import cpu_fast
from .cpu_kernels import fast_pool2x
from .octconv import OctaveTensor, OctConv2d, split_channels
from .resample import is_fx_tracing, pool2x, upsample_to

__all__ = [
    "OctConvNormAct",
    "OctMap",
    "as_octave",
    "to_octave",
    "from_octave",
    "convert_alpha",
    "oct_add",
    "oct_apply",
    "set_norm_folding",
    "scriptable_trace",
]

OctMap = Tensor | OctaveTensor

# An octave map is a (high, low) tuple, a plain map anything else: under torch.fx tracing a plain map is a Proxy,
# not a Tensor, so the functions below tell the kinds apart by ``isinstance(x, tuple)``.


def as_octave(x: OctMap, octave: bool) -> OctMap:
    """``x`` as a (high, low) pair when the caller knows it is an octave map: under torch.fx tracing, an octave map
    returned by a module that FX keeps as a leaf (timm's FX feature extraction keeps :class:`OctConvNormAct`) is one
    symbolic value, indexed here into its branches. Eager maps pass through unchanged."""
    if octave and not isinstance(x, tuple):
        return OctaveTensor(x[0], x[1])
    return x


def oct_apply(fn: Callable[[Tensor], Tensor], x: OctMap) -> OctMap:
    """Apply a per-pixel function to each branch (activations, dropout)."""
    if not isinstance(x, tuple):
        return fn(x)
    x_h, x_l = x
    return OctaveTensor(fn(x_h), fn(x_l))


def oct_add(x: OctMap, y: OctMap) -> OctMap:
    """Residual sum, per branch; the branches must have equal shapes (no silent broadcasting)."""
    xs, ys = (tuple(x), tuple(y)) if isinstance(x, tuple) else ((x,), (y,))
    if not is_fx_tracing() and (len(xs) != len(ys) or any(a.shape != b.shape for a, b in zip(xs, ys, strict=False))):
        shapes = [[tuple(t.shape) for t in z] for z in (xs, ys)]
        raise ValueError(f"oct_add: branch shapes differ, {shapes[0]} vs {shapes[1]}")
    if len(xs) == 1:
        return x + y
    return OctaveTensor(xs[0] + ys[0], xs[1] + ys[1])


def to_octave(x: Tensor, alpha: float, channels: int | None = None) -> OctMap:
    """Split a plain map into (high, low) without parameters: the first c_high channels stay, the last
    c_low channels are average-pooled to half resolution. ``channels`` (x's) lets a traced caller split a map whose
    shape is symbolic."""
    c_h, c_l = split_channels(x.shape[1] if channels is None else channels, alpha)
    if c_l == 0:
        return x
    x_h, x_l = x.split((c_h, c_l), dim=1)  # under autograd one cat, where two slices would each zero-fill
    return OctaveTensor(x_h, fast_pool2x(x_l) if cpu_fast.fast_path_active(x_l) else pool2x(x_l))


def from_octave(x: OctMap) -> Tensor:
    """Merge (high, low) into one map: nearest-upsample low to the exact high size, concatenate after high."""
    if not isinstance(x, tuple):
        return x
    x_h, x_l = x
    return torch.cat([x_h, upsample_to(x_l, x_h.shape[-2:])], dim=1)


def convert_alpha(x: OctMap, alpha_out: float, channels: int | None = None) -> OctMap:
    """Parameter-free change of alpha for identity shortcuts (only 0 -> alpha and alpha -> 0 occur); ``channels``
    as for :func:`to_octave`."""
    if not isinstance(x, tuple):
        return to_octave(x, alpha_out, channels)
    if alpha_out == 0:
        return from_octave(x)
    return to_octave(from_octave(x), alpha_out, channels)


class OctConvNormAct(nn.Module):
    """OctConv2d -> per-branch norm -> per-branch activation (each branch has its own statistics).

    With ``alpha_in = alpha_out = 0`` this is exactly conv -> norm -> act, the plain networks' block.
    ``act_layer=None`` leaves the activation out (the last conv of a residual block, projections).

    For inference (eval mode under ``torch.no_grad()`` or ``torch.inference_mode()``) batch norms are folded
    into the convolution's cached weights, which saves a pass over every output: a batch-1 ResNet-50 gets
    3-5 % and MobileNetV2 12-16 % faster on the CPU. The result equals conv -> norm up to float rounding (for
    bit-identical outputs to an unfolded network, ``set_norm_folding(model, False)``). Forward hooks on the
    conv or norm modules, a replaced forward, or tracing and compiling turn folding off, so those see every
    module called; ONNX export (of a model in eval mode, without autograd) keeps it, and writes the folded
    weights as constants.
    """

    fold_norms = True  # set per block by set_norm_folding

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        alpha_in: float = 0.0,
        alpha_out: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] | None = nn.ReLU,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        self.conv = OctConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            groups=groups,
            alpha_in=alpha_in,
            alpha_out=alpha_out,
        )
        c_h, c_l = self.conv.out_split
        self.norm_h = norm_layer(c_h)
        self.norm_l = norm_layer(c_l) if c_l else None
        self.act = act_layer(inplace=True) if act_layer is not None else nn.Identity()

    @property
    def alpha_in(self) -> float:
        return self.conv.alpha_in

    @property
    def alpha_out(self) -> float:
        return self.conv.alpha_out

    def forward(self, x: OctMap) -> OctMap:
        if self._folds_norms():
            y = self.conv.forward_folded(x, (self.norm_h, self.norm_l))
            act = _INPLACE_ACTS.get(type(self.act)) or self.act
            if not isinstance(y, tuple):
                return act(y)
            return OctaveTensor(act(y[0]), act(y[1]))
        y = self.conv(x)
        y_h = y[0] if isinstance(y, tuple) else y
        norm = cpu_fast.normalize if self.training and cpu_fast.fast_path_active(y_h) else _call
        if not isinstance(y, tuple):
            return self.act(norm(self.norm_h, y))
        return OctaveTensor(self.act(norm(self.norm_h, y_h)), self.act(norm(self.norm_l, y[1])))

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` of this block alone, as when it is a leaf of an FX graph (timm's FX feature
        extraction keeps it one): its definition path as torch.fx traces it, the input typed as alpha_in says."""
        return scriptable_trace(self, OctaveTensor if self.conv.in_split[1] else Tensor)

    def _folds_norms(self) -> bool:
        """Whether this call may fold the norms into the convolution's weights: inference (eval mode, no
        autograd) in eager mode, batch norms that use running statistics, and no module whose call would be
        skipped observed by a hook or given another forward (the benchmark's reference does that).

        It runs on every call, so it reads the modules' dicts rather than their attributes.
        """
        if self.training or torch.is_grad_enabled() or not self.fold_norms:
            return False
        if cpu_fast.tracing() and not torch.onnx.is_in_onnx_export():  # ONNX gets the folded weights as constants
            return False
        if _global_forward_hooks or _global_forward_pre_hooks:
            return False
        modules = self._modules
        conv = modules["conv"]
        if "forward" in conv.__dict__:
            return False
        norms = [modules["norm_h"]] if self.norm_l is None else [modules["norm_h"], modules["norm_l"]]
        for norm in norms:
            if type(norm) not in cpu_fast.BATCH_NORMS or norm.training or norm._buffers["running_mean"] is None:
                return False
        for m in (conv, modules["act"], *conv._modules.values(), *norms):
            if m._forward_hooks or m._forward_pre_hooks:
                return False
        return True


def scriptable_trace(module: nn.Module, input_type: type = Tensor) -> torch.fx.GraphModule:
    """``module`` traced by torch.fx for TorchScript: its one input typed ``input_type``, its output untyped (the
    annotations FX copies from the source are strings under ``from __future__ import annotations``, which
    TorchScript cannot resolve)."""
    graph_module = torch.fx.symbolic_trace(module)
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            node.type = input_type
        elif node.op == "output":
            node.type = None
    graph_module.recompile()
    return graph_module


def _call(norm: nn.Module, y: Tensor) -> Tensor:
    return norm(y)


def set_norm_folding(model: nn.Module, enabled: bool) -> nn.Module:
    """Turn the inference-time folding of batch norms into the convolutions on or off for every block of
    ``model`` (on by default); returns ``model``. Off, eval outputs are bit-identical to running conv, norm and
    activation one after the other, as an unfolded network (torchvision's, say) does, at the cost of speed."""
    for m in model.modules():
        if isinstance(m, OctConvNormAct):
            m.fold_norms = bool(enabled)
    return model


# Activations applied in place without a module call (the block creates them with inplace=True).
_INPLACE_ACTS: dict[type, Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu_,
    nn.ReLU6: lambda t: F.hardtanh_(t, 0.0, 6.0),
    nn.Identity: lambda t: t,
}
