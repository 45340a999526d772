"""Published weights: the ``arch.tag`` registry, finding and checking their files, and torchvision's weights.

Every published weight is a safetensors file described by one entry of ``octzoo/weights/registry.json``:
the architecture and its arguments, what it measured on which data set, the preprocessing it expects and
how it was trained (config, command, commit), and the file's size and sha256. A file is looked for in the
package (``octzoo/weights/``), then in the cache (``<cache>/weights``, see ``octzoo._paths.cache_root``), and
otherwise downloaded from the entry's ``url`` into the cache; whichever copy is used must match the entry's
size and sha256, or it is refused.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .._paths import cache_root

__all__ = [
    "PretrainedWeight",
    "default_weight",
    "list_pretrained",
    "looks_like_a_file",
    "pretrained_weight",
    "sha256_of",
    "split_tag",
    "torchvision_state_dict",
    "verify_file",
    "weight_file",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
REGISTRY_FILE = WEIGHTS_DIR / "registry.json"
SCHEMA = 1

# field -> type(s) of every registry entry; nested dicts list their own required fields
_FIELDS: dict[str, Any] = {
    "name": str,
    "architecture": str,
    "model_kwargs": dict,
    "num_classes": int,
    "in_chans": int,
    "params": int,
    "macs": int,
    "dataset": str,
    "metrics": {"top1": float, "top5": float, "split": str, "images": int},
    "preprocessing": {"input_size": list, "mean": list, "std": list, "crop_pct": float, "interpolation": str},
    "class_names": list,
    "training": {
        "config": list,
        "overrides": list,
        "command": str,
        "commit": str,
        "epochs": int,
        "wall_time_s": float,
        "precision": str,
        "seed": int,
    },
    "file": {"name": str, "size": int, "sha256": str, "url": (str, type(None))},
}


def _check_fields(d: Any, spec: dict[str, Any], where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    missing = [k for k in spec if k not in d]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    for key, kind in spec.items():
        value = d[key]
        if isinstance(kind, dict):
            _check_fields(value, kind, f"{where}.{key}")
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # JSON writes 1.0 as 1
        if not ok:
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ValueError(f"{where}.{key}: expected {names}, got {value!r}")


@dataclass(frozen=True)
class PretrainedWeight:
    """One published weight (an entry of the registry); ``name`` is ``"<architecture>.<tag>"``."""

    name: str
    architecture: str
    model_kwargs: dict
    num_classes: int
    in_chans: int
    params: int
    macs: int
    dataset: str
    metrics: dict
    preprocessing: dict
    class_names: list
    training: dict
    file: dict

    @property
    def tag(self) -> str:
        return split_tag(self.name)[1]

    @property
    def alpha(self) -> float:
        return float(self.model_kwargs.get("alpha", 0.0))

    @classmethod
    def from_dict(cls, d: dict) -> PretrainedWeight:
        """Validate an entry: every field present with its type, the name ``architecture.tag``, a sha256 of 64
        hex digits, finite metrics in [0, 100] and one class name per class."""
        where = f"weight {d.get('name', '?')!r}" if isinstance(d, dict) else "weight entry"
        _check_fields(d, _FIELDS, where)
        arch, tag = split_tag(d["name"])
        if arch != d["architecture"] or not tag:
            raise ValueError(f"{where}: the name must be '{d['architecture']}.<tag>'")
        sha = d["file"]["sha256"]
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"{where}: file.sha256 must be 64 lowercase hex digits, got {sha!r}")
        for k in ("top1", "top5"):
            v = d["metrics"][k]
            if not (math.isfinite(v) and 0.0 <= v <= 100.0):
                raise ValueError(f"{where}: metrics.{k} must be a percentage, got {v!r}")
        if len(d["class_names"]) != d["num_classes"]:
            raise ValueError(f"{where}: {len(d['class_names'])} class names for {d['num_classes']} classes")
        return cls(**{k: d[k] for k in _FIELDS})

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in _FIELDS}

    def pretrained_cfg(self) -> dict:
        """The model's ``pretrained_cfg`` for these weights (timm's keys plus the tag and the card's metrics)."""
        p = self.preprocessing
        return dict(
            input_size=tuple(p["input_size"]),
            mean=tuple(p["mean"]),
            std=tuple(p["std"]),
            crop_pct=p["crop_pct"],
            interpolation=p["interpolation"],
            num_classes=self.num_classes,
            tag=self.tag,
            dataset=self.dataset,
            metrics={"top1": self.metrics["top1"], "top5": self.metrics["top5"]},
            class_names=tuple(self.class_names),
            file=self.file["name"],
            sha256=self.file["sha256"],
        )


def split_tag(name: str) -> tuple[str, str]:
    """``"oct_resnet20.a250_c10"`` -> ``("oct_resnet20", "a250_c10")``; no tag -> ``(name, "")`` (timm's rule)."""
    arch, _, tag = str(name).partition(".")
    return arch, tag


def looks_like_a_file(value: str | os.PathLike) -> bool:
    """A ``pretrained`` or export source naming a file (it exists, has a folder or a weights suffix), not a tag."""
    path = Path(value)
    return path.is_file() or len(path.parts) > 1 or path.suffix in (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def read_registry(path: str | os.PathLike) -> dict[str, PretrainedWeight]:
    """Read and validate a registry file: ``{"schema": 1, "weights": [entry, ...]}``, names unique."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("weights"), list):
        raise ValueError(f"{path}: expected {{'schema': {SCHEMA}, 'weights': [...]}}")
    out: dict[str, PretrainedWeight] = {}
    for d in data["weights"]:
        w = PretrainedWeight.from_dict(d)
        if w.name in out:
            raise ValueError(f"{path}: weight {w.name!r} is listed twice")
        out[w.name] = w
    return out


@functools.cache
def _registry() -> dict[str, PretrainedWeight]:
    return read_registry(REGISTRY_FILE)


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Names (``arch.tag``) of the published weights, sorted; ``pattern`` is a shell-style wildcard."""
    import fnmatch

    names = sorted(_registry())
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def pretrained_weight(name: str) -> PretrainedWeight:
    """The registry entry ``arch.tag``, or a ``ValueError`` listing the architecture's published tags."""
    try:
        return _registry()[name]
    except KeyError:
        arch = split_tag(name)[0]
        own = list_pretrained(f"{arch}.*")
        known = f"published for {arch}: {', '.join(own)}" if own else f"{arch} has no published weights"
        close = difflib.get_close_matches(name, list(_registry()), n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]!r}?" if close and not own else ""
        raise ValueError(f"unknown pretrained weight {name!r} ({known}){hint}") from None


def default_weight(arch: str, default_alpha: float | None) -> PretrainedWeight | None:
    """What ``pretrained=True`` loads: the architecture's weight at its default alpha (plain models: alpha 0).

    Where several weights share that alpha, the one listed first in the registry file is the default (timm's
    rule: an architecture's first tag); the package's registry lists its best weight first.
    """
    alpha = 0.0 if default_alpha is None else default_alpha
    return next((w for w in _registry().values() if w.architecture == arch and w.alpha == alpha), None)


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 lowercase hex digits (the registry's ``file.sha256``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, weight: PretrainedWeight) -> Path:
    """Refuse a copy whose size or sha256 is not the registry's (truncated, corrupt or replaced)."""
    expected = weight.file
    size = path.stat().st_size
    if size != expected["size"]:
        raise ValueError(
            f"{path}: {size} bytes, but {weight.name} is {expected['size']} bytes (sha256 {expected['sha256']}); "
            f"the file is truncated or not this weight: delete it to fetch it again"
        )
    digest = sha256_of(path)
    if digest != expected["sha256"]:
        raise ValueError(
            f"{path}: sha256 {digest} does not match {weight.name}'s {expected['sha256']}; the file is corrupt "
            f"or was changed: delete it to fetch it again"
        )
    return path


def weight_file(weight: PretrainedWeight, cache_dir: str | os.PathLike | None = None) -> Path:
    """The checked local file of a published weight: in the package, in the cache, or downloaded to the cache."""
    name = weight.file["name"]
    cached = cache_root(cache_dir) / "weights" / name
    for candidate in (WEIGHTS_DIR / name, cached):
        if candidate.is_file():
            return verify_file(candidate, weight)
    url = weight.file["url"]
    if not url:
        raise FileNotFoundError(
            f"{weight.name}: {name} is neither in the package ({WEIGHTS_DIR}) nor in the cache ({cached.parent}), "
            f"and the registry has no download address; reinstall octzoo or copy the file into the cache"
        )
    from torch.hub import download_url_to_file

    cached.parent.mkdir(parents=True, exist_ok=True)
    try:  # downloads to a temporary file and checks the hash prefix before moving it into place
        download_url_to_file(url, str(cached), hash_prefix=weight.file["sha256"], progress=True)
    except (OSError, RuntimeError) as e:
        raise RuntimeError(
            f"{weight.name}: could not download {url} ({e}); when offline, fetch the file elsewhere and copy it to "
            f"{cached}"
        ) from e
    return verify_file(cached, weight)


def torchvision_state_dict(arch: str) -> tuple[dict[str, Tensor], Any]:
    """torchvision's default ImageNet weights for ``arch`` (``resnet50``, ``mobilenet_v2``, ...), through
    torchvision's own weight API (downloaded into torch.hub's cache when online); returns (state dict, enum)."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as e:
        raise ValueError(f"torchvision has no weights for {arch!r}; pretrained='torchvision' covers its ResNets "
                         "and mobilenet_v2") from e  # fmt: skip
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as e:
        import torch.hub

        target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        raise RuntimeError(
            f"could not get torchvision's {weights} from {weights.url} ({e}); when offline, download that file "
            f"elsewhere and either put it at {target} or pass pretrained='path/to/{target.name}'"
        ) from e
    return state, weights
