"""octzoo.data: CIFAR-10 (official pickles, image folders, archives, the real JPEG copy) and ImageNet DataModules."""

from __future__ import annotations

import re
import tarfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import N_TEST, PER_BATCH, cifar_rows, quiet_trainer, write_cifar_pickles
from PIL import Image

from octzoo.data import (
    CIFAR10_CLASSES,
    BadImageError,
    BatchAugment,
    BatchAutoAugment,
    CIFAR10DataModule,
    DataError,
    ImageNetDataModule,
    cutout,
    normalize,
    random_crop_flip,
)
from octzoo.data import _cache as cache
from octzoo.data._common import check_model_classes
from octzoo.data.base import ImageDataModule
from octzoo.models.constants import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def _ids(images: torch.Tensor) -> list[int]:
    """The numbers _images wrote, read back from (N, 3, 32, 32) images."""
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()


def write_cifar_tree(root: Path, per_class: int = 2, fmt: str = "PNG") -> Path:
    """train/<class>/ and test/<class>/ with ``per_class`` 32x32 images each; pixel (0, 0) holds the label."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, cls in enumerate(CIFAR10_CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                a[:8, :8] = label * 20
                Image.fromarray(a).save(root / split / cls / f"{i:04d}.{fmt.lower()}", fmt)
    return root


@pytest.fixture(scope="module")
def cifar_pickles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_pickles(tmp_path_factory.mktemp("cifar_pickles"))


def _dm(data_dir: Path, tmp_path: Path, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(str(data_dir), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


# -- CIFAR-10, official pickle format -----------------------------------------------------------------------------


def test_pickles_give_official_layout_labels_and_class_order(cifar_pickles: Path, tmp_path: Path) -> None:
    dm = _dm(cifar_pickles, tmp_path, batch_size=16)
    assert (dm.num_classes, dm.classes, dm.input_size) == (10, CIFAR10_CLASSES, (3, 32, 32))
    assert dm.classes[0] == "airplane" and dm.classes[-1] == "truck"
    assert len(dm.train_dataset) == 5 * PER_BATCH and len(dm.test_dataset) == N_TEST and dm.val_dataset is None
    images = dm.train_dataset.images
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[7], torch.from_numpy(cifar_rows(PER_BATCH, 0)[7].reshape(3, 32, 32)))  # R, G, B planes
    assert _ids(images) == list(range(100)) and dm.train_dataset.labels.tolist() == [i % 10 for i in range(100)]
    assert _ids(dm.test_dataset.images) == list(range(100, 130))
    # data_dir may also be the cifar-10-batches-py folder itself; no cache is written for the pickles
    assert len(_dm(cifar_pickles / "cifar-10-batches-py", tmp_path).test_dataset) == N_TEST
    assert dm.cache_file is None and not (tmp_path / "cache").exists()


def test_val_split_is_a_fixed_seeded_draw(cifar_pickles: Path, tmp_path: Path) -> None:
    a = _dm(cifar_pickles, tmp_path, val_split=0.2, seed=3)
    b = _dm(cifar_pickles, tmp_path, val_split=20, seed=3)
    c = _dm(cifar_pickles, tmp_path, val_split=20, seed=4)
    assert len(a.val_dataset) == 20 and len(a.train_dataset) == 80
    assert _ids(a.val_dataset.images) == _ids(b.val_dataset.images) != _ids(c.val_dataset.images)
    assert sorted(_ids(a.val_dataset.images) + _ids(a.train_dataset.images)) == list(range(100))
    assert len(a.val_dataloader().dataset) == 20  # validation uses the split, not the test set
    assert len(_dm(cifar_pickles, tmp_path).val_dataloader().dataset) == N_TEST  # val_split=0: the test set
    for bad in (-1, 1.0, True, 100):
        with pytest.raises(ValueError, match="val_split"):
            _dm(cifar_pickles, tmp_path, val_split=bad)


def test_loaders_yield_uint8_batches_and_the_hook_augments_and_normalises(cifar_pickles: Path, tmp_path: Path) -> None:
    dm = _dm(cifar_pickles, tmp_path, batch_size=32)
    batches = list(dm.train_dataloader())
    assert [len(b[1]) for b in batches] == [32, 32, 32, 4]
    x, y, key = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (32, 3, 32, 32) and key == (0, 0, 0)
    assert sorted(sum((_ids(b[0]) for b in batches), [])) == list(range(100))  # every image once per epoch
    xa, ya = dm.on_after_batch_transfer(batches[0], 0)
    assert xa.dtype == torch.float32 and xa.shape == (32, 3, 32, 32) and torch.equal(ya, y)
    xt, yt = next(iter(dm.test_dataloader()))
    assert xt.shape == (N_TEST, 3, 32, 32) and _ids(xt) == list(range(100, 100 + N_TEST))
    xn, _ = dm.on_after_batch_transfer((xt, yt), 0)  # evaluation batches are only normalised
    assert torch.allclose(xn, normalize(xt, dm.mean, dm.std))
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    assert torch.allclose(xn, (xt.float() / 255 - mean) / std, atol=1e-5)
    assert xn.min() >= (-mean / std).min() - 1e-5 and xn.max() <= ((1 - mean) / std).max() + 1e-5


def test_augmentation_is_reproducible_and_resumable(cifar_pickles: Path, tmp_path: Path) -> None:
    def run(dm: CIFAR10DataModule, epoch: int = 0, stop: int | None = None) -> list[torch.Tensor]:
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        out = []
        for i, batch in enumerate(loader):
            if i == stop:
                break
            out.append(dm.on_after_batch_transfer(batch, 0)[0])
        return out

    first, again = run(_dm(cifar_pickles, tmp_path, batch_size=16)), run(_dm(cifar_pickles, tmp_path, batch_size=16))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    with_workers = run(_dm(cifar_pickles, tmp_path, batch_size=16, num_workers=2))  # same batches from workers
    assert all(torch.equal(a, b) for a, b in zip(first, with_workers, strict=True))
    other_seed = run(_dm(cifar_pickles, tmp_path, batch_size=16, seed=1))
    assert not torch.equal(first[0], other_seed[0])
    assert not torch.equal(first[0], run(_dm(cifar_pickles, tmp_path, batch_size=16), epoch=1)[0])
    # stop after 3 batches of epoch 2, save, resume in a fresh DataModule: the rest of the epoch is unchanged
    reference = run(_dm(cifar_pickles, tmp_path, batch_size=16), epoch=2)
    dm = _dm(cifar_pickles, tmp_path, batch_size=16)
    run(dm, epoch=2, stop=3)
    state = dm.state_dict()
    assert state == {"epoch": 2, "batches_served": 3, "seed": 0}
    resumed = _dm(cifar_pickles, tmp_path, batch_size=16)
    resumed.load_state_dict(state)
    loader = resumed.train_dataloader()
    rest = [resumed.on_after_batch_transfer(b, 0)[0] for b in loader]
    assert len(loader) == 7 and len(rest) == 4
    assert all(torch.equal(a, b) for a, b in zip(reference[3:], rest, strict=True))


def test_random_crop_flip_is_a_padded_window_and_flips_some_samples() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no zeros, so padding shows as 0
    out = random_crop_flip(x, g, padding=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(len(x)):
        windows = [padded[i, :, r : r + 32, c : c + 32] for r in range(9) for c in range(9)]
        plain = any(torch.equal(out[i], w) for w in windows)
        mirrored = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 10 < flipped < 54  # about half
    no_crop = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)
    assert all(torch.equal(o, s) or torch.equal(o, s.flip(-1)) for o, s in zip(no_crop, x, strict=True))


def test_cutout_autoaugment_and_batch_normalisation_stats() -> None:
    torch.manual_seed(0)
    x = (torch.rand(64, 3, 32, 32) * 255 * torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1) * 2).clamp(0, 255)
    x = x.to(torch.uint8)
    mean, std = CIFAR10_MEAN, CIFAR10_STD
    for mode in ("none", "standard", "cutout", "autoaugment"):
        aug = BatchAugment(mode, mean, std)
        a, b = aug(x, torch.Generator().manual_seed(5)), aug(x, torch.Generator().manual_seed(5))
        assert a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b), mode
        assert abs(float(a.mean())) < 0.5 and 0.3 < float(a.std()) < 2.0, mode  # sane batch-level statistics
    cut = cutout(normalize(x, mean, std), torch.Generator().manual_seed(0), size=16)
    zeros = (cut == 0).all(1).flatten(1).sum(1)  # pixels zeroed in all channels, per image
    assert (zeros >= 64).all() and (zeros <= 256).all()  # a 16x16 square, clipped at the border to 8x8 at least
    aa = BatchAutoAugment()(x, torch.Generator().manual_seed(0))
    assert aa.dtype == torch.uint8 and aa.shape == x.shape
    assert 0 < sum(not torch.equal(p, q) for p, q in zip(aa, x, strict=True)) < 64  # some samples left alone
    with pytest.raises(ValueError, match="augment"):
        BatchAugment("mixup", mean, std)


def test_batch_autoaugment_equals_torchvision_applied_sample_by_sample() -> None:
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    x = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8)
    out = BatchAutoAugment()(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same draws, in the same order
    tv = AutoAugment(AutoAugmentPolicy.CIFAR10)
    policy, probs = torch.randint(len(tv.policies), (48,), generator=g), torch.rand(48, 2, generator=g)
    signs = torch.randint(2, (48, 2), generator=g)
    space = tv._augmentation_space(10, (32, 32))
    for i in range(48):  # torchvision's AutoAugment.forward, one image at a time
        img = x[i]
        for slot, (name, p, level) in enumerate(tv.policies[policy[i]]):
            if probs[i, slot] <= p:
                magnitudes, signed = space[name]
                magnitude = float(magnitudes[level]) if level is not None else 0.0
                magnitude = -magnitude if signed and signs[i, slot] == 0 else magnitude
                img = _apply_op(img, name, magnitude, interpolation=InterpolationMode.NEAREST, fill=None)
        assert torch.equal(out[i], img), i
    y = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y[0] = 9
    from torchvision.transforms.functional import equalize as tv_equalize

    from octzoo.data.augment import equalize

    assert torch.equal(equalize(y), tv_equalize(y))


def test_epoch_batch_sampler_shards_ranks_and_lightning_leaves_it_alone() -> None:
    from torch.utils.data import DistributedSampler

    from octzoo.data.sampler import EpochBatchSampler

    ranks = [EpochBatchSampler(50, 8, seed=1, num_replicas=2, rank=r) for r in range(2)]
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [4, 4] and [len(s) for s in ranks] == [4, 4]
    seen = [int(i) for rank in batches for idx, _ in rank for i in idx]
    assert len(seen) == 50 and set(seen) == set(range(50))  # 25 per rank, disjoint
    assert [key for _, key in batches[1]] == [(0, 1, b) for b in range(4)]
    assert isinstance(ranks[0], DistributedSampler)  # so Lightning does not wrap it under DDP
    assert [key[0] for _, key in ranks[0]] == [1] * 4  # a full pass moves on to the next epoch


# -- CIFAR-10, image folders and archives --------------------------------------------------------------------------


def test_image_folder_tree_is_decoded_once_then_read_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    tree = write_cifar_tree(tmp_path / "data" / "cifar10-png")  # data_dir may be the folder holding the tree
    dm = _dm(tmp_path / "data", tmp_path)
    assert dm.source.kind == "folder" and dm.cache_file.is_file() and dm.cache_file.parent == tmp_path / "cache"
    assert len(dm.train_dataset) == 20 and len(dm.test_dataset) == 20
    labels = dm.train_dataset.labels
    assert labels.tolist() == [i // 2 for i in range(20)]  # class folders in the official order
    assert torch.equal(dm.train_dataset.images[:, :, 0, 0], (labels * 20).view(-1, 1).expand(-1, 3).to(torch.uint8))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(cache.files, "read_tree", no_decoding)
    again = _dm(tree, tmp_path)
    assert again.cache_file == dm.cache_file and torch.equal(again.train_dataset.images, dm.train_dataset.images)
    dm.setup("test")  # setup again in the same process reuses the tensors
    monkeypatch.undo()
    Image.new("RGB", (32, 32)).save(tree / "test" / "cat" / "0099.png")  # another file: another fingerprint
    changed = _dm(tree, tmp_path)
    assert changed.cache_file != dm.cache_file and len(changed.test_dataset) == 21


def test_archives_are_read_without_extracting(tmp_path: Path) -> None:
    tree = write_cifar_tree(tmp_path / "cifar10-jpeg", fmt="JPEG")
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    from_archive, from_tree = _dm(archive, tmp_path), _dm(tree, tmp_path)
    assert from_archive.source.kind == "archive" and from_archive.cache_file.is_file()
    assert torch.equal(from_archive.train_dataset.images, from_tree.train_dataset.images)
    assert torch.equal(from_archive.test_dataset.labels, from_tree.test_dataset.labels)
    pickles = write_cifar_pickles(tmp_path / "official")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(pickles / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert len(_dm(tmp_path / "cifar-10-python.tar.gz", tmp_path).train_dataset) == 100


def test_missing_empty_and_wrong_layouts_say_what_was_found_and_what_is_expected(tmp_path: Path) -> None:
    for data_dir, found in ((tmp_path / "nowhere", "does not exist"), (tmp_path, "is empty")):
        with pytest.raises(DataError, match=found) as info:
            _dm(data_dir, tmp_path)
        message = str(info.value)
        assert "cifar-10-batches-py" in message and "download: true" in message and "tar -xzf" in message
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds notes.txt"):
        _dm(tmp_path, tmp_path)
    pickles = write_cifar_pickles(tmp_path / "partial")
    (pickles / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        _dm(pickles, tmp_path)
    tree = write_cifar_tree(tmp_path / "tree", per_class=1)
    (tree / "train" / "cat").rename(tree / "train" / "kitten")
    with pytest.raises(DataError, match=r"missing \['cat'\], unexpected \['kitten'\]"):
        _dm(tree, tmp_path)
    (tree / "train" / "kitten").rename(tree / "train" / "cat")
    for f in (tree / "test" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="test/dog is empty"):
        _dm(tree, tmp_path)
    (tree / "test" / "dog").rmdir()  # a class in train/ but not in test/
    with pytest.raises(DataError, match=r"test: found classes .* \(missing \['dog'\], unexpected \[\]\)"):
        _dm(tree, tmp_path)


@pytest.mark.parametrize("damage", ["corrupt", "zero-byte", "truncated", "wrong size", "non-image", "notes file"])
def test_bad_cifar_images_fail_naming_the_file_or_are_skipped_and_counted(tmp_path: Path, damage: str) -> None:
    tree = write_cifar_tree(tmp_path / "tree", per_class=2, fmt="JPEG")
    bad = tree / "train" / "frog" / "0001.jpeg"
    content = {
        "corrupt": b"\xff\xd8 not really a jpeg",
        "zero-byte": b"",
        "truncated": bad.read_bytes()[:200],
        "non-image": b"label,comment\nfrog,blurry\n",
    }
    if damage == "wrong size":
        Image.new("RGB", (33, 32)).save(bad, "JPEG")
    elif damage == "notes file":  # a text file beside the images (hidden files such as .DS_Store are ignored)
        bad.unlink()
        bad = bad.with_name("0001.txt")
        bad.write_text("taken with the old camera")
        (bad.parent / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    else:
        bad.write_bytes(content[damage])
    with pytest.raises(BadImageError, match=re.escape(str(bad)) + r": .*; replace or delete .*on_bad_image='skip'"):
        _dm(tree, tmp_path)
    with pytest.warns(UserWarning, match=bad.name):
        dm = _dm(tree, tmp_path, on_bad_image="skip")
    assert dm.skipped == [str(bad)] and len(dm.train_dataset) == 19
    assert dm.train_dataset.labels.bincount().tolist() == [2, 2, 2, 2, 2, 2, 1, 2, 2, 2]
    with pytest.raises(BadImageError, match=bad.name):  # the cache remembers it for a later "fail" run
        _dm(tree, tmp_path)
    with pytest.raises(ValueError, match="on_bad_image"):
        CIFAR10DataModule(str(tree), on_bad_image="ignore")


def test_download_happens_only_in_prepare_data_and_only_when_needed(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        if not (Path(root) / "cifar-10-batches-py").exists():
            write_cifar_pickles(Path(root))

    monkeypatch.setattr("torchvision.datasets.CIFAR10", fake_cifar10)
    dm = CIFAR10DataModule(str(tmp_path / "fresh"), download=True, cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    assert calls == [(str(tmp_path / "fresh"), True, True), (str(tmp_path / "fresh"), False, True)]
    dm.setup("fit")
    assert len(dm.train_dataset) == 100
    _dm(tmp_path / "fresh", tmp_path, download=True)
    assert len(calls) == 2  # already there: no second download

    def offline(root: str, train: bool, download: bool) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DataError, match="downloading CIFAR-10 .* failed .*name resolution.*cifar10-jpeg.tar.gz"):
        _dm(tmp_path / "offline", tmp_path, download=True)


def test_fit_and_checkpointed_position_through_lightning(cifar_pickles: Path, tmp_path: Path) -> None:
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.fc = torch.nn.Linear(3 * 32 * 32, num_classes)
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.seen.append(x)
            return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

        def validation_step(self, batch, batch_idx):
            assert batch[0].dtype == torch.float32

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = CIFAR10DataModule(str(cifar_pickles), batch_size=16, cache_dir=str(tmp_path / "cache"))
    trainer = quiet_trainer(tmp_path, epochs=1, limit_train_batches=3, limit_val_batches=1)
    module = Tiny()
    trainer.fit(module, datamodule=dm)
    assert len(module.seen) == 3 and all(x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) for x in module.seen)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)["CIFAR10DataModule"]
    assert state == {"epoch": 0, "batches_served": 3, "seed": 0}
    with pytest.raises(DataError, match="has 10 classes but the model was built for 5"):
        quiet_trainer(tmp_path, max_steps=1).fit(Tiny(num_classes=5), datamodule=dm)


# -- the real JPEG copy -------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_cifar10_jpeg_archive(real_data: Path, tmp_path: Path, monkeypatch) -> None:
    archive = real_data / "cifar10-jpeg.tar.gz"
    dm = _dm(archive, tmp_path, batch_size=512)
    assert len(dm.train_dataset) == 50_000 and len(dm.test_dataset) == 10_000
    assert dm.train_dataset.labels.bincount().tolist() == [5000] * 10
    assert dm.test_dataset.labels.bincount().tolist() == [1000] * 10
    assert dm.classes == CIFAR10_CLASSES
    channel_mean = dm.train_dataset.images[::10].float().mean((0, 2, 3)) / 255  # RGB order, decoded correctly
    assert torch.allclose(channel_mean, torch.tensor(dm.mean), atol=0.01)
    x = normalize(dm.test_dataset.images[::20], dm.mean, dm.std)  # every class; what eval batches get
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # about 13 % zero padding, at -2
    assert -0.4 < float(x.mean()) < -0.1 and abs(float(x.std()) - 1) < 0.2
    monkeypatch.setattr(cache.files, "read_archive", lambda *a, **k: pytest.fail("decoded twice"))
    again = _dm(archive, tmp_path)  # from the cache
    assert torch.equal(again.test_dataset.images, dm.test_dataset.images)


# -- ImageNet -----------------------------------------------------------------------------------------------------


def _save(path: Path, image: Image.Image, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **kwargs)


def write_imagenet(root: Path) -> dict[str, Path]:
    """Two classes with files of every mode and size ImageNet holds; returns a few paths by name."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    paths = {}
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537"):
            d = root / split / wnid
            _save(d / "rgb.JPEG", rgb, "JPEG")
            _save(d / "gray.JPEG", rgb.convert("L"), "JPEG")
            _save(d / "cmyk.JPEG", rgb.convert("CMYK"), "JPEG")
            _save(d / "palette.PNG", rgb.convert("P"), "PNG", transparency=0)
            _save(d / "rgba.PNG", rgb.convert("RGBA"), "PNG")
            _save(d / "tiny.JPEG", Image.new("RGB", (1, 1), (255, 0, 0)), "JPEG")
    big = Image.fromarray(np.kron(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.ones((100, 100, 1), np.uint8)))
    _save(root / "train" / "n01440764" / "big.JPEG", big, "JPEG")  # 3000 x 2000 px
    paths["big"] = root / "train" / "n01440764" / "big.JPEG"
    return paths


def _imagenet(root: Path, **kwargs) -> ImageNetDataModule:
    kwargs = {
        "batch_size": 4,
        "num_workers": 0,
        "pin_memory": False,
        "persistent_workers": False,  # workers end with their iterator, also when it raised
        "image_size": 32,
        "resize_size": 36,
        "num_classes": 2,
        **kwargs,
    }
    dm = ImageNetDataModule(str(root), **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_imagenet(root)
    return root


def test_imagenet_loads_every_mode_and_size(imagenet_dir: Path) -> None:
    dm = _imagenet(imagenet_dir, color_jitter=0.4)
    assert dm.classes == ["n01440764", "n01443537"] and len(dm.train_dataset) == 13 and len(dm.val_dataset) == 12
    assert dm.input_size == (3, 32, 32) and dm.test_dataset is dm.val_dataset
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        seen = 0
        for x, y in loader:
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
            xf, _ = dm.on_after_batch_transfer((x, y), 0)
            assert xf.dtype == torch.float32 and torch.isfinite(xf).all()
            seen += len(y)
        assert seen == len(loader.dataset)
    red = dm.val_dataset[dm.val_dataset.samples.index((str(imagenet_dir / "val/n01440764/tiny.JPEG"), 0))][0]
    assert red.shape == (3, 32, 32) and (red[0] > 200).all() and (red[1:] < 60).all()  # 1x1 px, upsampled
    cmyk = imagenet_dir / "val/n01440764/cmyk.JPEG"
    with Image.open(cmyk) as image:
        assert image.mode == "CMYK"
    full = ImageNetDataModule(str(imagenet_dir), num_classes=2, num_workers=0)  # the default 256 -> 224 recipe
    full.setup()
    big = full.train_dataset.samples.index((str(imagenet_dir / "train/n01440764/big.JPEG"), 0))
    assert full.val_dataset[0][0].shape == (3, 224, 224) and full.train_dataset[big][0].shape == (3, 224, 224)


def test_every_image_mode_opens_as_rgb_with_its_colours(tmp_path: Path) -> None:
    from octzoo.data._images import open_rgb

    cases = [
        (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),  # red
        (Image.new("RGB", (4, 4), (0, 0, 255)).convert("YCbCr"), "JPEG", (0, 0, 254)),
        (Image.new("L", (4, 4), 77), "JPEG", (77, 77, 77)),
        (Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)), "PNG", (156, 156, 156)),  # 16-bit, top 8 bits
        (Image.new("1", (4, 4), 1), "PNG", (255, 255, 255)),
        (Image.new("LA", (4, 4), (100, 50)), "PNG", (100, 100, 100)),
        (Image.new("RGBA", (4, 4), (10, 20, 30, 0)), "PNG", (10, 20, 30)),
        (Image.new("RGB", (4, 4), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG", (200, 10, 10)),
    ]
    for i, (image, fmt, rgb) in enumerate(cases):
        path = tmp_path / f"{i}.{fmt.lower()}"
        image.save(path, fmt)
        opened = open_rgb(path)
        assert opened.mode == "RGB" and opened.size == (4, 4), image.mode
        assert all(abs(a - b) <= 2 for a, b in zip(opened.getpixel((1, 1)), rgb, strict=True)), image.mode


@pytest.mark.parametrize("num_workers", [0, 2])
def test_imagenet_bad_files_fail_naming_them_or_are_skipped_and_counted(tmp_path: Path, num_workers: int) -> None:
    root = tmp_path / "imagenet"
    write_imagenet(root)
    folder = root / "val" / "n01443537"
    (folder / "zero.JPEG").write_bytes(b"")
    (folder / "notes.JPEG").write_text("not an image")
    (folder / "truncated.JPEG").write_bytes((folder / "rgb.JPEG").read_bytes()[:300])
    batches = iter(_imagenet(root, num_workers=num_workers).val_dataloader())
    try:
        for _ in batches:
            pass
        error = None
    except BadImageError as exc:  # raised in a worker, re-raised here with the worker's message
        error = str(exc)
        exc.__traceback__ = None  # no reference cycle, so the workers stop now, not at garbage collection
    del batches
    assert re.search(r"cannot read image .*n01443537/(notes|truncated|zero)\.JPEG", error or "")
    dm = _imagenet(root, num_workers=num_workers, on_bad_image="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sizes = [len(y) for _, y in dm.val_dataloader()]
    assert sum(sizes) == 12 and dm.skipped == 3  # 15 files, 3 unreadable, counted over the worker processes
    if num_workers == 0:  # (workers print their warnings to stderr, out of reach of catch_warnings)
        messages = " ".join(str(w.message) for w in caught)
        assert all(f"n01443537/{name}.JPEG" in messages for name in ("notes", "truncated", "zero"))


def test_imagenet_layout_errors_say_what_was_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ImageNet not found: .*does not exist.*train/<wnid>.*image-net.org"):
        _imagenet(tmp_path / "nowhere")
    root = tmp_path / "imagenet"
    write_imagenet(root)
    with pytest.raises(DataError, match=r"found 2 class folders .* expected num_classes=1000"):
        _imagenet(root, num_classes=1000)
    (root / "val" / "n01443537").rename(root / "val_n01443537")
    with pytest.raises(DataError, match=r"in train/ but not in val/: \['n01443537'\]"):
        _imagenet(root)
    (root / "val" / "n09999999").mkdir()
    with pytest.raises(DataError, match="n09999999 is empty"):
        _imagenet(root)
    (root / "val").rename(root / "elsewhere")
    with pytest.raises(DataError, match="holds elsewhere/, train/, val_n01443537/"):
        _imagenet(root)
    module = SimpleNamespace(hparams={"num_classes": 1000})
    with pytest.raises(DataError, match="has 2 classes but the model was built for 1000"):
        check_model_classes(SimpleNamespace(lightning_module=module), 2, "ImageNet")


def test_imagenet_torchvision_meta_bin_labels_a_flat_val_folder(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    write_imagenet(root)
    for i, f in enumerate(sorted((root / "val").glob("*/rgb.JPEG"))):
        f.rename(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    for d in list((root / "val").iterdir()):
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    torch.save(({"n01440764": ("tench",), "n01443537": ("goldfish",)}, ["n01440764", "n01443537"]), root / "meta.bin")
    dm = _imagenet(root)
    assert dm.class_names["n01443537"] == ("goldfish",)
    assert [label for _, label in dm.val_dataset.samples] == [0, 1]


# -- what the DataModules share -----------------------------------------------------------------------------------


def test_normalisation_constants_have_one_source_for_models_and_data() -> None:
    import timm.data.constants

    from octzoo.models import create_model, list_models, model_entry

    assert (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert IMAGENET_DEFAULT_MEAN is timm.data.constants.IMAGENET_DEFAULT_MEAN  # timm's, not a copy
    assert IMAGENET_DEFAULT_STD is timm.data.constants.IMAGENET_DEFAULT_STD
    assert (CIFAR10_MEAN, CIFAR10_STD) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    by_classes = {10: CIFAR10DataModule, 1000: ImageNetDataModule}
    for name in list_models():
        cfg = model_entry(name).pretrained_cfg
        dm = by_classes[cfg["num_classes"]]
        assert cfg["mean"] is dm.mean and cfg["std"] is dm.std, name
    assert CIFAR10DataModule.mean is CIFAR10_MEAN and CIFAR10DataModule.std is CIFAR10_STD
    assert ImageNetDataModule.mean is IMAGENET_DEFAULT_MEAN and ImageNetDataModule.std is IMAGENET_DEFAULT_STD
    for name, dm in (("resnet20", CIFAR10DataModule), ("resnet18", ImageNetDataModule)):
        cfg = create_model(name).pretrained_cfg
        assert (cfg["mean"], cfg["std"]) == (dm.mean, dm.std), name


def test_models_import_neither_data_nor_lightning() -> None:
    import subprocess
    import sys

    loaded = "sorted(m for m in sys.modules if m.startswith(('lightning', 'octzoo.data')))"
    code = f"import sys, octzoo.models; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # the data tier reads the models' constants, never the reverse


def test_both_datamodules_share_the_loader_settings(cifar_pickles: Path, tmp_path: Path, imagenet_dir: Path) -> None:
    cifar = _dm(cifar_pickles, tmp_path, batch_size=16, num_workers=2, pin_memory=True, drop_last=True)
    imagenet = _imagenet(imagenet_dir, num_workers=2, persistent_workers=None, drop_last=True)
    assert isinstance(cifar, ImageDataModule) and isinstance(imagenet, ImageDataModule)
    for dm, persistent in ((cifar, False), (imagenet, True)):  # None: persistent whenever there are workers
        loaders = [getattr(dm, f"{stage}_dataloader")() for stage in ("train", "val", "test", "predict")]
        assert all(dl.num_workers == 2 and dl.persistent_workers is persistent for dl in loaders)
        assert [dl.pin_memory for dl in loaders] == [dm.hparams.pin_memory] * 4
        assert all(not dl.drop_last and dl.batch_size == dm.batch_size for dl in loaders[1:])
        assert loaders[2].dataset is loaders[3].dataset is dm.test_dataset
    assert cifar.train_dataloader().sampler.drop_last_batch  # CIFAR-10 drops it in its batch sampler
    assert imagenet.train_dataloader().drop_last and imagenet.train_dataset is not imagenet.test_dataset
    assert imagenet.val_dataloader().dataset is imagenet.test_dataset  # ImageNet tests on its validation images
    no_workers = _dm(cifar_pickles, tmp_path, num_workers=0, persistent_workers=True)
    assert no_workers.val_dataloader().persistent_workers is False
    with pytest.raises(RuntimeError, match="setup"):
        ImageNetDataModule(str(imagenet_dir)).test_dataloader()
