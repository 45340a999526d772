"""ImageClassifier: optimisation recipes, schedules, mixing, precision, checkpoints and compilation, on tiny random
data."""

import copy
import logging
import math
import pickle

import lightning as L
import pytest
import torch
from conftest import REPO_ROOT, quiet_trainer
from helpers import LrTrace, TinyData
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, StochasticWeightAveraging
from safetensors.torch import save_file
from torch import Tensor
from torch._dynamo.backends.debugging import aot_eager
from torch.overrides import TorchFunctionMode
from torch.utils.data import TensorDataset

import octzoo
import octzoo.training.bf16
import octzoo.training.module
from octzoo.cli_lightning import OctzooCLI
from octzoo.data import CIFAR10DataModule, ImageNetDataModule
from octzoo.data.sampler import EpochBatchSampler
from octzoo.training import ImageClassifier
from octzoo.training.configs import expand_bases
from octzoo.training.module import COMPILE_MODES


def test_cosine_schedule_with_linear_warmup(tmp_path):
    model = ImageClassifier("resnet20", lr=0.4, min_lr=0.004, warmup_epochs=1, scheduler="cosine")
    trace = LrTrace()
    quiet_trainer(tmp_path, epochs=4, callbacks=[trace], limit_val_batches=0).fit(model, TinyData())
    lrs = trace.lrs  # 4 steps per epoch, 16 steps
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])  # warm-up reaches lr after one epoch
    cosine = lrs[4:]
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    expected_last = 0.004 + (0.4 - 0.004) * 0.5 * (1 + math.cos(math.pi * 11 / 12))
    assert lrs[-1] == pytest.approx(expected_last)


def test_step_schedule(tmp_path):
    model = ImageClassifier("resnet20", lr=0.1, scheduler="step", milestones=[1, 3], gamma=0.1)
    trace = LrTrace()
    quiet_trainer(tmp_path, epochs=4, callbacks=[trace], limit_val_batches=0).fit(model, TinyData())
    assert trace.lrs == pytest.approx([0.1] * 4 + [0.01] * 8 + [0.001] * 4)


def test_onecycle_and_adamw(tmp_path):
    model = ImageClassifier("resnet20", optimizer="adamw", lr=0.01, scheduler="onecycle")
    trace = LrTrace()
    quiet_trainer(tmp_path, epochs=2, callbacks=[trace], limit_val_batches=0).fit(model, TinyData())
    assert isinstance(model.optimizers().optimizer, torch.optim.AdamW)
    assert max(trace.lrs) <= 0.01 + 1e-9 and trace.lrs[0] < 0.01 / 10  # starts low, peaks at lr


def test_weight_decay_skips_norm_and_bias():
    model = ImageClassifier("oct_resnet20", no_decay_norm_bias=True, weight_decay=1e-4)
    decay, no_decay = model._param_groups()
    norm_and_bias = [
        p
        for m in model.model.modules()
        for n, p in m.named_parameters(recurse=False)
        if isinstance(m, torch.nn.BatchNorm2d) or n == "bias"
    ]
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in norm_and_bias}
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert all(p.dim() == 4 or p.dim() == 2 for p in decay["params"])  # conv and linear weights only


@pytest.mark.parametrize(
    "mix", [dict(mixup_alpha=0.2), dict(cutmix_alpha=1.0), dict(mixup_alpha=0.2, cutmix_alpha=1.0)]
)
def test_mixup_cutmix_and_label_smoothing_train(tmp_path, mix):
    torch.manual_seed(0)
    model = ImageClassifier("oct_resnet20", label_smoothing=0.1, **mix)
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 8, 8)  # image i is the constant i
    y = torch.arange(8)
    x_mixed, y_a, y_b, lam = model._mix(x, y)
    assert 0 <= lam <= 1 and torch.equal(y_a, y)
    assert sorted(y_b.tolist()) == list(range(8))  # a permutation of the batch
    if "mixup_alpha" not in mix:  # cutmix: each image i gets a box pasted from image y_b[i]; lam is what stays
        for i in range(8):
            pasted = x_mixed[i] != i
            assert set(x_mixed[i].unique().tolist()) <= {float(i), float(y_b[i])}
            if y_b[i] != i:
                assert pasted.float().mean().item() == pytest.approx(1 - lam)
    quiet_trainer(tmp_path, epochs=1, limit_val_batches=0).fit(model, TinyData())
    assert torch.isfinite(torch.stack([p.sum() for p in model.parameters()])).all()


def test_bf16_mixed_and_channels_last(tmp_path):
    model = ImageClassifier("oct_resnet20", model_kwargs={"alpha": 0.5}, channels_last=True)
    conv = model.model.layer2[0].conv1.conv  # 16 -> 32 channels at alpha .5, stride 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv((torch.randn(2, 8, 9, 9), torch.randn(2, 8, 5, 5)))
    assert out.high.dtype == out.low.dtype == torch.bfloat16
    assert out.high.shape == (2, 16, 5, 5) and out.low.shape == (2, 16, 3, 3)
    trainer = quiet_trainer(tmp_path, epochs=1, precision="bf16-mixed")
    trainer.fit(model, TinyData())
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model.model.conv1.conv.h2h.weight.is_contiguous(memory_format=torch.channels_last)


def test_grad_checkpointing_fits_to_the_same_weights(tmp_path):
    """``grad_checkpointing`` recomputes the blocks in backward: the fit ends at the weights of the plain fit (batch
    norms in training also recompute their statistics, so only their running averages differ)."""
    fits = {}
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = ImageClassifier("oct_resnet20", model_kwargs={"alpha": 0.5}, grad_checkpointing=ckpt)
        assert model.model.grad_checkpointing is ckpt
        L.seed_everything(0)
        quiet_trainer(tmp_path / str(ckpt), epochs=1).fit(model, TinyData())
        fits[ckpt] = {n: p.detach() for n, p in model.model.named_parameters()}
    for name, weight in fits[True].items():
        torch.testing.assert_close(weight, fits[False][name], msg=name)


@pytest.mark.parametrize(
    ("precision", "fast_bf16", "emulated"),
    [("bf16-mixed", False, True), ("bf16-mixed", True, False), ("32-true", False, False)],
)
def test_bf16_on_a_cpu_without_native_bf16_runs_its_convolutions_through_float32(
    tmp_path, monkeypatch, caplog, precision, fast_bf16, emulated
):
    monkeypatch.setattr(octzoo.training.module, "cpu_has_fast_bf16", lambda: fast_bf16)
    seen = []  # the ops the emulation computed in float32
    emulates = octzoo.training.bf16.emulates

    def spy(func, args):
        if emulated := emulates(func, args):
            seen.append(func)
        return emulated

    monkeypatch.setattr(octzoo.training.bf16, "emulates", spy)
    # alpha .5: h2l's pooled convolution has its own backward, which calls aten's convolution_backward itself
    model = ImageClassifier("oct_resnet20", model_kwargs={"alpha": 0.5}, channels_last=True)
    with caplog.at_level(logging.INFO):
        quiet_trainer(tmp_path, epochs=1, precision=precision).fit(model, TinyData())
    assert torch.isfinite(torch.stack([p.sum() for p in model.parameters()])).all()
    aten = torch.ops.aten
    if emulated:
        assert {aten.convolution.default, aten.convolution_backward.default, aten.addmm.default} <= set(seen)
        # every convolution of a step: forward and backward, 22 layers' worth (oct layers run 2-3 each)
        assert seen.count(aten.convolution_backward.default) >= 22
        assert "without native bfloat16 convolutions" in caplog.text
    else:
        assert seen == []
        assert "without native bfloat16 convolutions" not in caplog.text


def test_cpu_bf16_probe_matches_the_cpu_flags():
    # oneDNN's bfloat16 path needs AVX-512 (avx512bw/vl/dq); an AVX2-only CPU reports False.
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        assert not octzoo.training.bf16.cpu_has_fast_bf16()
    elif torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        assert octzoo.training.bf16.cpu_has_fast_bf16()


def test_metrics_are_logged_per_stage(tmp_path):
    model = ImageClassifier("resnet20")
    trainer = quiet_trainer(tmp_path, epochs=1, log_every_n_steps=2)
    trainer.fit(model, TinyData())
    for key in ("train/loss", "train/acc1", "train/lr", "val/loss", "val/acc1", "val/acc5"):
        assert key in trainer.logged_metrics, key
    assert set(trainer.progress_bar_metrics) == {"loss", "val/acc1"}
    assert float(trainer.logged_metrics["val/acc1"]) <= float(trainer.logged_metrics["val/acc5"]) <= 1
    trainer.test(model, TinyData())
    assert {"test/loss", "test/acc1", "test/acc5"} <= set(trainer.logged_metrics)


def test_checkpoint_reloads_with_no_extra_arguments(tmp_path):
    model = ImageClassifier("oct_resnet20", model_kwargs={"alpha": 0.5}, lr=0.05)
    trainer = quiet_trainer(tmp_path, epochs=1, enable_checkpointing=True)
    trainer.fit(model, TinyData())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = ImageClassifier.load_from_checkpoint(path)
    assert loaded.hparams.lr == 0.05 and loaded.alpha == 0.5
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))


def test_pretrained_file_and_profile(tmp_path):
    net = octzoo.create_model("oct_resnet20")
    save_file(net.state_dict(), tmp_path / "w.safetensors")
    model = ImageClassifier("oct_resnet20", pretrained=str(tmp_path / "w.safetensors"))
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.model.state_dict().values(), strict=True)
    )
    info = model.model_profile()
    assert info == {
        "model": "oct_resnet20",
        "alpha": 0.25,
        "params": 269_722,
        "macs": 28_385_920,
        "input_size": [3, 32, 32],
    }


def test_gradient_clipping_and_ema_through_lightning(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    w = "model.conv1.conv.h2h.weight"
    weights = []
    for callbacks in ([], [EMAWeightAveraging(decay=0.5)]):
        L.seed_everything(0)
        model = ImageClassifier("oct_resnet20", lr=0.05)
        quiet_trainer(tmp_path, epochs=1, callbacks=callbacks, gradient_clip_val=0.5, limit_val_batches=0).fit(
            model, TinyData()
        )
        weights.append(model.state_dict()[w])
    # the same run with EMA ends with averaged weights, not the last step's
    assert torch.isfinite(weights[1]).all() and not torch.allclose(weights[0], weights[1])


def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    data = TinyData()
    data.ds.tensors[0][5] = float("nan")  # one poisoned image in the second batch of 4
    model = ImageClassifier("resnet20", scheduler="none")
    trainer = quiet_trainer(tmp_path, epochs=1, limit_val_batches=0)  # read at the end of the epoch
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss \(nan\) at global step \d+ \(epoch 0, batch \d\)"
    ):
        L.seed_everything(0)
        trainer.fit(model, data)


# -- no host sync per step ----------------------------------------------------------------------------------------


class HostReads(TorchFunctionMode):
    """Counts the reads of tensor values by the host: each one waits for the device on an accelerator."""

    READS = frozenset({Tensor.item, Tensor.__bool__, Tensor.__float__, Tensor.__int__, Tensor.tolist, Tensor.cpu})

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.READS
        return func(*args, **(kwargs or {}))


class CountingClassifier(ImageClassifier):
    """Counts the host reads of each whole step: training_step, backward and the optimiser (Lightning's closure)."""

    def optimizer_step(self, *args, **kwargs):
        step = self.global_step
        with HostReads() as reads:
            super().optimizer_step(*args, **kwargs)
        self.reads[step] = reads.count


class LossTrace(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_a_training_step_reads_nothing_back_from_the_device_between_log_steps(tmp_path):
    model = CountingClassifier("resnet20", lr=0.05, scheduler="none")
    model.reads = {}
    trace = LossTrace()
    trainer = quiet_trainer(tmp_path, epochs=2, log_every_n_steps=3, limit_val_batches=0, callbacks=[trace])
    trainer.fit(model, TinyData())
    # 8 steps; Lightning writes the metrics of steps 2 and 5, where the record of non-finite losses is read and the
    # progress bar's loss is copied to the host
    assert sorted(model.reads) == list(range(8))
    assert [s for s, n in model.reads.items() if n] == [2, 5]
    assert set(trainer.progress_bar_metrics) == {"loss"}  # a host copy: the bar reads no device tensor
    assert trainer.progress_bar_metrics["loss"] == pytest.approx(trace.losses[5])
    assert float(trainer.logged_metrics["train/loss"]) == pytest.approx(trace.losses[7])  # every step's loss


# -- compilation --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compile", [1, 0, None, "true", "default", "max-autotune"])
def test_compile_takes_a_bool_or_a_mode(compile):
    with pytest.raises(ValueError, match=r"compile=.*: use false, true .* 'reduce-overhead', 'max-autotune-no-cu"):
        ImageClassifier("resnet20", compile=compile)


def test_compile_accepts_its_modes():
    for compile in (False, True, *COMPILE_MODES):
        assert ImageClassifier("resnet20", compile=compile).hparams.compile == compile


class RecordingBackend:
    """A torch.compile backend that keeps the graphs dynamo captured and runs them through AOTAutograd without code
    generation (inductor's code generation is heavy for a small CPU: the slow test below runs it)."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return aot_eager(gm, example_inputs)


class CopiesMidFit(Callback):
    """Deep-copies and pickles the module at every training batch, as weight averaging and process launchers do;
    notes whether the network ran compiled."""

    def __init__(self):
        self.compiled = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.compiled.append(pl_module._compiled is not None)
        assert "_compiled" not in dict(pl_module.named_modules())
        for clone in (copy.deepcopy(pl_module), pickle.loads(pickle.dumps(pl_module))):
            assert clone._compiled is None  # an eager copy; its next fit compiles its own
            assert clone.state_dict().keys() == pl_module.state_dict().keys()


def _predict(model: ImageClassifier) -> Tensor:
    with torch.no_grad():
        return model.eval()(torch.linspace(-1, 1, 2 * 3 * 8 * 8).view(2, 3, 8, 8))


def test_a_compiled_fit_resumes_an_eager_run_and_checkpoints_plain_keys(tmp_path, monkeypatch):
    torch._dynamo.reset()  # count this fit's graphs only: an earlier test's frames of the same code recompile
    backend = RecordingBackend()
    monkeypatch.setattr(ImageClassifier, "_compile_backend", backend)
    L.seed_everything(0)
    eager = ImageClassifier("resnet20", scheduler="none")
    first = ModelCheckpoint(tmp_path / "ckpts", save_last=True, save_top_k=0)
    quiet_trainer(tmp_path, epochs=1, limit_val_batches=0, enable_checkpointing=True, callbacks=[first]).fit(
        eager, TinyData()
    )
    assert not backend.graphs

    # the eager run's last.ckpt resumes compiled, with weight averaging, which deep-copies the module at fit start
    model = ImageClassifier("resnet20", compile=True, scheduler="none")
    second = ModelCheckpoint(tmp_path / "ckpts", save_last=True, save_top_k=0)
    copies = CopiesMidFit()
    callbacks = [copies, StochasticWeightAveraging(0.01, swa_epoch_start=1), second]
    trainer = quiet_trainer(tmp_path, epochs=2, limit_val_batches=0, enable_checkpointing=True, callbacks=callbacks)
    trainer.fit(model, TinyData(), ckpt_path=tmp_path / "ckpts" / "last.ckpt")
    # epoch 1 ran compiled (one graph); the averaging's batch-norm statistics pass after it ran eagerly
    assert copies.compiled == [True] * 4 + [False] * 4 and len(backend.graphs) == 1
    assert model._compiled is None  # the end of the fit let it go
    assert list(model.state_dict()) == list(eager.state_dict())
    saved = torch.load(tmp_path / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert list(saved) == list(eager.state_dict())  # model.*, no _orig_mod
    assert not torch.equal(saved["model.fc.weight"], eager.state_dict()["model.fc.weight"])  # it trained on

    # and the compiled run's checkpoint loads into an eager model
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "ckpts" / "last.ckpt", compile=False)
    assert torch.equal(_predict(loaded), _predict(model))


def test_compile_says_it_is_not_applied_under_the_bf16_emulation(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(octzoo.training.module, "cpu_has_fast_bf16", lambda: False)
    backend = RecordingBackend()
    monkeypatch.setattr(ImageClassifier, "_compile_backend", backend)
    model = ImageClassifier("resnet20", compile=True)
    with caplog.at_level(logging.INFO):
        quiet_trainer(tmp_path, epochs=1, precision="bf16-mixed", limit_val_batches=0).fit(model, TinyData())
    assert "compile is not applied under the bfloat16 emulation" in caplog.text and not backend.graphs


@pytest.mark.slow
def test_an_inductor_compiled_fit_matches_the_eager_fit(tmp_path):
    """Four steps compiled by inductor move every weight and statistic as the eager fit does, up to float rounding.

    One step's gradients agree to about 5e-6 of their size. Batches of 16: with 4 images, the batch norms of 8 px
    inputs amplify that rounding step after step (measured: 1e-2 of the fit's change after four steps with two
    threads); at 16 the two fits differ by about 2e-5 of how far the fit moved each tensor, and a wrong path or
    gradient would differ by order 1."""
    start, weights = None, []
    for compile in (False, True):
        L.seed_everything(0)
        model = ImageClassifier("oct_resnet20", compile=compile, scheduler="none", lr=0.05)
        start = start or {k: v.clone() for k, v in model.state_dict().items()}
        copies = CopiesMidFit()
        data = TinyData(n=64, batch_size=16)
        quiet_trainer(tmp_path, epochs=1, limit_val_batches=1, callbacks=[copies]).fit(model, data)
        assert copies.compiled == [compile] * 4
        weights.append(model.state_dict())
    for name, eager in weights[0].items():
        compiled = weights[1][name]
        if not eager.is_floating_point():
            assert torch.equal(compiled, eager), name
            continue
        moved = (eager - start[name]).norm()
        assert moved > 0, name
        assert (compiled - eager).norm() <= 1e-2 * moved, name


# -- one batch shape when compiled: drop_last -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize(
    ("args", "compile", "drop_last"),
    [
        ([], False, False),
        (["--model.compile", "true"], True, True),
        (["--model.compile=reduce-overhead"], "reduce-overhead", True),
    ],
)
def test_the_cli_drops_the_last_training_batch_only_when_compiling(tmp_path, args, compile, drop_last):
    config = REPO_ROOT / "configs/cifar10/resnet20.yaml"
    args = ["--config", str(config), "--data.data_dir", str(tmp_path), "--trainer.logger", "false", *args]
    cli = OctzooCLI(
        ImageClassifier, run=False, args=expand_bases(args), subclass_mode_data=True, auto_configure_optimizers=False
    )
    assert cli.model.hparams.compile == compile and cli.datamodule.hparams.drop_last is drop_last


def test_cifar_drops_the_last_short_training_batch_when_asked(cifar10_pickles, tmp_path):
    for drop_last, sizes in ((False, [16] * 6 + [4]), (True, [16] * 6)):  # 100 training images
        dm = CIFAR10DataModule(str(cifar10_pickles), batch_size=16, cache_dir=str(tmp_path), drop_last=drop_last)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert len(loader) == len(sizes) and [len(batch[1]) for batch in loader] == sizes
        assert [len(y) for _, y in dm.val_dataloader()] == [16, 14]  # evaluation keeps every image
    with pytest.raises(ValueError, match="leaves no batch: 10 images per rank and batch_size 16; lower the batch"):
        EpochBatchSampler(10, 16, drop_last_batch=True)


def test_imagenet_drops_the_last_training_batch_when_asked(tmp_path):
    images = TensorDataset(torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    for drop_last in (False, True):
        dm = ImageNetDataModule(str(tmp_path), batch_size=4, num_workers=0, drop_last=drop_last)
        dm.train_dataset = dm.val_dataset = images
        assert dm.train_dataloader().drop_last is drop_last and len(dm.train_dataloader()) == (2 if drop_last else 3)
        assert dm.val_dataloader().drop_last is False
