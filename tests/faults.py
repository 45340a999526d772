"""Faults injected into an ``octzoo fit`` subprocess (``class_path: faults.KillAt`` with ``tests/`` on PYTHONPATH).

Each kills its own process with SIGKILL, as the OOM killer or a pre-empted node would: no exception, no
``finally``, no callback runs after it.
"""

from __future__ import annotations

import io
import os
import signal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    """SIGKILL the run at one point.

    - ``"step"``: right after the optimiser step ``step`` (before its checkpoint is written: checkpoint
      callbacks run last, so the run loses that step and must redo it);
    - ``"write"``: halfway through writing the checkpoint of step ``step`` (half the bytes on disk);
    - ``"log"``: after the checkpoint of step ``step`` is written, before that step's metrics row is logged;
    - ``"validation"``: in the first validation batch after training step ``step``;
    - ``"epoch_start"``: when the first epoch after training step ``step`` starts (its predecessor's end-of-epoch
      checkpoint written).
    """

    def __init__(self, phase: str, step: int) -> None:
        if phase not in ("step", "write", "log", "validation", "epoch_start"):
            raise ValueError(f"phase={phase!r}: use 'step', 'write', 'log', 'validation' or 'epoch_start'")
        self.phase, self.step = phase, step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        if self.phase == "step":
            _die()
        if self.phase == "write":
            real_save = torch.save

            def save_half_then_die(obj, f, *args, **kwargs):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                _die()

            torch.save = save_half_then_die
        if self.phase == "log":  # Lightning logs the step's row after every on_train_batch_end hook
            trainer._logger_connector.update_train_step_metrics = _die

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.phase == "validation" and not trainer.sanity_checking and trainer.global_step >= self.step:
            _die()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        if self.phase == "epoch_start" and trainer.global_step >= self.step:
            _die()
