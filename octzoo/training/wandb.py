"""Weights & Biases logging that never prompts and never hangs without credentials."""

from __future__ import annotations

import netrc
import os
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["WandbLogger", "wandb_credentials_found"]


def wandb_credentials_found() -> bool:
    """True when an API key is set (``WANDB_API_KEY``) or stored by ``wandb login`` (netrc); no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbLogger(_WandbLogger):
    """Lightning's ``WandbLogger``, offline unless credentials are found (``offline=None``, the default).

    Offline runs are written under ``save_dir/wandb`` and uploaded later with ``wandb sync``. A disabled
    W&B (``WANDB_MODE=disabled``) is honoured as it is.
    """

    def __init__(self, *args: Any, offline: bool | None = None, **kwargs: Any) -> None:
        mode = os.environ.get("WANDB_MODE", "")
        if offline is None:
            offline = mode in ("offline", "dryrun") or (mode != "disabled" and not wandb_credentials_found())
            if offline and mode not in ("offline", "dryrun"):
                rank_zero_warn(
                    "W&B: no credentials found (set WANDB_API_KEY or run `wandb login`), so this run logs "
                    "offline; upload it later with `wandb sync <save_dir>/wandb/offline-run-*`."
                )
        kwargs.setdefault("settings", {"silent": True, "init_timeout": 60})
        super().__init__(*args, offline=offline, **kwargs)
