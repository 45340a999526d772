"""Deployment: every model traces with TorchScript, exports to ONNX (the installed torch's default opset) and runs
in onnxruntime, and compiles with ``torch.compile``, each with the eager outputs.

The fast suite runs one plain and one octave model of each family (CIFAR ResNet, ImageNet ResNet, MobileNetV1,
MobileNetV2) at odd input sizes, where the low branches get ceil-sized maps; the slow marker runs every
registered model. ``torch.compile`` uses the ``aot_eager`` backend (Dynamo's graph capture with
``fullgraph=True`` and AOTAutograd, where model code breaks) at one odd size; the slow suite adds a second batch
and size (a dynamic-shape recompile, minutes for the deep ResNets, so for the fast set only) and Inductor, whose
C++ code generation takes 30-80 s per model on a 2-core CPU, on one octave model per family.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

import octzoo
from octzoo.models import model_entry

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {  # family -> (plain, octave)
    "cifar_resnet": ("resnet20", "oct_resnet20"),
    "imagenet_resnet": ("resnet26", "oct_resnet26"),
    "mobilenet_v1": ("mobilenet_v1", "oct_mobilenet_v1"),
    "mobilenet_v2": ("mobilenet_v2", "oct_mobilenet_v2"),
}
FAST = [name for pair in FAMILIES.values() for name in pair]
ALL = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in octzoo.list_models()]
RTOL = 1e-4  # onnxruntime and the compiled graphs against eager float32, relative to the largest logit


def sizes(name: str) -> list[tuple[int, int]]:
    """An odd and an even input size (both odd sides, one odd side), small for speed."""
    return [(33, 31), (32, 28)] if model_entry(name).pretrained_cfg["input_size"][-1] == 32 else [(65, 63), (64, 57)]


def model_and_inputs(name: str) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = octzoo.create_model(name).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that folding or reordering them would show
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model, [torch.randn(batch, 3, *hw) for batch, hw in zip((1, 3), sizes(name), strict=True)]


def relative_error(got: torch.Tensor | np.ndarray, want: torch.Tensor) -> float:
    got = torch.as_tensor(got)
    return float((got - want).abs().max() / want.abs().max())


def check_torchscript(name: str) -> float:
    model, (x, other) = model_and_inputs(name)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: the input checks are constants of the traced graph
        traced = torch.jit.trace(model, x)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
        bigger = torch.cat([x, x.flip(0), -x])  # another batch size at the traced spatial size
        errors = [relative_error(loaded(v), model(v)) for v in (x, bigger)]
    assert other.shape[0] != x.shape[0]
    assert max(errors) < 1e-5, errors
    return max(errors)


def check_onnx(name: str) -> float:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model, (x, _) = model_and_inputs(name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    from torch.onnx._constants import ONNX_DEFAULT_OPSET

    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {ONNX_DEFAULT_OPSET}
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    batch = torch.cat([x, torch.randn_like(x), -x])  # the batch axis is dynamic
    errors = []
    for v in (x, batch):
        (out,) = session.run(None, {"image": v.numpy()})
        with torch.no_grad():
            errors.append(relative_error(out, model(v)))
    assert max(errors) < RTOL, errors
    return max(errors)


def check_compile(name: str, backend: str, resize: bool) -> float:
    """``resize``: also run a second batch and input size, which makes Dynamo recompile with dynamic shapes
    (the expensive part: about 10 s more per octave model here, hence in the slow suite only)."""
    model, inputs = model_and_inputs(name)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    errors = []
    with torch.no_grad():
        for x in inputs if resize else inputs[:1]:
            errors.append(relative_error(compiled(x), model(x)))
    assert max(errors) < RTOL, errors
    return max(errors)


@pytest.mark.parametrize("name", ALL)
def test_torchscript_trace_saves_loads_and_matches_eager(name):
    check_torchscript(name)


@pytest.mark.parametrize("name", ALL)
def test_onnx_export_runs_in_onnxruntime_with_the_same_outputs(name):
    check_onnx(name)


@pytest.mark.parametrize("name", ALL)
def test_torch_compile_fullgraph_matches_eager(name):
    check_compile(name, "aot_eager", resize=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST)
def test_torch_compile_fullgraph_recompiles_for_another_batch_and_size(name):
    check_compile(name, "aot_eager", resize=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [octave for _, octave in FAMILIES.values()])
def test_torch_compile_with_inductor_matches_eager(name):
    check_compile(name, "inductor", resize=False)
