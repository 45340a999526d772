"""Checkpoints and run files that a crash cannot half-write.

Every file is written to a temporary file in its own folder, flushed and fsynced, then renamed over the
target with ``os.replace`` (atomic on POSIX and Windows), and the folder is fsynced so that the rename
survives a power cut. A crash, a full disk or an exception mid-write leaves the previous file byte for byte
and removes the temporary one (a SIGKILL can leave a ``.<name>.<pid>.*.tmp`` file beside it, never a torn
target; the next write of that file removes it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from weakref import proxy

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "atomic_write"]


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder for fsync; os.replace is already durable there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    return True


def _remove_leftovers(path: Path) -> None:
    """Delete the temporary files of ``path`` that killed processes on this machine left behind."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_running(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write`` on a temporary file beside ``path``, make it durable, then rename it over ``path``.

    The temporary file is ``.<name>.<pid>.<random>.tmp``; one left by a process killed mid-write is removed by
    the next successful write of the same file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    _remove_leftovers(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written with :func:`atomic_write` on local disks.

    ``last.ckpt`` and the best checkpoint are rewritten in place during a run; with this plugin a run killed
    or failing while it writes one still has the previous version to resume from. The checkpoint is
    serialised straight into the temporary file (no second in-memory copy, unlike Lightning's own atomic
    save). Remote paths (``s3://``, ...) go through Lightning's fsspec transaction as before. Loading is
    Lightning's: tensors come back on the CPU, whatever device saved them.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        local = isinstance(get_filesystem(path), LocalFileSystem) and "://" not in str(path)
        if storage_options is not None or not local:
            return super().save_checkpoint(checkpoint, path, storage_options)  # its error, or a remote file
        atomic_write(path, lambda f: torch.save(checkpoint, f))


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, every ``every_n_train_steps`` training steps and at the end of every epoch (after its
    validation), so that a killed run resumes mid-epoch, losing at most that many steps.

    The last training batch of an epoch is not checkpointed on its own: Lightning 2.6 resumes such a
    checkpoint as a finished epoch, skipping that epoch's validation, and leaves its epoch counters one short,
    so that a later mid-epoch checkpoint restores ``batch_idx`` at 0 and skips the next epoch's validation
    too. The end-of-epoch checkpoint is written in ``on_train_epoch_end`` instead, after validation, where
    Lightning resumes correctly.

    A step's checkpoint is written in ``on_train_batch_end``, before Lightning logs that step's metrics row.
    It goes to ``last.ckpt.part`` and becomes ``last.ckpt`` (an atomic rename) at the next hook after the
    row is logged: the next batch, a validation, the epoch's or the run's end. A run killed in between
    resumes from the previous step, whose rows are all in ``metrics.csv``; otherwise the row of the step it
    resumed after would be lost, the resume dropping only the rows logged past its checkpoint.
    """

    PART_SUFFIX = ".part"

    def __init__(self, every_n_train_steps: int = 1000, dirpath: _PATH | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,  # always last.ckpt, never last-v1.ckpt
        )
        self._staging = False
        self._pending: str | None = None  # last.ckpt's path while its successor waits in last.ckpt.part

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        if not self._staging:
            self._pending = None  # superseded: this save replaces last.ckpt itself
            return super()._save_checkpoint(trainer, filepath)
        trainer.save_checkpoint(filepath + self.PART_SUFFIX, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        self._pending = filepath

    def _publish(self, trainer) -> None:
        """``last.ckpt.part`` becomes ``last.ckpt``; the loggers hear of it then."""
        if self._pending is None:
            return
        filepath, self._pending = self._pending, None
        if trainer.is_global_zero:
            part = filepath + self.PART_SUFFIX
            if isinstance(self._fs, LocalFileSystem):
                os.replace(part, filepath)
                _fsync_dir(Path(filepath).parent)
            else:
                self._fs.mv(part, filepath)
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath:  # a part left by a killed run is older than last.ckpt's state
            part = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION + self.PART_SUFFIX)
            if self._fs.isfile(part):
                self._fs.rm(part)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._publish(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self._staging = True
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._staging = False

    def on_validation_start(self, trainer, pl_module) -> None:
        self._publish(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._publish(trainer)
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        self._publish(trainer)
