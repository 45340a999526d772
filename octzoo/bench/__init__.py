"""``octzoo bench``: octave networks against their plain twins, side by side in one process.

For each family (a plain network and its octave versions at several alphas) it measures parameters,
multiply-adds, batch-1 and larger-batch inference latency, training throughput, host time and operators per
training step and the peak memory of a training step, and divides each by the plain twin's. Octave rows are also
timed with the reference four-convolution implementation (:mod:`octzoo.bench.naive`); every row in
channels_last and, on request, with the other inference backends (:mod:`octzoo.bench.backends`: torch.compile
with frozen weights, onnxruntime) and trained in channels_last and compiled modes.
:mod:`octzoo.bench.report` turns the rows into a table, CSV, JSON and a plot.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import create_model, profile
from ..layers import cpu_fast_path
from .backends import backend_problem, compiled_inference_fn, onnxruntime_fn
from .measure import clock, host_ms, inference_fn, interleaved_medians, train_peak_memory, train_step_fn
from .naive import naive_copy, naive_forward
from .ops import count_train_ops

__all__ = ["FAMILIES", "INFERENCE_MODES", "TRAIN_MODES", "Family", "Row", "Settings", "naive_copy", "naive_forward",
           "run"]  # fmt: skip

# Batch-1 latencies (ms) and the mode or backend each names; "fastest" is the quickest of those measured.
INFERENCE_MODES = {"latency_ms": "eager", "cl_ms": "channels_last", "compile_ms": "compile", "ort_ms": "onnxruntime"}
# Training modes: (images/s, host ms per step) measurement names.
TRAIN_MODES = {
    "eager": ("train_img_s", "train_host_ms"),
    "channels_last": ("train_cl_img_s", "train_cl_host_ms"),
    "compile": ("train_compile_img_s", "train_compile_host_ms"),
}


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
    train_batch_imagenet: int | None = None  # None: 32 on the CPU, 256 on a GPU
    train_batch_cifar: int = 128
    train: str = "cifar"  # which families get training throughput and memory: cifar, all, none
    train_modes: tuple[str, ...] = ("eager", "channels_last")  # of TRAIN_MODES
    naive: bool = True
    channels_last: bool = True
    backends: tuple[str, ...] = ("eager",)  # inference backends; eager is always measured
    definition_path: bool = False  # the octave layers' plain-ATen definition path on the CPU too
    full: bool = False
    clock: str = "auto"
    device: str = "cpu"  # or "cuda"
    dtype: str = "float32"  # or "bfloat16": converted models for inference, autocast for training

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def train_batch(self, family: Family) -> int:
        if not family.imagenet:
            return self.train_batch_cifar
        return self.train_batch_imagenet or (256 if self.device == "cuda" else 32)

    @property
    def operator_path(self) -> str:
        """The octave layers' path in the eager measurements (compiled and exported models trace the definition)."""
        return "definition path" if self.definition_path or self.device != "cpu" else "CPU fast path"


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


def _inference(rows: list[Row], family: Family, s: Settings, timer, log: Callable[[str], None]) -> None:
    """Batch-1 latency of every backend and variant in the same interleaved rounds, then the larger batch."""
    side, dt = family.side, s.torch_dtype
    fns = {"latency_ms": lambda r: inference_fn(r.module, 1, side, dtype=dt)}
    if s.naive:  # the reference runs in the same rounds as the models it is compared with
        fns["naive_ms"] = lambda r: None if r.plain else inference_fn(naive_copy(r.module), 1, side, dtype=dt)
    if s.channels_last:
        fns["cl_ms"] = lambda r: inference_fn(_cl_copy(r.module), 1, side, True, dtype=dt)
    if "compile" in s.backends:
        fns["compile_ms"] = lambda r: compiled_inference_fn(r.module, 1, side, dt)
    if "onnxruntime" in s.backends:

        def ort(row: Row) -> Callable:
            fn = onnxruntime_fn(row.module, 1, side, s.threads)
            row.m["onnx_rel_error"] = fn.rel_error
            return fn

        fns["ort_ms"] = ort
    names = ", ".join(INFERENCE_MODES.get(k, "reference") for k in fns)
    first = {"compile": "compiles (minutes on few cores)", "onnxruntime": "exports to ONNX"}
    first = [what for backend, what in first.items() if backend in s.backends]
    log(f"{family.name}: latency at batch 1: {names}" + (f" ({' and '.join(first)} first)" if first else ""))
    _latency(rows, fns, s, timer, s.warmup)
    for row in rows:
        row.m["fastest_ms"] = min(row.m[k] for k in INFERENCE_MODES if row.m.get(k) is not None)
    log(f"{family.name}: latency at batch {s.batch_size}")
    _latency(rows, {"batch_ms": lambda r: inference_fn(r.module, s.batch_size, side, dtype=dt)}, s, timer, 1)


def _train_model(model: nn.Module, mode: str) -> nn.Module:
    if mode == "channels_last":
        return _cl_copy(model)
    return torch.compile(copy.deepcopy(model)) if mode == "compile" else model


def _train(rows: list[Row], family: Family, s: Settings, timer, log: Callable[[str], None]) -> None:
    """Training images/s per mode (interleaved), host ms per step (GPU), operators per step and peak memory."""
    batch, side, dt = s.train_batch(family), family.side, s.torch_dtype
    compiling = " (compiles forward and backward first)" if "compile" in s.train_modes else ""
    log(f"{family.name}: training throughput at batch {batch}: {', '.join(s.train_modes)}{compiling}")
    runs = [(row, mode, train_step_fn(_train_model(row.module, mode), batch, side, dtype=dt,
                                      channels_last=mode == "channels_last"))
            for mode in s.train_modes for row in rows]  # fmt: skip
    reps = max(2, s.repeats // 3) if family.imagenet else s.repeats
    for (row, mode, step), t in zip(runs, interleaved_medians([r[2] for r in runs], reps, 1, timer), strict=True):
        img_s, host = TRAIN_MODES[mode]
        row.m[img_s] = batch / t
        row.m[host] = host_ms(step, reps) if s.device == "cuda" else None  # on the CPU it is the step time
    del runs
    log(f"{family.name}: operators per step and peak memory of a training step ({s.operator_path})")
    for row in rows:
        x = torch.randn(2, 3, side, side, device=s.device)  # the count does not depend on the batch
        with torch.autocast(x.device.type, dtype=dt, enabled=dt != torch.float32):
            row.m["train_ops"] = count_train_ops(row.module, x)
        peak = train_peak_memory(row.module, batch, side, dtype=dt)
        row.m["train_peak_mib"] = None if peak is None else peak["total"] / 2**20
        row.m["train_act_mib"] = None if peak is None else peak["activations"] / 2**20
        row.m["train_batch"] = batch


def measure_family(family: Family, s: Settings, log: Callable[[str], None] = print) -> list[Row]:
    """Every measurement of one family; its plain twin is the first row."""
    alphas = family.full_alphas if s.full else family.alphas
    rows = [_build(family, a, s.device) for a in (0.0, *alphas)]
    timer = clock(s.clock, s.threads) if s.device == "cpu" else clock("wall", s.threads)
    _inference(rows, family, s, timer, log)
    if s.train_modes and (s.train == "all" or (s.train == "cifar" and not family.imagenet)):
        _train(rows, family, s, timer, log)
    for row in rows:
        row.module = None  # free the weights before the next family
    return rows


def run(families: list[Family], s: Settings, log: Callable[[str], None] = print) -> list[Row]:
    """Measure ``families`` one after the other with ``s.threads`` intra-op threads; returns all rows.

    With ``s.definition_path`` the octave layers run their plain-ATen definition (as on a GPU and under
    ``torch.compile``) instead of the CPU eager fast path.
    """
    if problem := backend_problem(s.backends, s.device, s.dtype):
        raise ValueError(problem)
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        with cpu_fast_path(False) if s.definition_path else contextlib.nullcontext():
            return [row for family in families for row in measure_family(family, s, log)]
    finally:
        torch.set_num_threads(before)
