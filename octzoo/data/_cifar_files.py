"""Finding and reading CIFAR-10 on disk: the official python pickles, an image-folder tree, or a .tar.gz of either."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._cifar_format import (
    CIFAR10_CLASSES,
    PICKLE_DIR,
    PICKLE_FILES,
    SIZE,
    CifarArrays,
    check_classes,
    pickle_arrays,
    read_pickle_dir,
)
from ._common import DataError, describe_dir
from ._images import decode_small

__all__ = ["CifarSource", "find_source", "list_tree", "not_found", "read_archive", "read_pickle_dir", "read_tree"]

SPLITS = ("train", "test")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CHUNK = 2048  # files per decoding call


@dataclass(frozen=True)
class CifarSource:
    """Where CIFAR-10 was found: ``kind`` is "pickle" (a cifar-10-batches-py folder), "folder" (a root holding
    train/<class>/ and test/<class>/) or "archive" (a .tar.gz of either)."""

    kind: str
    path: Path


def not_found(data_dir: Path, found: str | None = None) -> DataError:
    """The error for a data_dir without CIFAR-10: what was found, the layouts accepted and how to get one."""
    return DataError(
        f"CIFAR-10 not found: {found or describe_dir(data_dir)}. Expected one of:\n"
        f"  - {data_dir / PICKLE_DIR}/ with {', '.join(PICKLE_FILES)} (the official python version: set "
        "download: true (--data.download true) on a machine that is online to fetch it);\n"
        f"  - an image-folder tree {data_dir}/train/<class>/*.jpg and {data_dir}/test/<class>/*.jpg with the ten "
        "CIFAR-10 class folders, or a folder holding one such tree (e.g. the JPEG copy: "
        f"tar -xzf cifar10-jpeg.tar.gz -C {data_dir});\n"
        "  - the path of a .tar.gz of either layout (data_dir: path/to/cifar10-jpeg.tar.gz), read without extracting."
    )


def _is_tree(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "test").is_dir()


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def find_source(data_dir: str | os.PathLike) -> CifarSource:
    """Locate CIFAR-10 under ``data_dir``; raises :class:`DataError` saying what was found and what is expected."""
    root = Path(data_dir).expanduser()
    if _is_archive(root):
        return CifarSource("archive", root)
    if not root.is_dir():
        raise not_found(root)
    if (root / PICKLE_DIR).is_dir():
        return CifarSource("pickle", root / PICKLE_DIR)
    if (root / "data_batch_1").is_file():
        return CifarSource("pickle", root)
    if _is_tree(root):
        return CifarSource("folder", root)
    trees = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _is_tree(d))
    if len(trees) == 1:
        return CifarSource("folder", trees[0])
    if trees:
        names = ", ".join(d.name for d in trees)
        raise DataError(f"several CIFAR-10 trees under {root}: {names}; point data_dir at one of them")
    archives = sorted(f for f in root.iterdir() if "cifar" in f.name.lower() and _is_archive(f))
    if len(archives) == 1:
        return CifarSource("archive", archives[0])
    raise not_found(root)


# -- image-folder trees and archives -----------------------------------------------------------------------------


def list_tree(root: Path) -> dict[str, list[tuple[str, int, int, int]]]:
    """Per split, the sorted (path relative to root, label, size, mtime_ns) of every non-hidden file under
    split/<class>/ (about 0.2 s for the 60,000 CIFAR files)."""
    listing = {}
    for split in SPLITS:
        with os.scandir(root / split) as it:
            classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        check_classes(classes, str(root / split))
        entries = []
        for label, cls in enumerate(CIFAR10_CLASSES):
            with os.scandir(root / split / cls) as it:
                found = {e.name: e.stat() for e in it if not e.name.startswith(".") and e.is_file()}
            if not found:
                raise DataError(f"class folder {root / split / cls} is empty; expected the {cls} images of {split}")
            prefix = f"{split}/{cls}/"
            entries += [(prefix + n, label, found[n].st_size, found[n].st_mtime_ns) for n in sorted(found)]
        listing[split] = entries
    return listing


def _decode_split(items: list[tuple[str, int, bytes]], on_bad_image: str, skipped: list[str]) -> tuple:
    xs, ys = [], []
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        x, keep = decode_small([c[0] for c in chunk], [c[2] for c in chunk], SIZE, on_bad_image, skipped)
        xs.append(x)
        ys.append(np.asarray([c[1] for c in chunk], dtype=np.int64)[keep])
    return np.concatenate(xs), np.concatenate(ys)


def read_tree(root: Path, listing: dict, on_bad_image: str) -> CifarArrays:
    """Decode every image of a listed image-folder tree (``list_tree``) into arrays."""
    skipped: list[str] = []
    splits = {}
    for split in SPLITS:
        items = [(str(root / rel), label, (root / rel).read_bytes()) for rel, label, *_ in listing[split]]
        splits[split] = _decode_split(items, on_bad_image, skipped)
    return CifarArrays(*splits["train"], *splits["test"], skipped=skipped)


def read_archive(path: Path, on_bad_image: str) -> CifarArrays:
    """Stream a .tar(.gz) holding an image-folder tree (``*/train/<class>/*``, ``*/test/<class>/*``) or the
    official ``cifar-10-batches-py/`` pickles, decoding in memory: nothing is extracted to disk."""
    pickles: dict[str, bytes] = {}
    items: dict[str, list] = {split: [] for split in SPLITS}
    classes: dict[str, set] = {split: set() for split in SPLITS}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                parts = m.name.split("/")
                if not m.isfile() or parts[-1].startswith("."):
                    continue
                if parts[-1] in PICKLE_FILES + ("batches.meta",) and parts[-2:-1] == [PICKLE_DIR]:
                    pickles[parts[-1]] = tar.extractfile(m).read()
                elif len(parts) >= 3 and parts[-3] in SPLITS:
                    classes[parts[-3]].add(parts[-2])
                    if parts[-2] in CIFAR10_CLASSES:
                        label = CIFAR10_CLASSES.index(parts[-2])
                        items[parts[-3]].append((f"{path}:{m.name}", label, tar.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}") from exc
    if pickles:
        return pickle_arrays(pickles, f"{path}:{PICKLE_DIR}")
    if not items["train"] and not items["test"]:
        raise not_found(path, f"archive {path} holds neither {PICKLE_DIR}/ nor train/<class>/ and test/<class>/ files")
    skipped: list[str] = []
    splits = {}
    for split in SPLITS:
        check_classes(classes[split], f"{path} ({split}/)")
        splits[split] = _decode_split(sorted(items[split], key=lambda t: (t[1], t[0])), on_bad_image, skipped)
    return CifarArrays(*splits["train"], *splits["test"], skipped=skipped)
