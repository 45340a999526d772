"""The ``octzoo bench`` subcommand: argument parsing, the run, and the files it writes."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

from . import FAMILIES, TRAIN_MODES, Settings, run
from .backends import BACKENDS, backend_problem
from .measure import hold_freed_memory
from .report import goal_lines, markdown_table, write_csv, write_json, write_plot

__all__ = ["add_parser", "main"]

DESCRIPTION = """\
Octave networks against their plain twins, side by side in one process: parameters, multiply-adds (MACs),
inference latency at batch 1 and at a larger batch, training throughput, host time and operators per training
step, and the peak memory of a training step, each with its ratio to the plain network of the same family.

Rows: the paper's Table 2 (ResNet-50 at alpha 0, .125, .25, .5, .75) and Table 5 (MobileNetV1 0.75 / 1.0,
MobileNetV2 1.0 / 1.125) at 224 px, and CIFAR ResNet-20 / ResNet-56 at 32 px. Octave rows are also timed with
the reference implementation the existing ports use (four convolutions, a materialised upsample, separate
pools), and every row in channels_last (model and input converted; ratios against the plain twin in
channels_last too).

Inference backends (--backend, eager always included): compile is torch.compile (inductor) of the eval model
with torch._inductor.config.freezing on (weights folded in as constants), compiled before timing; onnxruntime
exports the model with octzoo's ONNX export (checked against eager PyTorch) and runs session.run on the
CPUExecutionProvider with --threads intra-op threads and every graph optimisation (ORT_ENABLE_ALL). All
backends run in the same interleaved rounds. "fastest b1 ms" names the quickest mode or backend of the row,
and its ratio is to the plain twin's fastest of the same backends: the figure the deployment goals read.

Latency: eval mode under torch.inference_mode on random input, the median of --repeats interleaved rounds
(each round runs every model and backend of the family once, the order rotating) after --warmup untimed rounds.
Training throughput: images/s of SGD steps (forward, cross-entropy, backward, update) in train mode, per
training mode (--train-modes: eager NCHW, channels_last, compile with torch.compile), interleaved the same way;
ratios are to the plain twin in the same mode. Host ms per step (on a GPU only): the CPU time the calling
thread spends issuing one step, before waiting for the device; on the CPU it would equal the step time, so it is
left out. Operators per step: the ATen compute operators of one forward, cross-entropy and backward (views and
bare allocations excluded, no optimizer; octzoo.bench.ops), counted on a batch of 2. Peak memory: torch's
MemTracker around one eager NCHW training step, i.e. the peak of live tensor memory (parameters, gradients,
momentum, activations, temporaries), independent of the allocator. Training is measured for the CIFAR families
by default, for every family with --train all or --full (slow for the ImageNet nets on a CPU), at batch 128
(CIFAR) and 32 (ImageNet; 256 with --device cuda).

Operator path: on the CPU, eager octave layers take their CPU fast path; --definition-path runs them on their
plain-ATen definition instead, the path that runs on GPUs and that torch.compile and the ONNX export trace.
The eager measurements, operator counts and peak memory are of the path the report names.

Clock: with --threads 1 the default (auto) is the calling thread's CPU time, which equals the wall time on an
idle machine but leaves out time the core spends on other processes; --clock wall forces wall time.

Malloc: on Linux, glibc's malloc is set to keep the memory a forward frees (no mmap for large blocks, no heap
trimming), so that each forward does not page-fault its activations in again, a cost that otherwise varies
with what ran earlier in the process; --system-malloc leaves malloc as it is."""

EPILOG = """\
examples:
  octzoo bench                                   the default rows and measurements (a few minutes)
  octzoo bench --full                            every alpha, training and memory for every family
  octzoo bench --families ResNet-50 --repeats 20 one family, more repeats
  octzoo bench --backend eager compile onnxruntime --families ResNet-50 "1.0 MobileNetV2"
                                                 the deployment goals: fastest backend against plain's
  octzoo bench --families "CIFAR ResNet-20" --definition-path
                                                 the definition path (as on a GPU) on the CPU
  octzoo bench --families "CIFAR ResNet-20" --compile --out results/
                                                 compiled inference and training too"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "bench",
        help="benchmark octave networks against their plain twins (latency, training, memory)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = [f.name for f in FAMILIES]
    p.add_argument("--families", nargs="+", metavar="NAME", choices=names, help=f"families to run (from: {names})")
    p.add_argument("--full", action="store_true", help="every alpha of every family; training for all families")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch intra-op threads (default: 1)")
    p.add_argument("--repeats", type=int, default=10, metavar="R", help="timed rounds (default: 10)")
    p.add_argument("--warmup", type=int, default=2, metavar="W", help="untimed rounds first (default: 2)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="the larger inference batch (default: 8)")
    p.add_argument("--train", choices=["cifar", "all", "none"], help="who trains (default: cifar; all if --full)")
    p.add_argument(
        "--train-batch-size",
        type=int,
        metavar="B",
        help="training batch (default: 128 CIFAR; 32 ImageNet, 256 with --device cuda)",
    )
    p.add_argument(
        "--train-modes",
        nargs="+",
        choices=list(TRAIN_MODES),
        metavar="MODE",
        help="training modes: eager channels_last compile (default: eager channels_last; eager only "
        "with --no-channels-last; compile added by --compile)",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        choices=list(BACKENDS),
        default=["eager"],
        metavar="NAME",
        help="inference backends: eager compile onnxruntime (default: eager; eager is always timed)",
    )
    p.add_argument("--no-naive", action="store_true", help="skip the reference four-convolution implementation")
    p.add_argument("--no-channels-last", action="store_true", help="skip the channels_last variants")
    p.add_argument(
        "--compile",
        action="store_true",
        help="add compile to --backend and --train-modes (compiles take minutes on a few cores)",
    )
    p.add_argument(
        "--definition-path",
        action="store_true",
        help="run the octave layers on their plain-ATen definition path (as on a GPU), not the CPU fast path",
    )
    p.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto", help="timer (default: auto)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to run (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: converted models for inference, autocast for training (default: float32)",
    )
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (freed blocks go back to the system: latencies then include page "
        "faults that depend on what ran before)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR", help="output folder")
    p.set_defaults(func=main, parser=p)


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for flag, value, low in [("--threads", args.threads, 1), ("--repeats", args.repeats, 1),
                             ("--warmup", args.warmup, 0), ("--batch-size", args.batch_size, 1),
                             ("--train-batch-size", args.train_batch_size, 1)]:  # fmt: skip
        if value is not None and value < low:
            parser.error(f"{flag} must be at least {low}, got {value}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch")
    if args.device == "cuda" and args.clock == "cpu":
        parser.error("--clock cpu measures the CPU; GPU timings use wall time")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu counts the calling thread only; use it with --threads 1")
    backends = tuple(dict.fromkeys(["eager", *args.backend, *(["compile"] if args.compile else [])]))
    if problem := backend_problem(backends, args.device, args.dtype):
        parser.error(f"--backend: {problem}")
    train_modes = args.train_modes or ["eager", *([] if args.no_channels_last else ["channels_last"])]
    train_modes = tuple(dict.fromkeys([*train_modes, *(["compile"] if args.compile else [])]))
    s = Settings(
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        batch_size=args.batch_size,
        train=args.train or ("all" if args.full else "cifar"),
        naive=not args.no_naive,
        channels_last=not args.no_channels_last,
        backends=backends,
        train_modes=train_modes,
        definition_path=args.definition_path,
        full=args.full,
        clock=args.clock,
        device=args.device,
        dtype=args.dtype,
    )
    if args.train_batch_size:
        s.train_batch_imagenet = s.train_batch_cifar = args.train_batch_size
    imagenet_batch = s.train_batch(next(f for f in FAMILIES if f.imagenet))
    families = [f for f in FAMILIES if args.families is None or f.name in args.families]
    malloc = None if args.system_malloc else hold_freed_memory()
    start = time.time()
    rows = run(families, s, log=lambda msg: print(f"[{time.time() - start:6.1f}s] {msg}", file=sys.stderr))
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("func", "parser")}
    meta = dict(
        torch=torch.__version__,
        device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        dtype=args.dtype,
        threads=s.threads,
        clock=args.clock,
        backends=list(backends),
        train_modes=list(train_modes),
        operator_path=s.operator_path,
        malloc=malloc or "system default",
        options=options,
        machine=platform.machine(),
        processor=platform.processor() or platform.machine(),
        cpu_count=_cpu_count(),
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        seconds=round(time.time() - start, 1),
    )
    print(markdown_table(rows, s.batch_size))
    cpu_clock = args.device == "cpu" and (args.clock == "cpu" or (args.clock == "auto" and s.threads == 1))
    timer = "thread CPU time" if cpu_clock else "wall time"
    where = f"{meta['device']} {args.dtype}" if args.device == "cuda" else f"CPU {args.dtype}, {s.threads} thread(s)"
    print(f"\n(x): ratio to the plain twin of the same family (training: speed-up). torch {torch.__version__}, "
          f"{where}, {timer}; latency: median of {s.repeats} interleaved rounds after {s.warmup} "
          f"warm-up; backends: {', '.join(backends)}; octave layers on the {s.operator_path} in eager mode"
          + ("" if s.train == "none" else f"; training: SGD at batch {s.train_batch_cifar} (CIFAR) / {imagenet_batch} "
             f"(ImageNet), modes {', '.join(train_modes)}; peak: MemTracker's peak of live tensor memory in one "
             "eager NCHW training step") + (f"; {malloc}." if malloc else "."))  # fmt: skip
    for line in goal_lines(rows):
        print("- " + line)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "bench.csv")
    write_json(rows, meta, args.out / "bench.json")
    written = ["bench.csv", "bench.json"] + (["bench.png"] if write_plot(rows, args.out / "bench.png") else [])
    print(f"\nwrote {', '.join(str(args.out / w) for w in written)} in {meta['seconds']} s", file=sys.stderr)
    return 0


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
