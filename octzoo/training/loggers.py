"""The run-folder logger: Lightning's CSVLogger, claiming its ``version_N`` folder atomically and keeping the
metrics of a resumed run."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

__all__ = ["CSVLogger"]


class ExperimentWriter(_ExperimentWriter):
    """Lightning's CSV writer, appending to an existing ``metrics.csv`` instead of deleting it.

    Lightning's writer deletes the file when its folder is not empty, so a run resumed in its own folder lost
    the metrics of every epoch before the interruption."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def drop_rows_from(self, step: int) -> int:
        """Remove the rows logged at ``step`` or later (by a run that went on past the checkpoint it resumes
        from, which logs those steps again); returns how many were removed."""
        self.save()
        if not self._fs.isfile(self.metrics_file_path):
            return 0
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            fields, rows = reader.fieldnames or [], list(reader)
        kept = [r for r in rows if not (r.get("step") or "").isdigit() or int(r["step"]) < step]
        if len(kept) < len(rows):
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)
        return len(rows) - len(kept)


class CSVLogger(_CSVLogger):
    """``CSVLogger`` whose new version folder is created with ``os.mkdir`` when the version is chosen, and
    whose ``metrics.csv`` survives a resumed run (:class:`ExperimentWriter`).

    Lightning's logger picks "the highest version + 1" and creates the folder later, so two runs started
    together in one place both took ``version_0`` and wrote into each other's checkpoints and summary.
    Creating the folder is atomic: the run that loses the race takes the next number. Only rank zero
    claims (the other ranks receive its folder); remote file systems keep Lightning's behaviour.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ExperimentWriter(log_dir=self.log_dir)
        return self._experiment

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
