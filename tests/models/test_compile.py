"""The operator's two paths under torch.compile, and the per-step operator count of the definition path.

- Compiled with ``fullgraph=True`` (a graph break is an error) and ``aot_eager`` (dynamo and AOTAutograd, no code
  generation), one plain and one octave model per family give eager's outputs and gradients in a training step
  (fast; eval mode, every model: tests/test_export.py); inductor trains Oct-ResNet-20 in
  ``tests/training/test_module.py`` (a compiled fit against the eager one).
- ``torch._dynamo.explain`` finds one graph and no break for the rest of the registry in training (slow: up to
  20 s for each deep model on two cores).
- The definition path's training step runs ATen operators only (no custom autograd Functions, weight copies or
  concatenations), fewer than the CPU fast path, and within a held ceiling of the plain network's count.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import octzoo
from octzoo.bench.ops import train_op_counts
from octzoo.layers import cpu_fast_path
from octzoo.models import list_models, model_entry
from octzoo.training import ImageClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

# one plain and one octave model per family: ImageNet ResNets (basic and bottleneck blocks), CIFAR ResNets,
# MobileNetV1, MobileNetV2; the rest of the registry repeats their blocks at other depths
FAMILY_PAIRS = [("resnet18", "oct_resnet26"), ("resnet20", "oct_resnet20")] + [
    (name, f"oct_{name}") for name in ("mobilenet_v1", "mobilenet_v2")
]
FAST = [name for pair in FAMILY_PAIRS for name in pair]


def _example(name: str, batch: int = 2, dtype=torch.float32) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = octzoo.create_model(name, drop_rate=0.0).to(dtype)
    side = 32 if model.pretrained_cfg["input_size"][-1] == 32 else 64
    return model, torch.randn(batch, 3, side, side, dtype=dtype)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(list_models()) - set(FAST)))
def test_dynamo_traces_every_registered_model_in_one_graph(name):
    """The models the fullgraph tests below do not compile, in training (those cover train, eval and both
    settings of the switch, which tracing never reads past: a traced call takes the definition path either way;
    the deeper models repeat their blocks)."""
    model, x = _example(name)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(x)
    reasons = [str(b.reason) for b in explained.break_reasons]
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), f"{name}: {reasons}"


def _step(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and parameter gradients of one cross-entropy step on fixed targets."""
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, torch.arange(len(x)) % logits.shape[-1]).backward()
    return logits.detach(), [p.grad for p in model.parameters()]


def _check_compiled(name: str, backend: str, dtype: torch.dtype, batch: int, tol: dict, fast: bool = True) -> None:
    """A training step compiled with ``fullgraph=True`` (any graph break is an error) against eager on the same
    path: outputs, gradients and the running statistics. Eval mode: tests/test_export.py."""
    model, x = _example(name, batch, dtype)
    model.train()
    compiled_model = copy.deepcopy(model)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, backend=backend, fullgraph=True)
    with cpu_fast_path(fast):
        (want, want_grads), (got, got_grads) = _step(model, x), _step(compiled, x)
    torch.testing.assert_close(got, want, **tol)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, **tol)
    for b, w in zip(compiled_model.buffers(), model.buffers(), strict=True):  # running statistics, step counts
        torch.testing.assert_close(b, w, **tol)


@pytest.mark.parametrize("name", FAST)
def test_aot_eager_compiles_a_training_step_in_one_graph_matching_eager(name):
    """Dynamo and AOTAutograd without code generation: eager's outputs, gradients and running statistics."""
    _check_compiled(name, "aot_eager", torch.float64, 2, dict(atol=1e-10, rtol=1e-10))


def test_aot_eager_on_the_definition_path_matches_eager_on_it():
    _check_compiled("oct_resnet20", "aot_eager", torch.float64, 2, dict(atol=1e-10, rtol=1e-10), fast=False)


# -- operators per training step ----------------------------------------------------------------------------

# The plain network runs conv, norm and ReLU once per layer; octave layers run up to four convolutions and a
# norm and activation per branch, plus a pool, an upsample-add and a path sum, and autograd adds the gradients
# of maps read by two paths. Measured at alpha .5: 1189 against 408 (2.91x). The ceiling holds that count.
OPS_RATIO_CEILING = 2.92


def test_definition_path_runs_aten_operators_only_and_fewer_than_the_fast_path():
    plain, x = _example("resnet50")
    octave = octzoo.create_model("oct_resnet50", alpha=0.5)
    with cpu_fast_path(False):
        counts = train_op_counts(octave, x)
        plain_counts = train_op_counts(plain, x)
    fast_counts = train_op_counts(octave, x)
    copies = {"clone", "copy_", "_to_copy", "cat", "contiguous"}
    assert not copies & set(counts), {k: counts[k] for k in copies & set(counts)}
    assert copies & set(fast_counts)  # the fast path's layout copies and weight concatenations, for contrast
    assert sum(counts.values()) < sum(fast_counts.values())
    # one convolution per existing path, forward and backward
    paths = sum(conv is not None for m in octave.modules() if isinstance(m, octzoo.OctConv2d)
                for conv in (m.h2h, m.h2l, m.l2h, m.l2l))  # fmt: skip
    assert counts["convolution"] == counts["convolution_backward"] == paths  # the plain layers' one path included
    assert sum(counts.values()) <= OPS_RATIO_CEILING * sum(plain_counts.values())


def test_parameter_layout_and_no_decay_selection_unchanged():
    """State-dict names, shapes and order, and the parameters ``no_decay_norm_bias`` exempts, as recorded for
    every registered model before the operator got its two paths (resnet14 and oct_resnet14 when they were added):
    checkpoints written then still resume."""
    recorded = json.loads((Path(__file__).parent / "state_dict_layouts.json").read_text())
    assert sorted(recorded) == list_models()
    for name, want in recorded.items():
        classes = model_entry(name).pretrained_cfg["num_classes"]
        module = ImageClassifier(model_name=name, no_decay_norm_bias=True, num_classes=classes)
        state = module.model.state_dict()
        layout = "\n".join(f"{k} {tuple(v.shape)}" for k, v in state.items())
        names = {id(p): n for n, p in module.named_parameters()}
        no_decay = "\n".join(names[id(p)] for p in module._param_groups()[1]["params"])
        got = {
            "state_dict": hashlib.sha256(layout.encode()).hexdigest()[:16],
            "no_decay": hashlib.sha256(no_decay.encode()).hexdigest()[:16],
            "entries": len(state),
        }
        assert got == want, name
