"""Errors, the bad-image policy, the array cache location and checks shared by the DataModules."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .._paths import cache_root

__all__ = ["BadImageError", "DataError", "cache_root", "check_model_classes", "check_policy", "describe_dir"]

POLICIES = ("fail", "skip")


class DataError(RuntimeError):
    """The data folder is missing, has the wrong layout, or does not match the expected classes."""


class BadImageError(DataError):
    """An image file could not be decoded (corrupt, truncated, empty or not an image); the message names it."""


def check_policy(on_bad_image: str) -> str:
    """Validate an ``on_bad_image`` value: ``"fail"`` raises naming the file, ``"skip"`` warns and counts."""
    if on_bad_image not in POLICIES:
        raise ValueError(f"on_bad_image must be one of {POLICIES}, got {on_bad_image!r}")
    return on_bad_image


def describe_dir(path: Path, limit: int = 8) -> str:
    """What a folder holds, for error messages: "does not exist", "is empty" or the first few entry names."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return f"{path} is empty"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{path} holds {', '.join(names[:limit])}{more}"


def model_num_classes(module: Any) -> int | None:
    """The class count a LightningModule (or plain model) was built for, if it says: ``hparams.num_classes``,
    a ``num_classes`` attribute, or that of its ``model`` attribute."""
    hparams = getattr(module, "hparams", None)
    if hparams is not None and isinstance(hparams.get("num_classes"), int):
        return hparams["num_classes"]
    for obj in (module, getattr(module, "model", None)):
        n = getattr(obj, "num_classes", None)
        if isinstance(n, int):
            return n
    return None


def check_model_classes(trainer: Any, found: int, what: str) -> None:
    """Raise when the model attached to ``trainer`` was built for a different number of classes than the data."""
    module = getattr(trainer, "lightning_module", None) if trainer is not None else None
    expected = model_num_classes(module) if module is not None else None
    if expected is not None and expected != found:
        raise DataError(
            f"{what} has {found} classes but the model was built for {expected} "
            f"(set model.num_classes: {found}, or link it to data.num_classes)"
        )


def warn_skipped(exc: BadImageError, count: int) -> None:
    """The warning the ``skip`` policy emits for every unreadable image (the error names the file)."""
    warnings.warn(f"{exc}; skipped ({count} skipped so far)", stacklevel=3)
