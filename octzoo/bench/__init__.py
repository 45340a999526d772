"""``octzoo bench``: octave networks against their plain twins, side by side in one process.

For each family (a plain network and its octave versions at several alphas) it measures parameters,
multiply-adds, batch-1 and larger-batch inference latency, training throughput and the peak memory of a
training step, and divides each by the plain twin's. Octave rows are also timed with the reference
four-convolution implementation (:mod:`octzoo.bench.naive`), and every row in channels_last and, on request,
compiled with ``torch.compile``. :mod:`octzoo.bench.report` turns the rows into a table, CSV, JSON and a plot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import create_model, profile
from .measure import clock, inference_fn, interleaved_medians, train_peak_memory, train_step_fn
from .naive import naive_copy, naive_forward

__all__ = ["FAMILIES", "Family", "Row", "Settings", "naive_copy", "naive_forward", "run"]


@dataclass(frozen=True)
class Family:
    """A plain network and its octave twin; ``paper`` holds the paper's (G)MACs and CPU ms per alpha."""

    name: str
    plain: str
    octave: str
    alphas: tuple[float, ...]
    full_alphas: tuple[float, ...]
    side: int
    width_mult: float | None = None
    imagenet: bool = True
    paper: dict[float, tuple[float, float]] = field(default_factory=dict)


# The paper's Table 2 (ResNet-50, 1 thread) and Table 5 (MobileNets): alpha -> (MACs, CPU ms).
FAMILIES = [
    Family("ResNet-50", "resnet50", "oct_resnet50", (0.125, 0.25, 0.5, 0.75), (0.125, 0.25, 0.5, 0.75), 224,
           paper={0: (4.1, 115), 0.125: (3.6, 116), 0.25: (3.1, 99), 0.5: (2.4, 74), 0.75: (1.9, 61)}),
    Family("0.75 MobileNetV1", "mobilenet_v1", "oct_mobilenet_v1", (0.375,), (0.375,), 224, 0.75,
           paper={0: (0.325, 13.4), 0.375: (0.213, 11.9)}),
    Family("1.0 MobileNetV1", "mobilenet_v1", "oct_mobilenet_v1", (0.5,), (0.5,), 224, 1.0),
    Family("1.0 MobileNetV2", "mobilenet_v2", "oct_mobilenet_v2", (0.375,), (0.375,), 224, 1.0,
           paper={0: (0.300, 24.5), 0.375: (0.256, 17.1)}),
    Family("1.125 MobileNetV2", "mobilenet_v2", "oct_mobilenet_v2", (0.5,), (0.5,), 224, 1.125),
    Family("CIFAR ResNet-20", "resnet20", "oct_resnet20", (0.25, 0.5, 0.75), (0.125, 0.25, 0.5, 0.75), 32,
           imagenet=False),
    Family("CIFAR ResNet-56", "resnet56", "oct_resnet56", (0.5,), (0.125, 0.25, 0.5, 0.75), 32, imagenet=False),
]  # fmt: skip


@dataclass
class Settings:
    threads: int = 1
    repeats: int = 10
    warmup: int = 2
    batch_size: int = 8  # the larger inference batch (batch 1 is always measured)
    train_batch_imagenet: int = 32
    train_batch_cifar: int = 128
    train: str = "cifar"  # which families get training throughput and memory: cifar, all, none
    naive: bool = True
    channels_last: bool = True
    compile: bool = False
    full: bool = False
    clock: str = "auto"
    device: str = "cpu"  # or "cuda"
    dtype: str = "float32"  # or "bfloat16": converted models for inference, autocast for training

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


@dataclass
class Row:
    family: str
    model: str
    alpha: float
    width_mult: float | None
    side: int
    params: int
    macs: int
    m: dict[str, float | None] = field(default_factory=dict)  # measurement name -> value
    module: nn.Module | None = field(default=None, repr=False)

    @property
    def plain(self) -> bool:
        return self.alpha == 0


def _build(family: Family, alpha: float, device: str = "cpu") -> Row:
    name = family.octave if alpha else family.plain
    kwargs = {} if family.width_mult is None else {"width_mult": family.width_mult}
    if alpha:
        kwargs["alpha"] = alpha
    model = create_model(name, **kwargs).eval()
    prof = profile(model, (3, family.side, family.side))
    model = model.to(device)
    return Row(family.name, name, alpha, family.width_mult, family.side, prof.params, prof.macs, module=model)


def _latency(rows: list[Row], fns: dict[str, Callable[[Row], Callable | None]], s: Settings, timer, warmup: int):
    """Time ``fns[key](row)`` for every key and row in one interleaved loop; store ms in ``row.m[key]``."""
    runs = [(row, key, fn) for key, make in fns.items() for row in rows if (fn := make(row)) is not None]
    medians = interleaved_medians([fn for _, _, fn in runs], s.repeats, warmup, timer)
    for (row, key, _), t in zip(runs, medians, strict=True):
        row.m[key] = 1e3 * t


def _cl_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def measure_family(family: Family, s: Settings, log: Callable[[str], None] = print) -> list[Row]:
    """Every measurement of one family; its plain twin is the first row."""
    alphas = family.full_alphas if s.full else family.alphas
    rows = [_build(family, a, s.device) for a in (0.0, *alphas)]
    timer = clock(s.clock, s.threads) if s.device == "cpu" else clock("wall", s.threads)
    side, dt = family.side, s.torch_dtype
    eager = {"latency_ms": lambda r: inference_fn(r.module, 1, side, dtype=dt)}
    if s.naive:  # the reference runs in the same rounds as the models it is compared with
        eager["naive_ms"] = lambda r: None if r.plain else inference_fn(naive_copy(r.module), 1, side, dtype=dt)
    log(f"{family.name}: latency at batch 1" + (" (and of the reference implementation)" if s.naive else ""))
    _latency(rows, eager, s, timer, s.warmup)
    log(f"{family.name}: latency at batch {s.batch_size}")
    _latency(rows, {"batch_ms": lambda r: inference_fn(r.module, s.batch_size, side, dtype=dt)}, s, timer, 1)
    if s.channels_last:
        log(f"{family.name}: channels_last latency")
        make_cl = lambda r: inference_fn(_cl_copy(r.module), 1, side, True, dtype=dt)  # noqa: E731
        _latency(rows, {"cl_ms": make_cl}, s, timer, s.warmup)
    if s.compile:
        log(f"{family.name}: torch.compile latency (compiles first; slow on few cores)")
        make = lambda r: inference_fn(torch.compile(copy.deepcopy(r.module)), 1, side, dtype=dt)  # noqa: E731
        _latency(rows, {"compile_ms": make}, s, timer, max(s.warmup, 2))
    if s.train == "all" or (s.train == "cifar" and not family.imagenet):
        batch = s.train_batch_imagenet if family.imagenet else s.train_batch_cifar
        log(f"{family.name}: training throughput and peak memory at batch {batch}")
        steps = [train_step_fn(r.module, batch, side, dtype=dt) for r in rows]
        reps = max(2, s.repeats // 3) if family.imagenet else s.repeats
        for row, t in zip(rows, interleaved_medians(steps, reps, 1, timer), strict=True):
            row.m["train_img_s"] = batch / t
        for row in rows:
            peak = train_peak_memory(row.module, batch, side, dtype=dt)
            row.m["train_peak_mib"] = None if peak is None else peak["total"] / 2**20
            row.m["train_act_mib"] = None if peak is None else peak["activations"] / 2**20
            row.m["train_batch"] = batch
    for row in rows:
        row.module = None  # free the weights before the next family
    return rows


def run(families: list[Family], s: Settings, log: Callable[[str], None] = print) -> list[Row]:
    """Measure ``families`` one after the other with ``s.threads`` intra-op threads; returns all rows."""
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        return [row for family in families for row in measure_family(family, s, log)]
    finally:
        torch.set_num_threads(before)
