"""Shared test setup: thread count under pytest-xdist and the real-data fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist every worker is its own process; one intra-op thread each keeps `-n 2` on two cores from
# oversubscribing (2 workers x N threads fighting over 2 cores is slower than 2 x 1).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before any inter-op work has started
        pass


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
