"""In-memory batches and a seeded, resumable, rank-aware batch sampler for them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ArrayDataset", "BatchKey", "EpochBatchSampler", "already_batched", "batch_seed"]

BatchKey = tuple[int, int, int]  # (epoch, rank, batch index within the epoch)


def batch_seed(seed: int, key: BatchKey) -> int:
    """The augmentation seed of one training batch: a pure function of the run seed and the batch's place
    (epoch, rank, index), so a batch is augmented the same way however many workers there are, or after a
    resume."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0])


def already_batched(batch: tuple) -> tuple:
    """``collate_fn`` for :class:`ArrayDataset`: its ``__getitems__`` already returns whole batches."""
    return batch


class ArrayDataset(Dataset):
    """uint8 images (N, C, H, W) and int64 labels held in memory, served a whole batch per indexing operation.

    ``ds[i]`` is one (image, label); ``ds.__getitems__(indices)`` (what a DataLoader with a batch size calls)
    and ``ds[(indices, key)]`` (what :class:`EpochBatchSampler` yields) gather a batch with one indexing
    operation; the latter also returns the batch key, which tells the DataModule to augment the batch.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected uint8 (N, C, H, W) images and N labels, got {images.dtype} "
                f"{tuple(images.shape)} and {len(labels)} labels"
            )
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | tuple[Tensor, BatchKey]) -> tuple:
        if isinstance(index, tuple):
            indices, key = index
            return self.images[indices], self.labels[indices], key
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]


class EpochBatchSampler(DistributedSampler):
    """Yields ``(indices, (epoch, rank, batch))`` for every training batch of one rank.

    The order is ``DistributedSampler``'s: a permutation drawn from ``seed + epoch``, padded to a multiple of
    ``num_replicas`` and split over ranks; it is then cut into batches (the last one may be short, or is left out
    with ``drop_last_batch``: then every batch has ``batch_size`` images). Being a
    ``DistributedSampler``, Lightning does not wrap it under DDP. ``set_epoch`` picks the epoch (Lightning calls
    it each epoch; a full pass also moves on to the next). ``resume(epoch, served)`` makes the next pass over
    ``epoch`` skip its first ``served`` batches; ``len`` stays the full epoch, as Lightning's progress counters
    expect.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last_batch: bool = False,
    ) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if drop_last_batch and self.num_samples < batch_size:
            raise ValueError(
                f"dropping the last, smaller batch leaves no batch: {self.num_samples} images per rank and "
                f"batch_size {batch_size}; lower the batch size"
            )
        self.batch_size, self.drop_last_batch = batch_size, drop_last_batch
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        if self.drop_last_batch:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def resume(self, epoch: int, served: int) -> None:
        """Start at ``epoch``, skipping the ``served`` batches that were already used before a checkpoint."""
        self.set_epoch(epoch)
        self._resume = (epoch, served)

    def __iter__(self) -> Iterator[tuple[Tensor, BatchKey]]:
        epoch = self.epoch
        indices = torch.as_tensor(list(super().__iter__()), dtype=torch.long)
        start = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        for b in range(start, len(self)):
            yield indices[b * self.batch_size : (b + 1) * self.batch_size], (epoch, self.rank, b)
        if self.epoch == epoch:
            self.set_epoch(epoch + 1)
