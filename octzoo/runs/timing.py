"""What ``octzoo compare`` times of each row's network: batch-1 CPU latency, and training throughput measured the
way ``octzoo bench`` measures it, so that accuracy can be set against a cost that does not depend on what else
the machine was doing while the runs trained."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import torch
from torch import nn

from .. import create_model
from ..bench.measure import clock, interleaved_latency, interleaved_medians, train_step_fn
from ..training.bf16 import BF16Emulation, cpu_has_fast_bf16
from .aggregate import Row
from .records import Run, class_defaults

__all__ = ["measure_latency", "measure_throughput", "train_setup"]

# octzoo bench's training batches where a run does not record its own (32 px CIFAR, 224 px ImageNet on a CPU).
_DEFAULT_BATCH = {True: 128, False: 32}


def _network(run: Run) -> nn.Module:
    """The row's network as trained: its model, alpha, width and classes (random weights: timing only)."""
    kwargs = {"num_classes": run.num_classes} if run.num_classes else {}
    if run.model.startswith("oct_"):
        kwargs["alpha"] = run.alpha
    if run.width_mult is not None:
        kwargs["width_mult"] = run.width_mult
    return create_model(run.model, **kwargs)


def _networks(rows: list[Row], spec: Callable[[Run], tuple], warnings: list[str]) -> dict[tuple, nn.Module]:
    """One network per distinct ``spec`` of the rows' runs; a network that cannot be built becomes a warning."""
    nets: dict[tuple, nn.Module] = {}
    for row in rows:
        run = row.first
        if (key := spec(run)) in nets:
            continue
        try:
            nets[key] = _network(run)
        except ValueError as err:
            warnings.append(f"no timing for {run.label}: {err}")
    return nets


def _latency_spec(run: Run) -> tuple:
    """What the timed network depends on: a thinner network is never timed as the full-width one."""
    return (run.model, run.alpha, run.width_mult, run.num_classes, run.input_size)


def measure_latency(rows: list[Row], repeats: int = 20, warmup: int = 2) -> list[str]:
    """Median eager CPU latency at batch 1 for each row's network, interleaved across rows; warnings back."""
    warnings: list[str] = []
    nets = _networks(rows, _latency_spec, warnings)
    pairs = []
    for (*_, input_size), net in nets.items():
        size = input_size or tuple(net.pretrained_cfg["input_size"])
        pairs.append((net.eval(), torch.randn(1, *size)))
    latency = dict(zip(nets, interleaved_latency(pairs, repeats, warmup), strict=True))
    for row in rows:
        seconds = latency.get(_latency_spec(row.first))
        row.latency_ms = None if seconds is None else 1e3 * seconds
    return warnings


def train_setup(run: Run) -> tuple[int, int, bool, bool]:
    """How a run trained, as far as the cost of a step goes: (batch, input side, bfloat16 autocast,
    channels_last), from its record (settings leave out arguments at their defaults: those come from the class);
    octzoo bench's batch where none is recorded."""
    settings = dict(run.settings)
    side = run.input_size[-1] if run.input_size else 32
    batch = run.batch_size or _DEFAULT_BATCH[side <= 64]
    bf16 = str(json.loads(settings.get("trainer.precision", "null"))).startswith("bf16")
    default = class_defaults("octzoo.training.ImageClassifier").get("channels_last", "false")
    channels_last = json.loads(settings.get("model.channels_last", default)) is True
    return int(batch), int(side), bf16, channels_last


def _throughput_spec(run: Run) -> tuple:
    return _latency_spec(run) + train_setup(run)


def _emulated(step: Callable[[], object]) -> Callable[[], object]:
    def run():
        with BF16Emulation():
            return step()

    return run


def measure_throughput(rows: list[Row], repeats: int = 5, warmup: int = 1) -> list[str]:
    """Training images/s of each row's network as its runs trained it (batch, bfloat16 autocast, channels_last;
    :func:`train_setup`; bfloat16 through octzoo's float32-kernel emulation where the CPU lacks bfloat16 kernels, as
    ``octzoo fit`` does there), as ``octzoo bench`` measures training: one SGD step per call, every network in the
    same interleaved rounds, one intra-op thread timed by the calling thread's CPU clock. Other processes on the
    machine (the trainings themselves) then slow the wall clock, not the number. Warnings back."""
    warnings: list[str] = []
    nets = _networks(rows, _throughput_spec, warnings)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        steps, batches = [], []
        emulate = not cpu_has_fast_bf16()  # as octzoo fit trains bf16-mixed on a CPU without bfloat16 kernels
        for (*_, batch, side, bf16, channels_last), net in nets.items():
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            dtype = torch.bfloat16 if bf16 else torch.float32
            with BF16Emulation() if bf16 and emulate else contextlib.nullcontext():  # its first, untimed step
                step = train_step_fn(net, batch, side, dtype=dtype, channels_last=channels_last)
            steps.append(_emulated(step) if bf16 and emulate else step)
            batches.append(batch)
        seconds = interleaved_medians(steps, repeats, warmup, clock("auto", 1))
    finally:
        torch.set_num_threads(threads)
    img_s = {key: batch / t for key, batch, t in zip(nets, batches, seconds, strict=True)}
    for row in rows:
        row.train_img_s = img_s.get(_throughput_spec(row.first))
    return warnings
