"""The GPU table of ``scripts/gpu_bench.sh``: ResNet-50 against Oct-ResNet-50 at alpha .5 where a GPU's host
work decides.

Rows: training at batch 256 in bfloat16 autocast and channels_last, eager, ``torch.compile`` (inductor) and
``torch.compile(mode="reduce-overhead")`` (inductor with CUDA graphs), then batch-1 inference of the converted
bfloat16 model in channels_last, eager and with CUDA graphs (``reduce-overhead``, eval mode, frozen weights). The
cheap rows run first, and each row is appended to ``OUT/gpu-bench.md`` (and ``.jsonl``) as soon as it is
measured, so a run cut by a time limit still reports what it finished. Per row:

- images/s: ``steps`` back-to-back steps (after ``warmup`` untimed ones), the device synchronised at the end;
  the ratio is to ResNet-50's in the same task and mode;
- host ms/step: the calling thread's CPU time (``time.thread_time``) spent issuing one step that starts on an
  idle device, without waiting for it (median of 3 such steps); where a step issues more work than the launch
  queue holds, waiting for room counts too;
- kernels/step and launches/step: the device kernels (memory copies and sets left out) and the host's launch
  calls (``cudaLaunchKernel``, ``cuLaunchKernel``, ``cudaGraphLaunch``, ...) torch.profiler records in one step;
  a CUDA graph replays many kernels with one launch;
- peak MiB: ``torch.cuda.max_memory_allocated`` over the timed steps (the caching allocator's peak of tensor
  memory, CUDA-graph pools included);
- graphs: the graphs Dynamo compiled (more than one per model means graph breaks); cudagraph skips: inductor's
  ``cudagraph_skips`` counter for the row and the "skipping cudagraphs due to ..." reasons it logged.

``--dry-run`` runs the same code on the CPU with tiny sizes (batch 2, 32 px, one warm-up and two timed steps;
compiled modes use Dynamo's ``eager`` backend, as inductor and CUDA graphs need a GPU), to check the script
without one. Command line: ``python -m octzoo.bench.gpu --out DIR [--dry-run] [--modes ...] [--tasks ...]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import logging
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import create_model
from .backends import compiled_inference_fn
from .measure import inference_fn, train_step_fn

__all__ = ["CASES", "DRY", "FULL", "MODELS", "Sizes", "main", "measure_case", "run_table"]

MODELS = (("resnet50", 0.0), ("oct_resnet50", 0.5))
MODES = ("eager", "compile", "reduce-overhead")
TASKS = ("train", "infer")
# (task, mode), cheapest first: a run cut short still has the eager rows.
CASES = [("train", "eager"), ("infer", "eager"), ("infer", "reduce-overhead"), ("train", "compile"),
         ("train", "reduce-overhead")]  # fmt: skip
LAUNCHES = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
            "cuGraphLaunch", "cudaLaunchCooperativeKernel"}  # fmt: skip
COLUMNS = ["model", "alpha", "task", "mode", "batch", "images/s", "step ms", "host ms/step", "kernels/step",
           "launches/step", "peak MiB", "graphs", "cudagraph skips"]  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    device: str
    train_batch: int
    side: int
    warmup: int
    steps: int  # timed training steps
    infer_steps: int  # timed batch-1 forwards
    host_probes: int  # steps timed for the host, one at a time
    backend: str = "inductor"  # torch.compile's backend for the compiled modes


FULL = Sizes("cuda", 256, 224, warmup=3, steps=20, infer_steps=200, host_probes=3)
DRY = Sizes("cpu", 2, 32, warmup=1, steps=2, infer_steps=2, host_probes=1, backend="eager")


class _SkipReasons(logging.Handler):
    """Collects inductor's "skipping cudagraphs due to ..." warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage().removeprefix("skipping cudagraphs due to "))


@contextlib.contextmanager
def _skip_reasons() -> Iterator[_SkipReasons]:
    from torch._inductor.cudagraph_utils import cudagraphs_log

    handler = _SkipReasons()
    cudagraphs_log.addHandler(handler)
    try:
        yield handler
    finally:
        cudagraphs_log.removeHandler(handler)


def _counter(group: str, name: str) -> int:
    from torch._dynamo.utils import counters

    return int(counters[group][name])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: torch.nn.Module, task: str, mode: str, sizes: Sizes) -> tuple[Callable[[], object], int]:
    """One training step or batch-1 forward of ``model`` in ``mode`` (compiled in here), and its batch."""
    bf16 = torch.bfloat16
    compiled = mode != "eager"
    if sizes.backend == "inductor":
        kwargs = {"mode": None if mode == "compile" else mode}
    else:  # another backend takes no mode
        kwargs = {"backend": sizes.backend}
    model = model.to(memory_format=torch.channels_last)
    if task == "train":
        net = torch.compile(model, **kwargs) if compiled else model
        fn, batch = train_step_fn(net, sizes.train_batch, sizes.side, dtype=bf16, channels_last=True), sizes.train_batch
    elif compiled:
        fn, batch = compiled_inference_fn(model, 1, sizes.side, bf16, True, **kwargs), 1
    else:
        fn, batch = inference_fn(model, 1, sizes.side, True, bf16), 1
    step = fn.unsynced
    if not compiled:
        return step, batch

    def marked():  # a new iteration for CUDA graph trees: the previous step's outputs may be overwritten
        torch.compiler.cudagraph_mark_step_begin()
        return step()

    return marked, batch


def _profile(step: Callable[[], object], device: torch.device) -> tuple[int | None, int | None]:
    """Device kernels and host launch calls in one step (None on the CPU)."""
    if device.type != "cuda":
        return None, None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        _sync(device)
    events = prof.events()
    kernels = sum(e.device_type == DeviceType.CUDA and not e.name.startswith(("Memcpy", "Memset")) for e in events)
    launches = sum(e.device_type == DeviceType.CPU and e.name in LAUNCHES for e in events)
    return kernels, launches


def measure_case(name: str, alpha: float, task: str, mode: str, sizes: Sizes) -> dict:
    """Every column of one row (see the module's docstring)."""
    device = torch.device(sizes.device)
    model = create_model(name, **({"alpha": alpha} if alpha else {})).to(device)
    graphs, skips = _counter("stats", "unique_graphs"), _counter("inductor", "cudagraph_skips")
    with _skip_reasons() as reasons:
        step, batch = _step(model, task, mode, sizes)
        for _ in range(sizes.warmup):
            step()
            _sync(device)
        host = []
        for _ in range(sizes.host_probes):
            start = time.thread_time()
            step()
            host.append(time.thread_time() - start)
            _sync(device)
        kernels, launches = _profile(step, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        steps = sizes.steps if task == "train" else sizes.infer_steps
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        elapsed = time.perf_counter() - start
    compiled = mode != "eager"
    return dict(
        model=name, alpha=alpha, task=task, mode=mode, batch=batch,
        img_s=batch * steps / elapsed, step_ms=1e3 * elapsed / steps, host_ms=1e3 * statistics.median(host),
        kernels=kernels, launches=launches,
        peak_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        graphs=_counter("stats", "unique_graphs") - graphs if compiled else None,
        cudagraph_skips=_counter("inductor", "cudagraph_skips") - skips if compiled else None,
        skip_reasons=reasons.reasons,
    )  # fmt: skip


def _cells(rec: dict, plain: dict | None) -> list[str]:
    def num(key: str, fmt: str) -> str:
        return "-" if rec.get(key) is None else f"{rec[key]:{fmt}}"

    if rec.get("error"):
        return [rec["model"], f"{rec['alpha']:g}", rec["task"], rec["mode"], "-", f"failed: {rec['error']}",
                *["-"] * (len(COLUMNS) - 6)]  # fmt: skip
    img_s = num("img_s", ".1f")
    if plain and plain.get("img_s") and rec["model"] != plain["model"]:
        img_s += f" ({rec['img_s'] / plain['img_s']:.2f})"
    skips = num("cudagraph_skips", "d")
    if rec.get("skip_reasons"):
        skips += ": " + "; ".join(dict.fromkeys(rec["skip_reasons"]))
    return [rec["model"], f"{rec['alpha']:g}", rec["task"], rec["mode"], str(rec["batch"]), img_s,
            num("step_ms", ".2f"), num("host_ms", ".2f"), num("kernels", "d"), num("launches", "d"),
            num("peak_mib", ".0f"), num("graphs", "d"), skips]  # fmt: skip


def _cleanup(device: torch.device) -> None:
    torch._dynamo.reset()  # drops compiled code and CUDA graph pools
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_table(
    out: Path,
    sizes: Sizes,
    cases: list[tuple[str, str]] = CASES,
    models: tuple[tuple[str, float], ...] = MODELS,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Measure ``cases`` for ``models`` (plain first), appending each row to ``out/gpu-bench.md`` and
    ``out/gpu-bench.jsonl`` as soon as it is measured; a row that fails says why and the run goes on."""
    out.mkdir(parents=True, exist_ok=True)
    md, jsonl = out / "gpu-bench.md", out / "gpu-bench.jsonl"
    device = torch.device(sizes.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    md.write_text(f"torch {torch.__version__}, {where}, {datetime.datetime.now().isoformat(timespec='seconds')}; "
                  f"bfloat16 autocast (training) / converted (inference), channels_last, {sizes.side} px\n\n"
                  f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}\n")  # fmt: skip
    jsonl.write_text("")
    records, plain = [], {}
    for task, mode in cases:
        for name, alpha in models:
            log(f"{name} alpha {alpha:g}: {task} {mode}")
            try:
                rec = measure_case(name, alpha, task, mode, sizes)
            except Exception as e:  # one failing mode must not cost the rows after it
                traceback.print_exc()
                rec = dict(model=name, alpha=alpha, task=task, mode=mode, error=f"{type(e).__name__}: {e}"[:200])
            _cleanup(device)
            if not alpha:
                plain[task, mode] = rec
            with md.open("a") as f:
                f.write(f"| {' | '.join(_cells(rec, plain.get((task, mode))))} |\n")
            with jsonl.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m octzoo.bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for gpu-bench.md / .jsonl")
    p.add_argument("--dry-run", action="store_true", help="the same code on the CPU with tiny sizes")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes to run (default: all)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to run (default: both)")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        p.error("no CUDA device is available to this torch; --dry-run runs the same code on the CPU")
    sizes = DRY if args.dry_run else FULL
    cases = [(t, m) for t, m in CASES if t in args.tasks and m in args.modes]
    start = time.time()
    records = run_table(args.out, sizes, cases, log=lambda msg: print(f"[{time.time() - start:6.1f}s] {msg}",
                                                                       file=sys.stderr))  # fmt: skip
    print((args.out / "gpu-bench.md").read_text())
    return 1 if any(r.get("error") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
