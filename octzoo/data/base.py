"""What the DataModules share: the loaders (workers, pinned memory, persistent workers, batches) and the
normalisation of uint8 batches on the device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ._common import check_policy
from .augment import normalize

__all__ = ["ImageDataModule"]


class ImageDataModule(L.LightningDataModule):
    """Base of the image-classification DataModules: data in ``data_dir``, uint8 batches of ``batch_size``
    images in the loaders, normalised with ``mean``/``std`` on the device by ``on_after_batch_transfer``.

    A subclass calls ``super().__init__(data_dir, batch_size, on_bad_image)`` and then ``save_hyperparameters()``
    (whose hyperparameters, ``num_workers``, ``pin_memory``, ``persistent_workers`` and ``drop_last`` among
    them, the loaders read), fills ``train_dataset``, ``val_dataset`` and ``test_dataset`` in ``setup`` and
    gives its ``_collate_fn``. The training loader is shuffled (Lightning adds a DistributedSampler under DDP)
    and leaves out the last, smaller batch when ``drop_last`` is set; the validation loader reads
    ``val_dataset``, or ``test_dataset`` when there is none; the test and predict loaders read ``test_dataset``,
    all three in order. ``persistent_workers`` keeps the workers between epochs when ``num_workers`` > 0
    (``None``: whenever there are workers).
    """

    name: ClassVar[str]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    train_dataset: Dataset | None
    val_dataset: Dataset | None
    test_dataset: Dataset | None

    def __init__(self, data_dir: str, batch_size: int, on_bad_image: str) -> None:
        super().__init__()
        check_policy(on_bad_image)
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size

    # -- loaders ---------------------------------------------------------------------------------------------

    def _collate_fn(self) -> Callable[[Any], Any]:
        """The function that turns a loader's samples into a batch (each subclass gives its own)."""
        raise NotImplementedError

    def _loader_kwargs(self) -> dict[str, Any]:
        workers, persistent = self.hparams.num_workers, self.hparams.persistent_workers
        return {
            "num_workers": workers,
            "pin_memory": self.hparams.pin_memory,
            "persistent_workers": workers > 0 and (persistent is None or bool(persistent)),
            "collate_fn": self._collate_fn(),
        }

    def _require(self, dataset: Dataset | None) -> Dataset:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return dataset

    def _eval_loader(self, dataset: Dataset | None) -> DataLoader:
        return DataLoader(self._require(dataset), batch_size=self.batch_size, shuffle=False, **self._loader_kwargs())

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (Lightning adds a DistributedSampler under DDP)."""
        dataset = self._require(self.train_dataset)
        kwargs = self._loader_kwargs()
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=self.hparams.drop_last, **kwargs)

    def val_dataloader(self) -> DataLoader:
        """The validation set, or the test set when there is none."""
        return self._eval_loader(self.val_dataset if self.val_dataset is not None else self.test_dataset)

    def test_dataloader(self) -> DataLoader:
        """The test set, in order."""
        return self._eval_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        """The test set, as for ``test_dataloader``."""
        return self._eval_loader(self.test_dataset)

    # -- on the device ---------------------------------------------------------------------------------------

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Normalise a uint8 batch ``(images, labels)`` to float on the device: returns (float images, labels)."""
        x, y = batch
        return normalize(x, self.mean, self.std), y
