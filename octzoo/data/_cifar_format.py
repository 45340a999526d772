"""The CIFAR-10 format: its classes, the decoded arrays, and reading the official python pickles safely."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._common import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PICKLE_DIR = "cifar-10-batches-py"
PICKLE_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
SIZE = 32


@dataclass
class CifarArrays:
    """Decoded CIFAR-10: images (N, 32, 32, 3) uint8 RGB and int64 labels per split, plus skipped file names."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    skipped: list[str] = field(default_factory=list)


def check_classes(found: list[str] | set[str], where: str) -> None:
    """Raise unless ``found`` is exactly the ten CIFAR-10 class names."""
    if set(found) != set(CIFAR10_CLASSES):
        missing = sorted(set(CIFAR10_CLASSES) - set(found))
        extra = sorted(set(found) - set(CIFAR10_CLASSES))
        raise DataError(
            f"{where}: found classes {sorted(found)}, expected the CIFAR-10 classes {list(CIFAR10_CLASSES)} "
            f"(missing {missing}, unexpected {extra}); each split needs one folder per class, named as listed: "
            "rename or add the folders, or point data_dir at a complete copy"
        )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batch dicts and nothing else: only numpy array reconstruction may be imported."""

    ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        canonical = module.replace("numpy.core", "numpy._core", 1) if module.startswith("numpy.core") else module
        if (canonical, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")
        if not hasattr(np, "_core"):  # numpy 1.x
            canonical = canonical.replace("numpy._core", "numpy.core", 1)
        return super().find_class(canonical, name)


def _unpickle(data: bytes, name: str) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"cannot read CIFAR-10 batch file {name}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 batch file {name} holds a {type(obj).__name__}, expected a dict")
    return obj


def _batch_arrays(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, name)
    if b"data" not in d or b"labels" not in d:
        raise DataError(f"CIFAR-10 batch file {name} has keys {sorted(d)}, expected b'data' and b'labels'")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * SIZE * SIZE or len(y) != len(x):
        raise DataError(
            f"CIFAR-10 batch file {name}: data is {x.dtype} {x.shape} with {len(y)} labels, "
            f"expected uint8 (N, {3 * SIZE * SIZE}) and N labels"
        )
    if len(y) and (y.min() < 0 or y.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"CIFAR-10 batch file {name}: labels span {y.min()}..{y.max()}, expected 0..9")
    return x.reshape(-1, 3, SIZE, SIZE).transpose(0, 2, 3, 1), y


def _check_meta(data: bytes, name: str) -> None:
    names = _unpickle(data, name).get(b"label_names")
    if names is not None:
        found = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if found != list(CIFAR10_CLASSES):
            check_classes(found, name)
            raise DataError(f"{name}: label_names {found} are not in the CIFAR-10 order {list(CIFAR10_CLASSES)}")


def pickle_arrays(files: dict[str, bytes], where: str) -> CifarArrays:
    missing = [f for f in PICKLE_FILES if f not in files]
    if missing:
        raise DataError(
            f"{where} lacks {', '.join(missing)} (found {', '.join(sorted(files)) or 'none of the batch files'}); "
            "download it again (download: true) or use an image-folder copy"
        )
    if "batches.meta" in files:
        _check_meta(files["batches.meta"], f"{where}/batches.meta")
    parts = [_batch_arrays(files[f], f"{where}/{f}") for f in PICKLE_FILES]
    train_x, train_y = np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]])
    return CifarArrays(train_x, train_y, np.ascontiguousarray(parts[5][0]), parts[5][1])


def read_pickle_dir(path: Path) -> CifarArrays:
    """Read the official cifar-10-batches-py folder (data_batch_1..5, test_batch, batches.meta)."""
    files = {f.name: f.read_bytes() for f in path.iterdir() if f.name in PICKLE_FILES + ("batches.meta",)}
    return pickle_arrays(files, str(path))
