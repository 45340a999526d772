"""ImageNet DataModule: the standard image-folder layout, torchvision transforms in workers, normalised on device."""

from __future__ import annotations

from typing import Any, Literal

from torchvision.transforms import v2

from ..models.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from ._common import check_model_classes
from ._folders import ImageFileDataset, SkipCollate, scan_imagenet
from .base import ImageDataModule

__all__ = ["ImageNetDataModule"]


class ImageNetDataModule(ImageDataModule):
    """ImageNet-1k (ILSVRC 2012) or any image-folder data set laid out like it.

    ``data_dir`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (torchvision's ``ImageNet`` layout;
    its ``meta.bin``, when present, supplies ``class_names`` and labels a flat ``val/``). Labels are the sorted
    class folder names (``classes``). Training: RandomResizedCrop(``image_size``) + horizontal flip (+
    ColorJitter(``color_jitter``) for brightness, contrast and saturation when > 0); evaluation:
    Resize(``resize_size``) + CenterCrop(``image_size``). Workers yield uint8 batches; ``on_after_batch_transfer``
    normalises them with the ImageNet ``mean``/``std`` on the device. Every file is opened as RGB whatever its
    mode (grayscale, CMYK, palette, RGBA) and size; ``on_bad_image``: "fail" raises naming an unreadable file,
    "skip" drops it from its batch with a warning and counts it (``skipped``). The test and predict loaders
    use the validation images (ImageNet's test labels are not public). ``drop_last`` leaves out the last, smaller
    training batch of each epoch (the CLI sets it when ``model.compile`` is on, so that the compiled step sees one
    shape). ``persistent_workers`` None keeps the workers between epochs whenever ``num_workers`` > 0. The loaders
    and the normalisation are :class:`~octzoo.data.base.ImageDataModule`'s.
    """

    name = "imagenet"
    mean = IMAGENET_DEFAULT_MEAN
    std = IMAGENET_DEFAULT_STD

    def __init__(
        self,
        data_dir: str = "./data/imagenet",
        batch_size: int = 256,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool | None = None,
        image_size: int = 224,
        resize_size: int = 256,
        color_jitter: float = 0.0,
        num_classes: int = 1000,
        on_bad_image: Literal["fail", "skip"] = "fail",
        drop_last: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, on_bad_image)
        self.save_hyperparameters()
        if resize_size < image_size:
            raise ValueError(f"resize_size ({resize_size}) must be at least image_size ({image_size})")
        self.num_classes = num_classes
        self.input_size = (3, image_size, image_size)
        self.classes: list[str] | None = None
        self.class_names: dict[str, Any] = {}
        self.train_dataset: ImageFileDataset | None = None
        self.val_dataset: ImageFileDataset | None = None

    @property
    def test_dataset(self) -> ImageFileDataset | None:
        """The validation images, which the test and predict loaders use."""
        return self.val_dataset

    @property
    def skipped(self) -> int:
        """Unreadable images skipped so far (``on_bad_image="skip"``), over all splits and workers."""
        return sum(ds.skipped for ds in (self.train_dataset, self.val_dataset) if ds is not None)

    def transforms(self, train: bool) -> v2.Compose:
        """The PIL -> uint8 tensor transform of the training or evaluation split."""
        size, jitter = self.hparams.image_size, self.hparams.color_jitter
        if train:
            ops = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
            ops += [v2.ColorJitter(jitter, jitter, jitter)] if jitter > 0 else []
        else:
            ops = [v2.Resize(self.hparams.resize_size, antialias=True), v2.CenterCrop(size)]
        return v2.Compose([*ops, v2.PILToTensor()])

    def prepare_data(self) -> None:
        """Nothing to download: fails early, saying what is expected, when the folders are not there."""
        if self.classes is None:
            self.setup()

    def setup(self, stage: str | None = None) -> None:
        """Scan the folders (once) and check them against ``num_classes`` and the model."""
        if self.classes is None:
            self.classes, samples, self.class_names = scan_imagenet(self.data_dir, self.num_classes)
            policy = self.hparams.on_bad_image
            self.train_dataset = ImageFileDataset(samples["train"], self.transforms(True), policy)
            self.val_dataset = ImageFileDataset(samples["val"], self.transforms(False), policy)
        check_model_classes(self.trainer, len(self.classes), f"ImageNet in {self.data_dir}")

    def _collate_fn(self) -> SkipCollate:
        """Stacks a batch, leaving out the images skipped under ``on_bad_image="skip"``."""
        return SkipCollate(self.hparams.image_size)
