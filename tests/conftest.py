"""Shared test setup: thread count under pytest-xdist, the models each suite runs, and the real-data fixture."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import octzoo
from octzoo.models import model_entry

REPO_ROOT = Path(__file__).resolve().parents[1]

# One plain and one octave model per family (and per ResNet block type) run in the fast suite;
# the slow marker covers every registered model.
FAST = [
    "resnet20",
    "oct_resnet20",
    "oct_resnet18",
    "oct_resnet26",
    "mobilenet_v1",
    "oct_mobilenet_v1",
    "mobilenet_v2",
    "oct_mobilenet_v2",
]
ALL = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in octzoo.list_models()]


def small_input(name: str) -> tuple[int, int]:
    """An odd size that still reaches the last stage with more than one pixel."""
    return (13, 11) if model_entry(name).pretrained_cfg["input_size"][-1] == 32 else (67, 45)


# Under pytest-xdist every worker is its own process; one intra-op thread each keeps `-n 2` on two cores from
# oversubscribing (2 workers x N threads fighting over 2 cores is slower than 2 x 1).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before any inter-op work has started
        pass


@pytest.fixture(params=["fast", "definition"])
def operator_path(request):
    """Runs a test on the CPU eager fast path and on the operator's definition path (octzoo.layers.cpu_fast)."""
    from octzoo.layers import cpu_fast_path

    with cpu_fast_path(request.param == "fast"):
        yield request.param


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny tensors: intra-op threads only add overhead (tens of ms per op on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet_trainer(tmp_path: Path, epochs: int = 4, **kwargs):
    """A CPU Lightning Trainer without logger, checkpoints, progress bar or summary; ``kwargs`` override."""
    import lightning as L

    defaults = dict(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
    )
    return L.Trainer(**{**defaults, **kwargs})


def real_data_dir() -> Path:
    """Where the real data lives: $OCTZOO_REAL_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("OCTZOO_REAL_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real-data folder; skips when it is missing, or fails when OCTZOO_REQUIRE_REAL_DATA=1 (CI)."""
    path = real_data_dir()
    if path.is_dir():
        return path
    message = f"real data not found at {path}; set OCTZOO_REAL_DATA"
    if os.environ.get("OCTZOO_REQUIRE_REAL_DATA") == "1":
        pytest.fail(f"{message} (required because OCTZOO_REQUIRE_REAL_DATA=1)")
    pytest.skip(message)


PER_BATCH, N_TEST = 20, 30  # 5 x 20 training images and 30 test images in the generated pickles


def cifar_rows(n: int, start: int) -> np.ndarray:
    """(n, 3072) uint8 rows in the official layout (R, G, B planes of 32x32); the first two bytes number them."""
    rng = np.random.default_rng(start)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    ids = np.arange(start, start + n)
    data[:, 0], data[:, 1] = ids % 256, ids // 256
    return data


def write_cifar_pickles(root: Path) -> Path:
    """A cifar-10-batches-py folder pickled exactly as the official archive (protocol 2, bytes keys)."""
    from octzoo.data import CIFAR10_CLASSES

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = N_TEST if name == "test_batch" else PER_BATCH
        start = k * PER_BATCH
        batch = {
            b"batch_label": f"batch {k}".encode(),
            b"labels": [(start + i) % 10 for i in range(n)],
            b"data": cifar_rows(n, start),
            b"filenames": [f"img_{start + i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": PER_BATCH, b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture
def cifar10_pickles(tmp_path: Path) -> Path:
    """A data_dir holding a small generated CIFAR-10 in the official pickle format."""
    return write_cifar_pickles(tmp_path / "cifar")
