"""Nothing lost: atomic checkpoint writes, the last good checkpoint kept on a non-finite loss, exact mid-epoch
resume, and checkpoints that load on another machine (device and dtype)."""

from __future__ import annotations

import io
import json
import os
import signal
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.serialization
from conftest import REPO_ROOT, quiet_trainer, write_cifar_pickles
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from octzoo.data import CIFAR10DataModule
from octzoo.training import AtomicCheckpointIO, ImageClassifier, LastCheckpoint, ReseedEachBatch, RunSummary
from octzoo.training.summary import write_json_atomic

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]


class OrderedData(L.LightningDataModule):
    """16 random 8x8 images in batches of 4, never shuffled; ``poison`` puts a NaN into that image."""

    num_classes = 10
    input_size = (3, 8, 8)

    def __init__(self, poison: int | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        if poison is not None:
            x[poison, 0, 0, 0] = float("nan")
        self.ds = TensorDataset(x, y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.ds, batch_size=4)

    val_dataloader = train_dataloader


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


# -- atomic writes ------------------------------------------------------------------------------------------------


def test_a_checkpoint_write_failing_midway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    trainer = quiet_trainer(tmp_path, epochs=1, plugins=[AtomicCheckpointIO()], limit_val_batches=0)
    model = ImageClassifier("resnet20", scheduler="none")
    trainer.fit(model, OrderedData())
    ckpt = tmp_path / "ckpts" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    before = ckpt.read_bytes()

    with torch.no_grad():
        model.model.fc.weight.add_(1.0)  # the next checkpoint would differ
    real_save, partial = torch.save, []

    def save_half_then_fail(obj, f, *args, **kwargs):  # a full disk or a crash after some bytes are out
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        partial.append((Path(f.name), os.path.getsize(f.name)))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        trainer.save_checkpoint(ckpt)
    monkeypatch.undo()

    ((written, size),) = partial
    assert written.parent == ckpt.parent and written != ckpt and size > 0  # half a file did reach the disk ...
    assert ckpt.read_bytes() == before  # ... beside the checkpoint, which is untouched
    assert _tmp_files(ckpt.parent) == []
    reloaded = torch.load(ckpt, map_location="cpu", weights_only=False)
    torch.testing.assert_close(reloaded["state_dict"]["model.fc.weight"], model.model.fc.weight - 1.0)
    trainer.save_checkpoint(ckpt)  # and the next write goes through
    assert ckpt.read_bytes() != before and _tmp_files(ckpt.parent) == []


def test_run_summary_write_failing_midway_leaves_the_previous_summary(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running", "epochs": 3})
    before = path.read_bytes()
    circular: dict = {"status": "running"}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):  # fails before any byte is written
        write_json_atomic(path, circular)
    real_fsync = os.fsync

    def fsync_fails(fd):
        real_fsync(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.fsync", fsync_fails)
    with pytest.raises(OSError, match="Input/output error"):
        write_json_atomic(path, {"status": "finished", "epochs": 4})
    monkeypatch.undo()
    assert path.read_bytes() == before and _tmp_files(tmp_path) == []


def test_a_temporary_file_left_by_a_killed_writer_goes_with_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "last.ckpt"
    left = tmp_path / f".last.ckpt.{int(dead.stdout)}.0badf00d.tmp"  # a writer killed mid-write
    alive = tmp_path / f".last.ckpt.{os.getppid()}.0badf00d.tmp"  # a writer still at work: not ours to delete
    other = tmp_path / f".best.ckpt.{int(dead.stdout)}.0badf00d.tmp"  # another file's: its own next write
    for f in (left, alive, other):
        f.write_bytes(b"half a checkpoint")
    write_json_atomic(path, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, alive.name, other.name])


def test_the_shipped_configs_write_atomically_reseed_and_checkpoint_mid_epoch(tmp_path):
    from octzoo.cli_lightning import OctzooCLI
    from octzoo.training.configs import expand_bases

    config = REPO_ROOT / "configs/cifar10/resnet20.yaml"
    args = expand_bases(["--config", str(config), "--data.data_dir", str(tmp_path), "--trainer.logger", "false"])
    cli = OctzooCLI(ImageClassifier, run=False, args=args, subclass_mode_data=True, auto_configure_optimizers=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    best, last = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert (best.monitor, best.save_top_k, best.save_last) == ("val/acc1", 1, None)  # the best ...
    assert isinstance(last, LastCheckpoint) and last._every_n_train_steps > 0  # ... and last.ckpt mid-epoch
    assert any(isinstance(c, ReseedEachBatch) for c in cli.trainer.callbacks)


# -- a non-finite loss --------------------------------------------------------------------------------------------


def _parameters(model: ImageClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _same_parameters(model: ImageClassifier, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, state[name]) for name, value in model.named_parameters())


class SignalAt(Callback):
    """Sends this process ``signum`` after the training step of ``step`` (Lightning's handlers take it)."""

    def __init__(self, signum: int, step: int = 2) -> None:
        self.signum, self.step = signum, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_run_stopped_by_a_signal_is_interrupted_not_failed(tmp_path, signum):
    """SIGTERM (a scheduler's pre-emption, kill's default) and Ctrl+C stop a run: its summary says interrupted,
    which octzoo compare and sweep read as resumable, not as a run that broke; an error still says failed."""
    trainer = quiet_trainer(tmp_path, epochs=2, callbacks=[RunSummary(), SignalAt(signum)])
    handler = signal.getsignal(signal.SIGINT)
    # Python's own Ctrl+C handler, as in a terminal: a shell without job control starts background commands (such
    # as a test run under nohup) with SIGINT ignored, and Python then keeps ignoring it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit):  # Lightning ends the run with SIGTERMException / sys.exit(1)
            trainer.fit(ImageClassifier("resnet20", scheduler="none"), OrderedData())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning leaves Ctrl+C ignored after one
    written = json.loads((tmp_path / "summary.json").read_text())
    assert (written["status"], written["global_step"]) == ("interrupted", 2)

    failing = quiet_trainer(tmp_path / "error", epochs=2, callbacks=[RunSummary(), PoisonAt(1)], detect_anomaly=False)
    with pytest.raises(FloatingPointError):
        failing.fit(ImageClassifier("resnet20", scheduler="none"), OrderedData())
    assert json.loads((tmp_path / "error" / "summary.json").read_text())["status"] == "failed"


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    every_step = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True, save_top_k=0, every_n_train_steps=1)
    trainer = quiet_trainer(
        tmp_path, epochs=1, enable_checkpointing=True, callbacks=[every_step], plugins=[AtomicCheckpointIO()]
    )
    model = ImageClassifier("resnet20", scheduler="none")
    L.seed_everything(0)
    with pytest.raises(FloatingPointError, match=r"at global step 2 \(epoch 0, batch 2\).* resume from the last good"):
        trainer.fit(model, OrderedData(poison=9))  # image 9 is in the third batch; read before its checkpoint
    assert not _finite(model.state_dict())  # the poisoned forward reached the running BN statistics in memory
    last = torch.load(tmp_path / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2 and _finite(last["state_dict"])  # the checkpoint after the last good step
    assert _same_parameters(model, last["state_dict"])
    resumed = ImageClassifier.load_from_checkpoint(tmp_path / "ckpts" / "last.ckpt")
    with torch.no_grad():
        assert torch.isfinite(resumed.eval()(torch.randn(2, 3, 8, 8))).all()
    assert _tmp_files(tmp_path / "ckpts") == []


class PoisonAt(Callback):
    """Puts a NaN into the batches of the given global steps, and keeps the weights before each step."""

    def __init__(self, *steps: int) -> None:
        self.steps, self.before = steps, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before[trainer.global_step] = _parameters(pl_module)
        if trainer.global_step in self.steps:
            batch[0][0, 0, 0, 0] = float("nan")


def test_a_non_finite_loss_read_at_the_next_log_step_names_the_first_bad_step(tmp_path):
    # 4 steps an epoch; last.ckpt and the read of the record (at the steps Lightning logs) every 4 steps
    every_4 = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True, save_top_k=0, every_n_train_steps=4)
    poison = PoisonAt(4, 6)  # epoch 1, batches 0 and 2; batch 1 is clean
    trainer = quiet_trainer(
        tmp_path,
        epochs=3,
        log_every_n_steps=4,
        limit_val_batches=0,
        enable_checkpointing=True,
        callbacks=[poison, every_4],
    )
    model = ImageClassifier("resnet20", lr=0.05, scheduler="none")
    L.seed_everything(0)
    with pytest.raises(FloatingPointError, match=r"loss \(nan\) at global step 4 \(epoch 1, batch 0\); its update"):
        trainer.fit(model, OrderedData())
    assert sorted(poison.before) == list(range(8))  # stopped in step 7, where the record was read
    assert not _same_parameters(model, poison.before[3])  # step 3 trained; step 4 and every step after it were undone
    assert all(_same_parameters(model, poison.before[step]) for step in (4, 5, 6, 7))
    last = torch.load(tmp_path / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 4 and _finite(last["state_dict"])  # the last good save, before the bad step
    assert _same_parameters(model, last["state_dict"])


# -- exact resume -------------------------------------------------------------------------------------------------


def _cifar_fit(root: Path, data: Path, run: str, callbacks: list, ckpt_path: Path | None = None) -> ImageClassifier:
    """ResNet-20 with mixup and cutmix (both draw from torch's global generator every step) on the generated
    CIFAR-10: 100 images in batches of 16, 7 steps in the epoch, a checkpoint after every step."""
    L.seed_everything(0)
    model = ImageClassifier("resnet20", lr=0.05, mixup_alpha=0.4, cutmix_alpha=0.4, warmup_epochs=0.5)
    dm = CIFAR10DataModule(str(data), batch_size=16, cache_dir=str(root / "cache"))
    every_step = ModelCheckpoint(root / run, filename="{step}", monitor=None, save_top_k=-1, every_n_train_steps=1)
    trainer = quiet_trainer(
        root / run,
        epochs=1,
        deterministic=True,
        limit_val_batches=1,
        enable_checkpointing=True,
        callbacks=[*callbacks, every_step],
        plugins=[AtomicCheckpointIO()],
    )
    if ckpt_path is not None:  # a fresh process draws from its generators in another order before resuming
        torch.rand(5)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    assert trainer.global_step == 7
    return model


def test_resume_from_a_mid_epoch_checkpoint_reaches_the_same_weights(tmp_path):
    """The model, optimiser, LR schedule, loop counters and the CIFAR loader's position come back from the
    checkpoint (Lightning and ``CIFAR10DataModule.state_dict``); the global random generators do not (Lightning
    does not save them), so without :class:`ReseedEachBatch` the mixup draws after a resume differ."""
    data = write_cifar_pickles(tmp_path / "cifar")
    reference = _cifar_fit(tmp_path, data, "whole", [ReseedEachBatch()]).state_dict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = _cifar_fit(tmp_path, data, "resumed", [ReseedEachBatch()], tmp_path / "whole" / "step=3.ckpt")
    # Lightning's "your dataloader is not resumable" would be wrong: the DataModule restores the position
    assert not [w for w in caught if "dataloader is not resumable" in str(w.message)]
    assert reference.keys() == resumed.state_dict().keys()
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0, msg=name)
    unseeded = _cifar_fit(tmp_path, data, "unseeded", [], tmp_path / "whole" / "step=3.ckpt").state_dict()
    assert not torch.equal(unseeded["model.fc.weight"], reference["model.fc.weight"])


# -- another machine ------------------------------------------------------------------------------------------------


def _save_as_if_on(device: str, obj, path: Path, monkeypatch) -> None:
    """``torch.save`` as on a machine where the tensors live on ``device`` (storages tagged e.g. 'cuda:0')."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: device)
        torch.save(obj, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA to show the GPU checkpoint")
def test_a_gpu_trained_checkpoint_resumes_and_loads_on_a_cpu_only_machine(tmp_path, monkeypatch):
    trainer = quiet_trainer(tmp_path, epochs=1, limit_val_batches=0)
    model = ImageClassifier("oct_resnet20", scheduler="none")
    trainer.fit(model, OrderedData())
    trainer.save_checkpoint(tmp_path / "cpu.ckpt")
    ckpt = torch.load(tmp_path / "cpu.ckpt", map_location="cpu", weights_only=False)
    _save_as_if_on("cuda:0", ckpt, tmp_path / "gpu.ckpt", monkeypatch)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does with it here
        torch.load(tmp_path / "gpu.ckpt", weights_only=False)

    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "gpu.ckpt")
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][name]), name
    resumed = quiet_trainer(tmp_path, epochs=2, limit_val_batches=0)
    resumed.fit(ImageClassifier("oct_resnet20", scheduler="none"), OrderedData(), ckpt_path=tmp_path / "gpu.ckpt")
    assert resumed.global_step == 8  # 4 steps restored, 4 more trained


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_a_state_dict_in_another_dtype_is_cast_to_the_models_dtype(tmp_path, dtype, monkeypatch):
    """Weights saved in another precision (a float64 export, a bf16-true or fp16 run) load into a float32
    model as float32: ``load_state_dict`` copies values into the existing parameters, casting them. The model
    keeps its dtype and device; nothing is silently left in bf16."""
    source = ImageClassifier("oct_resnet20")
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    _save_as_if_on("cuda:0", {"state_dict": state}, tmp_path / "w.ckpt", monkeypatch)  # from a GPU, too
    target = ImageClassifier("oct_resnet20")
    target.load_state_dict(torch.load(tmp_path / "w.ckpt", map_location="cpu", weights_only=False)["state_dict"])
    for name, value in target.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and value.device.type == "cpu", name
            assert torch.equal(value, state[name].float()), name
