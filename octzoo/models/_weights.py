"""Loading weights into octzoo models: octzoo's safetensors files and torchvision state dicts.

Nothing is ever unpickled with code execution: safetensors files hold tensors only, and other files go
through ``torch.load(weights_only=True)``, which refuses any object that is not a tensor or a container.
Tensors are read onto the CPU whatever device they were saved from, and cast to the model's dtype.

A checkpoint made for another head or input is adapted as timm does, with a logged message: a different
``num_classes`` (or ``num_classes=0``) leaves the classifier freshly initialised, a different ``in_chans``
adapts the stem (summed to one channel, or repeated and rescaled). Anything else that does not match refuses
to load, naming the tensor; ``strict=False`` loads what matches and reports the rest.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ._convert import from_octconv_pytorch, is_octconv_pytorch

__all__ = ["LoadReport", "load_weights", "read_state_dict", "remap_by_position"]

log = logging.getLogger("octzoo")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a safetensors file or a torch file (never executing code), on the CPU.

    A Lightning checkpoint of an ``octzoo.ImageClassifier`` is accepted too: its network's tensors are the
    ``state_dict`` entries under ``model.``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e}); the file may be truncated") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path}: refused to load, the file holds Python objects that would run code on loading "
            f"(only tensors are accepted); re-save it as a plain state dict or a safetensors file"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable torch file ({e}); the file may be truncated or corrupt") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        if obj and all(k.startswith("model.") for k in obj):  # an ImageClassifier checkpoint
            obj = {k.removeprefix("model."): v for k, v in obj.items()}
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    return obj


def _head_prefix(model: nn.Module) -> str | None:
    """``"fc."`` / ``"classifier."``: the prefix of the classifier's tensors (timm's interface)."""
    name = getattr(model, "head_name", None)
    return f"{name}." if name else None


def _stem_key(model: nn.Module) -> str:
    """The first convolution's weight: the only tensor whose shape depends on ``in_chans``."""
    return next(k for k, v in model.state_dict().items() if v.dim() == 4)


def remap_by_position(src: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map a state dict with other names (torchvision's) onto ``model``'s keys by position.

    torchvision's ResNets and MobileNetV2 register their tensors in the same order as octzoo's plain
    models (conv, then norm, block by block), so the i-th tensor of one is the i-th of the other; the last
    name component (weight, bias, running_mean, ...) and the shape must agree at every position, except the
    classifier's and the stem's shapes, which ``load_weights`` adapts.
    """
    dst = model.state_dict()
    head = _head_prefix(model)
    if head is not None and not any(k.startswith(head) for k in dst):  # num_classes=0: the file's head goes
        src = dict(list(src.items())[: len(dst)])
    if len(src) != len(dst):
        raise ValueError(f"the file has {len(src)} tensors, {type(model).__name__} expects {len(dst)}")
    adaptable = {_stem_key(model)} | {k for k in dst if head and k.startswith(head)}
    out = {}
    for (k_src, v), (k_dst, ref) in zip(src.items(), dst.items(), strict=True):
        same_shape = v.shape == ref.shape or (k_dst in adaptable and v.dim() == ref.dim())
        if k_src.rsplit(".", 1)[-1] != k_dst.rsplit(".", 1)[-1] or not same_shape:
            raise ValueError(
                f"tensor {k_src!r} {tuple(v.shape)} does not match the model's {k_dst!r} {tuple(ref.shape)}: "
                f"the weights are for another architecture or configuration"
            )
        out[k_dst] = v
    return out


def adapt_stem(weight: Tensor, in_chans: int) -> Tensor:
    """A stem weight (C_out, C_in, k, k) for ``in_chans`` inputs: summed over C_in for one channel, otherwise
    repeated over the channels and scaled by C_in / in_chans, so a grey image stacked ``in_chans`` times gives the
    original activations (timm's ``adapt_input_conv``)."""
    c_in = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_chans / c_in)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (c_in / in_chans)


@dataclass
class LoadReport:
    """What ``load_weights`` did: keys the file lacked or had in excess (non-strict loads only), the
    classifier tensors left freshly initialised, and the stem adapted to another ``in_chans``."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)


def _keys(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(map(repr, keys[:limit])) + more


def load_weights(model: nn.Module, source: str | os.PathLike | dict[str, Tensor], *, strict: bool = True) -> LoadReport:
    """Load a weights file (or a state dict) into ``model``, adapting the head and stem as timm does.

    With ``strict=True`` (the default) nothing is loaded unless every other tensor of the model is in the
    file with its shape; ``strict=False`` loads the tensors that match and reports the others.
    """
    name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    label = "state dict" if isinstance(source, dict) else str(source)
    state = dict(source) if isinstance(source, dict) else read_state_dict(source)
    own = model.state_dict()
    report = LoadReport(label)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if is_octconv_pytorch(state):
        state = from_octconv_pytorch(state)
        log.info("%s: octconv.pytorch's layout, renamed to octzoo's", label)
    if sum(k not in own for k in state) > len(state) // 2:
        state = remap_by_position(state, model)  # other names: torchvision's

    head = _head_prefix(model)
    file_head = sorted(k for k in state if head and k.startswith(head))
    if file_head and any(k not in own or own[k].shape != state[k].shape for k in file_head):
        n_file = state[file_head[0]].shape[0] if state[file_head[0]].dim() else "?"
        report.reset = [k for k in own if k.startswith(head)]
        for k in file_head:
            del state[k]
        log.info("%s: classifier of %s classes not loaded; %s has a fresh %s-class head",
                 label, n_file, name, getattr(model, "num_classes", "?"))  # fmt: skip

    stem = _stem_key(model)
    if stem in state and state[stem].shape != own[stem].shape and state[stem].shape[0] == own[stem].shape[0]:
        in_chans = own[stem].shape[1]
        log.info("%s: stem %r adapted from %d to %d input channels", label, stem, state[stem].shape[1], in_chans)
        state[stem] = adapt_stem(state[stem].to(own[stem].dtype), in_chans)
        report.adapted = [stem]

    wrong = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{label}: {k!r} has shape {tuple(state[k].shape)}, {name} expects {tuple(own[k].shape)}"
            f"{f' (and {len(wrong) - 1} more differ)' if len(wrong) > 1 else ''}; the weights are for another "
            f"configuration (alpha, width or depth)"
        )
    report.missing = [k for k in own if k not in state and k not in report.reset]
    report.unexpected = [k for k in state if k not in own]
    if strict and (report.missing or report.unexpected):
        parts = [f"{len(report.missing)} missing ({_keys(report.missing)})"] if report.missing else []
        parts += [f"{len(report.unexpected)} unexpected ({_keys(report.unexpected)})"] if report.unexpected else []
        raise ValueError(
            f"{label}: the file does not fit {name}: {'; '.join(parts)} tensors; the weights are for another "
            f"architecture (load with strict=False to take the tensors that match)"
        )
    with torch.no_grad():
        for k, v in state.items():
            if k in own:
                own[k].copy_(v)  # casts to the model's dtype and device
    if not strict and (report.missing or report.unexpected):
        log.warning("%s: loaded non-strictly into %s; missing %s; unexpected %s",
                    label, name, _keys(report.missing) or "none", _keys(report.unexpected) or "none")  # fmt: skip
    return report
