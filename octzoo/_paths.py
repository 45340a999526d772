"""Where octzoo keeps what it downloads or decodes (shared by the data and the weights)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$OCTZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/octzoo`` (``~/.cache/octzoo``). Caches
    never go into the data folder or the package, which may be read-only or shared."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("OCTZOO_CACHE_DIR"):
        return Path(os.environ["OCTZOO_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "octzoo"
