"""Deployment: every model traces with TorchScript, exports to ONNX (the installed torch's default opset) and runs
in onnxruntime, and compiles with ``torch.compile``, each with the eager outputs.

The fast suite runs one plain and one octave model of each family (CIFAR ResNet, ImageNet ResNet, MobileNetV1,
MobileNetV2) at odd input sizes, where the low branches get ceil-sized maps; the slow marker runs every
registered model. ``torch.compile`` uses the ``aot_eager`` backend (Dynamo's graph capture with
``fullgraph=True`` and AOTAutograd, where model code breaks) at one odd size; the slow suite adds a second batch
and size (a dynamic-shape recompile, minutes for the deep ResNets, so for the fast set only) and Inductor, whose
C++ code generation takes 30-80 s per model on a 2-core CPU, on one octave model per family.

Oct-MobileNetV2 exports its ONNX form (``MobileNetV2.onnx_form``) through ``octzoo.export.export_onnx``: it must
match the eager network at even and odd sizes, and onnxruntime must run it in the plain network's layout.
"""

from __future__ import annotations

import collections
import io
import warnings

import numpy as np
import pytest
import torch

import octzoo
from octzoo.export import export_onnx
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


def exported(name: str, path, size: tuple[int, int, int]) -> float:
    """``octzoo.export.export_onnx`` of the model (non-trivial BN statistics) at ``size``; returns its error."""
    model, _ = model_and_inputs(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, path, size)


def optimised_ops(path, tmp_path) -> collections.Counter:
    """Node counts of the graph onnxruntime runs (ORT_ENABLE_ALL, one thread), keyed "op" for the default domain
    and "domain:op" for the others (NCHWc: "nchwc:Conv", "nchwc:ReorderInput", ...)."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimised.onnx")
    options.log_severity_level = 3  # its warning that the saved graph is specific to this CPU
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return collections.Counter(f"{n.domain.split('.')[-1]}:{n.op_type}" if n.domain else n.op_type for n in graph.node)


@pytest.mark.parametrize("size", [(3, 64, 64), (3, 65, 63)])
def test_octave_mobilenet_v2_exports_its_onnx_form_with_the_eager_outputs(tmp_path, size):
    pytest.importorskip("onnxruntime")
    assert exported("oct_mobilenet_v2", tmp_path / "oct.onnx", size) < RTOL


def test_octave_mobilenet_v2_onnx_form_keeps_the_parameters_and_plain_networks_export_as_they_are():
    model, (x, _) = model_and_inputs("oct_mobilenet_v2")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    form = model.onnx_form()
    assert form is not model and form.features[2] is not model.features[2]
    assert sum(isinstance(m, octzoo.models.mobilenet.OnnxInvertedResidual) for m in form.modules()) == 12
    with torch.no_grad():
        assert relative_error(form(x), model(x)) < RTOL
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    plain, _ = model_and_inputs("mobilenet_v2")
    assert plain.onnx_form() is plain


@pytest.mark.parametrize("plain_name, name", [("mobilenet_v2", "oct_mobilenet_v2"), ("resnet26", "oct_resnet26")])
def test_octave_networks_run_in_onnxruntime_in_the_layout_of_the_plain_network(tmp_path, plain_name, name):
    """At even sizes ONNX Runtime keeps the exported octave network in its blocked NCHWc layout as it does the
    plain one: no layout changes beyond the plain network's, every convolution blocked where the plain ones are,
    and no batch norm, NCHW average pool or shape arithmetic left between the convolutions (the operator's
    export form, Oct-MobileNetV2's ONNX form, and the batch dimensions export_onnx names)."""
    for n in (plain_name, name):
        assert exported(n, tmp_path / f"{n}.onnx", (3, 64, 64)) < RTOL
    plain, octave = (optimised_ops(tmp_path / f"{n}.onnx", tmp_path) for n in (plain_name, name))
    for op in ("BatchNormalization", "AveragePool", "Transpose", "Shape", "Gather", "Slice", "Concat", "Split",
               "Reshape"):  # fmt: skip
        assert octave[op] == 0, (op, octave)

    def reorders(ops):
        return sum(count for op, count in ops.items() if op.endswith(("ReorderInput", "ReorderOutput")))

    def unblocked_convs(ops):
        return ops["Conv"] + ops["microsoft:FusedConv"]

    assert reorders(octave) <= reorders(plain), (octave, plain)
    assert unblocked_convs(octave) == 0 or unblocked_convs(plain) > 0, (octave, plain)
    assert octave["nchwc:Conv"] > plain["nchwc:Conv"] or plain["nchwc:Conv"] == 0


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
