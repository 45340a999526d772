"""Inference backends of ``octzoo bench`` besides eager PyTorch: ``torch.compile`` with frozen weights, and
onnxruntime running the project's ONNX export.

Both see the octave layers' definition path (plain ATen operators): compilers and exporters trace it, never the
CPU eager fast path. Each ``*_fn`` returns a function that runs one batch, ready to be timed in the same
interleaved rounds as the eager models (:func:`octzoo.bench.measure.interleaved_medians`).
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..export import export_onnx
from .measure import inference_fn

__all__ = ["BACKENDS", "backend_problem", "compiled_inference_fn", "onnxruntime_fn"]

BACKENDS = ("eager", "compile", "onnxruntime")


def backend_problem(backends: tuple[str, ...] | list[str], device: str, dtype: str) -> str | None:
    """Why ``backends`` cannot run with ``device`` and ``dtype`` here, or None when they can."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        return f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}"
    if "onnxruntime" in backends:
        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
            return "the onnxruntime backend needs onnx and onnxruntime: pip install onnx onnxruntime"
        if device != "cpu":
            return "the onnxruntime backend runs on the CPU (CPUExecutionProvider); drop it or use --device cpu"
        if dtype != "float32":
            return "the onnxruntime backend times the float32 export; drop it or use --dtype float32"
    return None


def compiled_inference_fn(
    model: nn.Module,
    batch: int,
    side: int,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    mode: str | None = None,
    backend: str = "inductor",
) -> Callable[[], object]:
    """An eval-mode copy of ``model`` compiled by inductor with ``torch._inductor.config.freezing``: the weights
    become constants of the graph, so the batch norms fold into the convolutions and the weights are laid out
    for them once. ``mode`` and ``backend`` are ``torch.compile``'s (``mode="reduce-overhead"``: CUDA graphs on a
    GPU; ``backend="eager"``: Dynamo's capture only, for checks without a compiler).

    The first call compiles; it runs here, under the flag, which is restored afterwards (later calls reuse the
    compiled graph: inference mode and the input never change, so nothing recompiles).
    """
    model = copy.deepcopy(model).to(dtype).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fn = inference_fn(torch.compile(model, mode=mode, backend=backend), batch, side, channels_last, dtype)
    with torch._inductor.config.patch(freezing=True):
        fn()
    return fn


def onnxruntime_fn(model: nn.Module, batch: int, side: int, threads: int) -> Callable[[], object]:
    """``session.run`` on a fixed random batch: ``model`` exported with :func:`octzoo.export.export_onnx` (which
    also checks onnxruntime's output against eager PyTorch; the relative error is the function's ``.rel_error``),
    loaded into an ``onnxruntime.InferenceSession`` on the CPUExecutionProvider with ``threads`` intra-op threads
    and every graph optimisation (``ORT_ENABLE_ALL``)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        error = export_onnx(copy.deepcopy(model).float().cpu().eval(), path, (3, side, side))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"images": torch.randn(batch, 3, side, side).numpy()}

    def run():
        return session.run(None, feed)

    run.rel_error = error
    return run
