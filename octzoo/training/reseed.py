"""Random numbers of a training step that do not depend on what ran before it, so a resumed run repeats them."""

from __future__ import annotations

import os
import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ReseedEachBatch"]


class ReseedEachBatch(Callback):
    """Seeds torch (CPU and CUDA), NumPy and ``random`` before every training batch from (seed, number of
    training batches so far, rank).

    Lightning's checkpoints hold the model, optimiser, schedulers, loops and callbacks, but not the global
    random generators, and a restarted process also draws them in another order (each new DataLoader iterator
    takes a number from torch's). Whatever a step draws (dropout masks, mixup/cutmix, ``torch.rand`` in user
    code) then differs after a resume. Seeding each batch from its place makes a resumed run draw exactly what
    the uninterrupted run drew; each DDP rank gets its own stream.

    ``seed``: the run's seed; ``None`` takes the one ``seed_everything`` set (``PL_GLOBAL_SEED``), and without
    one the callback does nothing (the run is not reproducible anyway).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._warned = False

    def _base_seed(self) -> int | None:
        if self.seed is not None:
            return self.seed
        env = os.environ.get("PL_GLOBAL_SEED")
        return int(env) if env is not None else None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        seed = self._base_seed()
        if seed is None:
            if not self._warned:
                rank_zero_info("ReseedEachBatch: no seed set (seed_everything), so batches are not reseeded")
                self._warned = True
            return
        # the training batches run so far, over all epochs: restored exactly, unlike batch_idx, which restarts
        # at 0 when Lightning misreads where in the epoch a checkpoint was taken (docs/resume.md)
        served = trainer.fit_loop.epoch_loop.batch_progress.total.ready
        state = np.random.SeedSequence([seed, served, trainer.global_rank])
        s64, s32 = int(state.generate_state(1, np.uint64)[0]), int(state.generate_state(1, np.uint32)[0])
        torch.manual_seed(s64)  # CPU and every CUDA device
        np.random.seed(s32)
        random.seed(s64)
