"""CIFAR-10 DataModule: decoded once to in-memory uint8 arrays, augmented a whole batch at a time on the device."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor
from torch.utils.data import DataLoader

from ..models.constants import CIFAR10_MEAN, CIFAR10_STD
from ._cache import load_cifar
from ._cifar_files import CifarSource, find_source
from ._cifar_format import CIFAR10_CLASSES, CifarArrays
from ._common import DataError, check_model_classes
from .augment import BatchAugment
from .base import ImageDataModule
from .sampler import ArrayDataset, EpochBatchSampler, already_batched, batch_seed

_LIGHTNINGS_MID_EPOCH_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"

__all__ = ["CIFAR10DataModule"]


def _to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    """(N, H, W, 3) uint8 -> contiguous (N, 3, H, W) uint8 tensor, and int64 labels."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.asarray(y, dtype=np.int64))


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and the official 10,000 test images, 32x32 RGB, 10 classes.

    ``data_dir`` holds the official ``cifar-10-batches-py/`` (fetched by torchvision in ``prepare_data`` when
    ``download`` is true), an image-folder tree ``train/<class>/*``, ``test/<class>/*`` (or one folder holding
    such a tree), or is the path of a .tar.gz of either, which is read without extracting. Labels follow the
    official order (``classes``). Trees and archives are decoded once and cached as arrays in ``cache_dir``
    (default ``$OCTZOO_CACHE_DIR`` or ``~/.cache/octzoo``), keyed by a fingerprint of the files.

    The loaders yield uint8 batches from memory; ``on_after_batch_transfer`` augments training batches on the
    device (``augment``: "none", "standard" = 4-pixel pad + random crop + flip, "cutout", "autoaugment") and
    normalises every batch with ``mean``/``std``. A training batch's augmentation depends only on ``seed`` and
    its place (epoch, rank, index), and the order on ``seed`` + epoch, so runs are reproducible and
    ``state_dict``/``load_state_dict`` can resume mid-epoch. ``drop_last`` leaves out the last, smaller training
    batch of each epoch (the CLI sets it when ``model.compile`` is on, so that the compiled step sees one shape).

    ``val_split`` (a count, or a fraction of the training set) holds out a validation set drawn with ``seed``;
    with 0 the validation loop runs on the test set, as CIFAR papers report. ``on_bad_image``: "fail" raises
    naming an unreadable file; "skip" leaves it out with a warning and a count (``skipped``). The evaluation
    loaders and the normalisation are :class:`~octzoo.data.base.ImageDataModule`'s.
    """

    name = "cifar10"
    num_classes = 10
    classes = CIFAR10_CLASSES
    mean = CIFAR10_MEAN
    std = CIFAR10_STD
    input_size = (3, 32, 32)

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        download: bool = False,
        val_split: int | float = 0,
        seed: int = 0,
        augment: Literal["none", "standard", "cutout", "autoaugment"] = "standard",
        on_bad_image: Literal["fail", "skip"] = "fail",
        cache_dir: str | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, on_bad_image)
        self.save_hyperparameters()
        if isinstance(val_split, bool) or not (
            isinstance(val_split, int) and val_split >= 0 or isinstance(val_split, float) and 0.0 <= val_split < 1.0
        ):
            raise ValueError(f"val_split must be a count >= 0 or a fraction in [0, 1), got {val_split!r}")
        if seed < 0 or batch_size < 1:
            raise ValueError(f"need seed >= 0 and batch_size >= 1, got seed={seed}, batch_size={batch_size}")
        self.seed = seed
        self.augmentation = BatchAugment(augment, self.mean, self.std)
        self.source: CifarSource | None = None
        self.cache_file: Path | None = None
        self.train_dataset: ArrayDataset | None = None
        self.val_dataset: ArrayDataset | None = None
        self.test_dataset: ArrayDataset | None = None
        self.skipped: list[str] = []
        self._arrays: CifarArrays | None = None
        self._position = (0, 0)  # (epoch, training batches served in it)
        self._resume: tuple[int, int] | None = None

    # -- data ------------------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download when asked and the data is not there yet; decode and cache a tree or archive (runs on one
        process per node, so the other ranks only read the cache in ``setup``)."""
        if self.hparams.download:
            try:
                find_source(self.data_dir)
            except DataError:
                self._download()
        self._load()

    def _download(self) -> None:
        from torchvision.datasets import CIFAR10

        try:
            for train in (True, False):
                CIFAR10(str(self.data_dir), train=train, download=True)
        except Exception as exc:  # offline, proxy, disk full, checksum: all end the same way
            raise DataError(
                f"downloading CIFAR-10 into {self.data_dir} failed ({type(exc).__name__}: {exc}). Without internet, "
                "extract the JPEG copy (tar -xzf cifar10-jpeg.tar.gz) and point data_dir at it, or at the archive"
            ) from exc

    def _load(self) -> CifarArrays:
        if self._arrays is None:
            self._arrays, self.source, self.cache_file = load_cifar(
                self.data_dir, self.hparams.cache_dir, self.hparams.on_bad_image
            )
            self.skipped = list(self._arrays.skipped)
        return self._arrays

    def _val_count(self, n: int) -> int:
        split = self.hparams.val_split
        count = round(split * n) if isinstance(split, float) else split
        if count >= n:
            raise ValueError(f"val_split={split} asks for {count} of the {n} training images")
        return count

    def setup(self, stage: str | None = None) -> None:
        """Load the arrays (from the cache after the first run) and build the splits; idempotent."""
        if self.train_dataset is None:
            arrays = self._load()
            x, y = _to_tensors(arrays.train_x, arrays.train_y)
            n_val = self._val_count(len(y))
            if n_val:
                perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.seed))
                val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
                self.val_dataset = ArrayDataset(x[val], y[val])
                x, y = x[train], y[train]
            self.train_dataset = ArrayDataset(x, y)
            self.test_dataset = ArrayDataset(*_to_tensors(arrays.test_x, arrays.test_y))
            self._arrays = None  # the tensors hold the data now
            if self.hparams.num_workers > 0:  # workers then map the same memory instead of receiving copies
                for ds in (self.train_dataset, self.val_dataset, self.test_dataset):
                    if ds is not None:
                        ds.images.share_memory_()
                        ds.labels.share_memory_()
        check_model_classes(self.trainer, self.num_classes, f"CIFAR-10 in {self.data_dir}")

    # -- loaders ---------------------------------------------------------------------------------------------

    def _collate_fn(self) -> Callable[[Any], Any]:
        """The loaders yield whole batches already (the sampler hands out index batches)."""
        return already_batched

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``(uint8 images, labels, (epoch, rank, batch))``, sharded over DDP ranks."""
        dataset = self._require(self.train_dataset)
        dist = (self.trainer.distributed_sampler_kwargs if self.trainer is not None else None) or {}
        sampler = EpochBatchSampler(
            len(dataset),
            self.batch_size,
            self.seed,
            dist.get("num_replicas", 1),
            dist.get("rank", 0),
            drop_last_batch=self.hparams.drop_last,
        )
        if self._resume is not None:
            sampler.resume(*self._resume)
            self._resume = None
        return DataLoader(dataset, batch_size=None, sampler=sampler, **self._loader_kwargs())

    # -- on the device ---------------------------------------------------------------------------------------

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augment (training batches) and normalise uint8 batches on the device: returns (float images, labels)."""
        if len(batch) == 3:
            x, y, key = batch
            self._position = (key[0], key[2] + 1)
            generator = torch.Generator().manual_seed(batch_seed(self.seed, key))
            return self.augmentation(x, generator), y
        return super().on_after_batch_transfer(batch, dataloader_idx)

    # -- resumable state -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where training is: the epoch and how many of its batches were served (saved in checkpoints)."""
        return {"epoch": self._position[0], "batches_served": self._position[1], "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a ``state_dict``: the next training loader skips the batches already served."""
        self._position = (int(state_dict["epoch"]), int(state_dict["batches_served"]))
        self._resume = self._position
        # Lightning then warns that a mid-epoch resume is unreliable unless the loader itself keeps a state; here
        # the DataModule restores the position, so the warning would say the opposite of what happens
        warnings.filterwarnings("ignore", _LIGHTNINGS_MID_EPOCH_WARNING, PossibleUserWarning)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data_dir={str(self.data_dir)!r}, augment={self.hparams.augment!r})"
