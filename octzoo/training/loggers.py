"""The run-folder logger: Lightning's CSVLogger, claiming its ``version_N`` folder atomically."""

from __future__ import annotations

import os

from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

__all__ = ["CSVLogger"]


class CSVLogger(_CSVLogger):
    """``CSVLogger`` whose new version folder is created with ``os.mkdir`` when the version is chosen.

    Lightning's logger picks "the highest version + 1" and creates the folder later, so two runs started
    together in one place both took ``version_0`` and wrote into each other's checkpoints and summary.
    Creating the folder is atomic: the run that loses the race takes the next number. Only rank zero
    claims (the other ranks receive its folder); remote file systems keep Lightning's behaviour.
    """

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0 or "file" not in self._fs.protocol:
            return version
        root = os.path.join(self._root_dir, self.name)
        os.makedirs(root, exist_ok=True)
        while True:
            try:
                os.mkdir(os.path.join(root, f"version_{version}"))
                return version
            except FileExistsError:
                version += 1
