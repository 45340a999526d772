"""Deployment: the octave models trace with TorchScript and export to ONNX with the same outputs."""

import io
import warnings

import numpy as np
import pytest
import torch

import octzoo

# one octave model per family, at an odd input size (the low branches get ceil-sized maps)
FAMILIES = ["oct_resnet20", "oct_resnet26", "oct_mobilenet_v1", "oct_mobilenet_v2"]


def _input(name: str, batch: int = 1) -> torch.Tensor:
    side = (33, 31) if octzoo.models.model_entry(name).pretrained_cfg["input_size"][-1] == 32 else (65, 63)
    return torch.randn(batch, 3, *side)


@pytest.mark.parametrize("name", FAMILIES)
def test_torchscript_trace_matches_eager_on_other_batches(name):
    torch.manual_seed(0)
    model = octzoo.create_model(name).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, _input(name))
        x = _input(name, batch=3)
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_export_runs_in_onnxruntime_with_the_same_outputs(name):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = octzoo.create_model(name).eval()
    x = _input(name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
