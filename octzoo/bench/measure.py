"""What ``octzoo bench`` measures: interleaved latency, training throughput and training-step peak memory."""

from __future__ import annotations

import copy
import ctypes
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "clock",
    "hold_freed_memory",
    "host_ms",
    "interleaved_medians",
    "interleaved_latency",
    "inference_fn",
    "train_step_fn",
    "train_peak_memory",
]


def hold_freed_memory() -> str | None:
    """Make glibc's malloc keep the memory a forward frees, so the next forward reuses it without page faults.

    By default glibc serves large blocks (a batch-1 feature map of a few MB) with fresh mmaps, or trims the
    heap when they are freed, and a forward then page-faults its activations in again: plain MobileNetV2 took
    about 3,000 minor page faults and 36 ms per forward, against none and 22 ms with freed memory held, and how
    often it happens depends on what the process ran before (the same model measured 21 ms after the ResNet-50
    family and 27 ms alone). Disabling mmap for allocations and heap trimming takes that term out of every
    row, as long-running inference processes and PyTorch's GPU caching allocator do. Returns what was set,
    for the report, or None where the C library is not glibc (nothing is changed then).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    if mallopt(m_mmap_max, 0) != 1 or mallopt(m_trim_threshold, 1 << 30) != 1:
        return None
    return "glibc malloc holding freed memory (no mmap, no trim)"


def clock(kind: str, threads: int) -> Callable[[], float]:
    """The timer: ``wall`` (perf_counter) or ``cpu`` (the calling thread's CPU time).

    With one intra-op thread all the work runs on the calling thread, so its CPU time equals the wall time
    of an idle machine while ignoring the time other processes take the core away; ``auto`` picks it then.
    """
    if kind == "auto":
        kind = "cpu" if threads == 1 else "wall"
    if kind == "cpu" and threads != 1:
        raise ValueError("--clock cpu counts the calling thread only; it needs --threads 1")
    return time.thread_time if kind == "cpu" else time.perf_counter


def interleaved_medians(
    fns: list[Callable[[], object]], repeats: int, warmup: int, timer: Callable[[], float]
) -> list[float]:
    """Median seconds per call of each function. Every round calls each function once, the order rotating
    from round to round, so a change in machine load hits all of them alike; ``warmup`` rounds are untimed."""
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(warmup + repeats):
        for k in range(len(fns)):
            i = (k + round_) % len(fns)
            start = timer()
            fns[i]()
            elapsed = timer() - start
            if round_ >= warmup:
                times[i].append(elapsed)
    return [statistics.median(t) for t in times]


def _input(model: nn.Module, batch: int, side: int, channels_last: bool) -> torch.Tensor:
    """A random batch on the model's device, in its dtype."""
    p = next(model.parameters())
    x = torch.randn(batch, 3, side, side, device=p.device, dtype=p.dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` timed for the host: ``.host_s`` collects the calling thread's CPU seconds spent in each call of
    ``fn``, and on a GPU the call then waits for the queued kernels, so that a timer around it measures the work,
    not the launch. ``.unsynced`` is ``fn`` itself."""
    host: list[float] = []
    cuda = device.type == "cuda"

    def run():
        start = time.thread_time()
        out = fn()
        host.append(time.thread_time() - start)
        if cuda:
            torch.cuda.synchronize(device)
        return out

    run.host_s, run.unsynced = host, fn
    return run


def host_ms(fn: Callable[[], object], calls: int) -> float:
    """The median host milliseconds of the last ``calls`` calls of a function from :func:`_synced`."""
    return 1e3 * statistics.median(fn.host_s[-calls:])


def interleaved_latency(pairs: list[tuple[nn.Module, torch.Tensor]], repeats: int = 20, warmup: int = 2) -> list[float]:
    """Median wall seconds of each ``(eval model, input)`` forward under ``torch.inference_mode``, the models
    interleaved (:func:`interleaved_medians`)."""
    with torch.inference_mode():
        fns = [lambda m=model, x=x: m(x) for model, x in pairs]
        return interleaved_medians(fns, repeats, warmup, time.perf_counter) if fns else []


def inference_fn(
    model: nn.Module, batch: int, side: int, channels_last: bool = False, dtype: torch.dtype = torch.float32
) -> Callable[[], object]:
    """One eval-mode forward under ``torch.inference_mode`` on a fixed random batch, on the model's device;
    another ``dtype`` runs a converted copy (bfloat16 inference)."""
    model.eval()
    if dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model).to(dtype)
    x = _input(model, batch, side, channels_last)

    def run():
        with torch.inference_mode():
            return model(x)

    return _synced(run, x.device)


def train_step_fn(
    model: nn.Module,
    batch: int,
    side: int,
    lr: float = 1e-3,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Callable[[], object]:
    """One SGD step (momentum 0.9): forward in train mode, cross-entropy, backward, update, on the model's device;
    ``dtype=torch.bfloat16`` runs the forward under autocast (mixed precision, float32 weights), and
    ``channels_last`` feeds a channels_last batch (convert the model too). A ``torch.compile``'d model compiles in
    the first step, which runs here.

    The optimizer state is created by that first step, so every timed step does the same work. The returned
    function also has ``.host_s`` (see :func:`_synced`), ``.unsynced`` and ``.optimizer``.
    """
    model.train()
    x = _input(model, batch, side, channels_last)
    y = torch.randint(0, max(model.num_classes, 1), (batch,), device=x.device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    mixed = dtype != torch.float32

    def step():
        with torch.autocast(x.device.type, dtype=dtype, enabled=mixed):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=False)  # gradients stay allocated between steps, as in a training loop
        loss.backward()
        opt.step()

    step()
    timed = _synced(step, x.device)
    timed.optimizer = opt
    return timed


def train_peak_memory(
    model: nn.Module, batch: int, side: int, dtype: torch.dtype = torch.float32
) -> dict[str, int] | None:
    """Peak tensor memory (bytes) of one training step, from torch's ``MemTracker``.

    It follows every tensor storage the step allocates and frees: parameters, gradients, optimizer state,
    activations saved for backward and temporaries. The allocator's peak, not the process's RSS, so it does
    not depend on the allocator's caching or fragmentation. ``None`` where this torch build lacks it.
    """
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError:  # pragma: no cover - builds without torch.distributed
        return None
    step = train_step_fn(model, batch, side, dtype=dtype)  # parameters, gradients and momentum exist from here on
    tracker = MemTracker()
    tracker.track_external(model, step.optimizer)
    with tracker:
        step()
    (peak,) = tracker.get_tracker_snapshot("peak").values()
    names = {str(k).rsplit(".", 1)[-1].lower(): v for k, v in peak.items()}
    model.zero_grad(set_to_none=True)
    return {"total": int(names["total"]), "activations": int(names.get("act", 0))}
