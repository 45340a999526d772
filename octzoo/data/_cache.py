"""Decode CIFAR-10 once: decoded arrays are cached in an .npz keyed by a fingerprint of the source files."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import _cifar_files as files
from ._cifar_format import CifarArrays
from ._common import BadImageError, cache_root

__all__ = ["cache_path", "load_cifar"]

CACHE_VERSION = 1
ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def _fingerprint(source: files.CifarSource, listing: dict | None) -> str:
    """A digest of the file list: every (relative path, size, mtime) of a tree, or the archive's name, size and
    mtime. Changing, adding or removing a file changes it; moving the whole copy does not."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"octzoo-cifar10-cache v{CACHE_VERSION} {source.kind}\n".encode())
    if listing is None:
        st = source.path.stat()
        h.update(f"{source.path.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    else:
        for split in files.SPLITS:
            h.update("".join(f"{rel}\t{size}\t{mtime}\n" for rel, _, size, mtime in listing[split]).encode())
    return h.hexdigest()


def cache_path(source: files.CifarSource, cache_dir: str | os.PathLike | None, listing: dict | None = None) -> Path:
    """The cache file of a tree or archive source (pickle folders are read directly and have none)."""
    if source.kind == "folder" and listing is None:
        listing = files.list_tree(source.path)
    return cache_root(cache_dir) / f"cifar10-{source.kind}-{_fingerprint(source, listing)}.npz"


def _save(path: Path, arrays: CifarArrays, source: files.CifarSource) -> None:
    """Write atomically (a temporary file renamed into place), so concurrent writers and readers never see half a
    file; a folder that cannot be written only costs a warning (the arrays stay in memory)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                **{k: getattr(arrays, k) for k in ARRAYS},
                skipped=np.asarray(arrays.skipped, dtype=str),
                source=np.asarray(str(source.path)),
            )
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        warnings.warn(
            f"cannot write the CIFAR-10 array cache {path} ({exc}); set data.cache_dir or "
            "$OCTZOO_CACHE_DIR to a writable folder to avoid decoding on every run",
            stacklevel=3,
        )


def _load(path: Path) -> CifarArrays | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return CifarArrays(*(z[k] for k in ARRAYS), skipped=[str(s) for s in z["skipped"]])
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"ignoring unreadable cache {path} ({exc}); decoding again", stacklevel=3)
        return None


def load_cifar(
    data_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None, on_bad_image: str = "fail"
) -> tuple[CifarArrays, files.CifarSource, Path | None]:
    """Find CIFAR-10 under ``data_dir`` and return its arrays, the source and the cache file used (None for the
    pickles). Trees and archives are decoded on the first call and read from the cache (< 1 s) afterwards."""
    source = files.find_source(data_dir)
    if source.kind == "pickle":
        return files.read_pickle_dir(source.path), source, None
    listing = files.list_tree(source.path) if source.kind == "folder" else None
    path = cache_path(source, cache_dir, listing)
    arrays = _load(path) if path.is_file() else None
    if arrays is None:
        if source.kind == "folder":
            arrays = files.read_tree(source.path, listing, on_bad_image)
        else:
            arrays = files.read_archive(source.path, on_bad_image)
        _save(path, arrays, source)
    if arrays.skipped:
        if on_bad_image == "fail":  # only reachable from a cache written by an earlier run with "skip"
            raise BadImageError(
                f"cannot read image {arrays.skipped[0]} ({len(arrays.skipped)} unreadable images recorded in {path} "
                "by an earlier run with on_bad_image='skip'); fix or remove them, or use on_bad_image='skip'"
            )
        warnings.warn(
            f"skipped {len(arrays.skipped)} unreadable CIFAR-10 images (first: {arrays.skipped[0]})", stacklevel=2
        )
    return arrays, source, path
