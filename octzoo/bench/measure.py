"""What ``octzoo bench`` measures: interleaved latency, training throughput and training-step peak memory."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["clock", "interleaved_medians", "inference_fn", "train_step_fn", "train_peak_memory"]


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
    x = torch.randn(batch, 3, side, side)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def inference_fn(model: nn.Module, batch: int, side: int, channels_last: bool = False) -> Callable[[], object]:
    """One eval-mode forward under ``torch.inference_mode`` on a fixed random batch."""
    model.eval()
    x = _input(model, batch, side, channels_last)

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def train_step_fn(model: nn.Module, batch: int, side: int, lr: float = 1e-3) -> Callable[[], object]:
    """One SGD step (momentum 0.9): forward in train mode, cross-entropy, backward, update.

    The optimizer state is created by a first step here, so every timed step does the same work.
    """
    model.train()
    x = _input(model, batch, side, False)
    y = torch.randint(0, max(model.num_classes, 1), (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=False)  # gradients stay allocated between steps, as in a training loop
        loss.backward()
        opt.step()

    step()
    step.optimizer = opt
    return step


def train_peak_memory(model: nn.Module, batch: int, side: int) -> dict[str, int] | None:
    """Peak tensor memory (bytes) of one training step, from torch's ``MemTracker``.

    It follows every tensor storage the step allocates and frees: parameters, gradients, optimizer state,
    activations saved for backward and temporaries. The allocator's peak, not the process's RSS, so it does
    not depend on the allocator's caching or fragmentation. ``None`` where this torch build lacks it.
    """
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError:  # pragma: no cover - builds without torch.distributed
        return None
    step = train_step_fn(model, batch, side)  # parameters, gradients and momentum exist from here on
    tracker = MemTracker()
    tracker.track_external(model, step.optimizer)
    with tracker:
        step()
    (peak,) = tracker.get_tracker_snapshot("peak").values()
    names = {str(k).rsplit(".", 1)[-1].lower(): v for k, v in peak.items()}
    model.zero_grad(set_to_none=True)
    return {"total": int(names["total"]), "activations": int(names.get("act", 0))}
