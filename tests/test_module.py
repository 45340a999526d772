"""ImageClassifier: optimisation recipes, schedules, mixing, precision and checkpoints, on tiny random data."""

import logging
import math

import lightning as L
import pytest
import torch
from conftest import quiet_trainer
from lightning.pytorch.callbacks import Callback
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

import octzoo
import octzoo.training.bf16
import octzoo.training.module
from octzoo.training import ImageClassifier


class TinyData(L.LightningDataModule):
    """Random 8x8 images in 10 classes: enough to drive the training loop, fast on 2 cores."""

    num_classes = 10
    input_size = (3, 8, 8)

    def __init__(self, n: int = 16, batch_size: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ds = TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size)

    test_dataloader = val_dataloader


class LrTrace(Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


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
    trainer = quiet_trainer(tmp_path, epochs=1)
    trainer.fit(model, TinyData())
    for key in ("train/loss", "train/acc1", "train/lr", "val/loss", "val/acc1", "val/acc5"):
        assert key in trainer.logged_metrics, key
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
    trainer = quiet_trainer(tmp_path, epochs=1, limit_val_batches=0)
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss .* at global step \d+ \(epoch 0, batch \d\)"
    ):
        L.seed_everything(0)
        trainer.fit(model, data)
