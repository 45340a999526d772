"""Loading weights into octzoo models: octzoo's safetensors files and torchvision state dicts.

Nothing is ever unpickled with code execution: safetensors files hold tensors only, and other files go
through ``torch.load(weights_only=True)``, which refuses any object that is not a tensor or a container.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["load_pretrained", "read_state_dict", "remap_by_position"]


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from a safetensors file or a torch file (never executing code), on the CPU."""
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
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    return obj


def remap_by_position(src: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map a state dict with other names (torchvision's) onto ``model``'s keys by position.

    torchvision's ResNets and MobileNetV2 register their tensors in the same order as octzoo's plain
    models (conv, then norm, block by block), so the i-th tensor of one is the i-th of the other; the last
    name component (weight, bias, running_mean, ...) and the shape must agree at every position.
    """
    dst = model.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"the file has {len(src)} tensors, {type(model).__name__} expects {len(dst)}")
    out = {}
    for (k_src, v), (k_dst, ref) in zip(src.items(), dst.items(), strict=True):
        if k_src.rsplit(".", 1)[-1] != k_dst.rsplit(".", 1)[-1] or v.shape != ref.shape:
            raise ValueError(
                f"tensor {k_src!r} {tuple(v.shape)} does not match the model's {k_dst!r} {tuple(ref.shape)}: "
                f"the weights are for another architecture or configuration"
            )
        out[k_dst] = v
    return out


def load_pretrained(model: nn.Module, pretrained: bool | str | os.PathLike) -> None:
    """Load ``pretrained`` (a file path; ``True`` means published weights) into ``model`` strictly."""
    name = model.pretrained_cfg.get("architecture", type(model).__name__)
    if pretrained is True:
        raise ValueError(
            f"no published weights for {name} yet; pass the path of a weights file as pretrained='path/to/file'"
        )
    path = Path(pretrained)
    state = read_state_dict(path)
    own = model.state_dict()
    if set(state) != set(own):
        state = remap_by_position(state, model)
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ValueError(
                f"{path}: {k!r} has shape {tuple(v.shape)}, {name} expects {tuple(own[k].shape)}; "
                f"the weights are for another configuration (num_classes, alpha or width)"
            )
    model.load_state_dict(state, strict=True)
