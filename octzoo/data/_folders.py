"""Image-folder layouts for ImageNet: scanning train/<wnid>/ and val/<wnid>/, and datasets that read the files."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ._common import BadImageError, DataError, describe_dir, warn_skipped
from ._images import open_rgb

__all__ = ["ImageFileDataset", "SkipCollate", "scan_imagenet"]

HOW_TO_GET = (
    "ImageNet cannot be downloaded automatically: get ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
    "ILSVRC2012_devkit_t12.tar.gz from https://image-net.org, put them in data_dir and run "
    "torchvision.datasets.ImageNet(data_dir, split='train') and split='val' once to unpack them into this layout"
)


def _files(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.path for e in it if not e.name.startswith(".") and e.is_file())


def _scan_split(folder: Path) -> dict[str, list[str]]:
    """{class folder name: sorted file paths} of one split; raises on an empty class folder."""
    with os.scandir(folder) as it:
        classes = sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    found = {}
    for wnid in classes:
        files = _files(folder / wnid)
        if not files:
            raise DataError(f"class folder {folder / wnid} is empty; every class needs at least one image")
        found[wnid] = files
    return found


def _flat_val(root: Path, meta: Any) -> dict[str, list[str]] | None:
    """torchvision's layout before its val archive is sorted: val/*.JPEG labelled by ``meta.bin``'s val_wnids."""
    files = _files(root / "val")
    if meta is None or not files:
        return None
    wnids = list(meta[1])
    if len(wnids) != len(files):
        raise DataError(f"{root / 'val'} holds {len(files)} files but meta.bin labels {len(wnids)} of them")
    out: dict[str, list[str]] = {}
    for path, wnid in zip(files, wnids, strict=True):
        out.setdefault(wnid, []).append(path)
    return out


def scan_imagenet(root: Path, num_classes: int) -> tuple[list[str], dict[str, list[tuple[str, int]]], dict]:
    """Scan ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``: returns the sorted class folder names, the
    (path, label) samples per split, and {wnid: names} from torchvision's ``meta.bin`` when present. Raises a
    :class:`DataError` saying what was found and what is expected for every layout problem."""
    if not root.is_dir() or not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DataError(
            f"ImageNet not found: {describe_dir(root)}. Expected {root}/train/<wnid>/*.JPEG and "
            f"{root}/val/<wnid>/*.JPEG (the image-folder layout torchvision's ImageNet also uses). {HOW_TO_GET}"
        )
    meta_bin = root / "meta.bin"
    meta = torch.load(meta_bin, map_location="cpu", weights_only=True) if meta_bin.is_file() else None
    train = _scan_split(root / "train")
    val = _scan_split(root / "val") or _flat_val(root, meta) or {}
    for name, split in (("train", train), ("val", val)):
        if not split:
            raise DataError(f"no class folders in {root / name}: {describe_dir(root / name)}; expected <wnid>/ folders")
    only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
    if only_train or only_val:
        raise DataError(
            f"train/ and val/ under {root} hold different classes: {len(train)} in train/, {len(val)} in val/; "
            f"in train/ but not in val/: {only_train[:10]}{' ...' if len(only_train) > 10 else ''}; "
            f"in val/ but not in train/: {only_val[:10]}{' ...' if len(only_val) > 10 else ''}"
        )
    if len(train) != num_classes:
        raise DataError(
            f"found {len(train)} class folders in {root / 'train'}, expected num_classes={num_classes} "
            "(set data.num_classes to the number of classes of this copy, and build the model for it)"
        )
    classes = sorted(train)
    label = {wnid: i for i, wnid in enumerate(classes)}
    samples = {
        name: [(p, label[w]) for w in classes for p in split[w]] for name, split in (("train", train), ("val", val))
    }
    return classes, samples, dict(meta[0]) if meta is not None else {}


class ImageFileDataset(Dataset):
    """(path, label) samples read with :func:`open_rgb` (every mode becomes RGB) and then ``transform``.

    ``on_bad_image="fail"`` raises :class:`BadImageError` naming the file; ``"skip"`` returns None for it (the
    collate function :class:`SkipCollate` leaves it out of the batch), warns, and counts it in ``skipped``,
    a counter shared with DataLoader worker processes.
    """

    def __init__(self, samples: list[tuple[str, int]], transform: Callable, on_bad_image: str = "fail") -> None:
        self.samples, self.transform, self.on_bad_image = samples, transform, on_bad_image
        self._skipped = multiprocessing.Value("q", 0)

    @property
    def skipped(self) -> int:
        """How many reads were skipped so far, in this process and its workers (a file skipped in two epochs
        counts twice)."""
        return int(self._skipped.value)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        path, label = self.samples[index]
        try:
            image = open_rgb(path)
        except BadImageError as exc:
            if self.on_bad_image == "fail":
                raise
            with self._skipped.get_lock():
                self._skipped.value += 1
                count = self._skipped.value
            warn_skipped(exc, count)
            return None
        return self.transform(image), label


class SkipCollate:
    """``default_collate`` over the samples that loaded; a batch whose every file was skipped is empty."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, batch: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
        kept = [b for b in batch if b is not None]
        if not kept:
            size = self.image_size
            return torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        return tuple(default_collate(kept))
