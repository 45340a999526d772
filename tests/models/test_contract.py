"""timm's model contract for every registered model, octave and plain: the head, pooling and config, features and
intermediates, pruning, activation checkpointing, parameter groups, torch.fx and TorchScript.

These mirror what timm's own ``tests/test_models.py`` asks of its models, without needing timm's repository.
"""

import re

import numpy as np
import pytest
import timm
import torch
from conftest import ALL, small_input
from timm.models import FeatureInfo, get_notrace_functions, get_notrace_modules
from timm.optim import param_groups_layer_decay
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import octzoo
from octzoo.layers import OctaveTensor, from_octave


def _x(name: str, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, 3, *small_input(name))


@pytest.mark.parametrize("name", ALL)
def test_config_head_and_global_pool(name):
    model = octzoo.create_model(name).eval()
    cfg = model.pretrained_cfg
    state = model.state_dict()
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    assert model.head_hidden_size == model.num_features > 0
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1:] == (model.num_features, *cfg["pool_size"])
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size)
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pre)
        model.reset_classifier(0, "")  # no pooling either: the unpooled map
        torch.testing.assert_close(model(x), feats)
        unpooled = octzoo.create_model(name, num_classes=0, global_pool="").eval()
        assert unpooled(x).shape == feats.shape
        both = octzoo.create_model(name, num_classes=4, global_pool="catavgmax").eval()
        assert both.head_hidden_size == 2 * both.num_features
        assert both(x).shape == (1, 4)
    assert model.no_weight_decay() == set()


@pytest.mark.parametrize("name", octzoo.list_models("oct_*") + octzoo.list_pretrained("oct_*"))
def test_timms_registered_configs_hold_what_the_models_say(name):
    """timm's registry (``get_pretrained_cfg``, what timm reads before building) agrees with the model it builds."""
    cfg = timm.get_pretrained_cfg(name)
    model_cfg = octzoo.models.model_entry(name.split(".")[0]).fn().pretrained_cfg
    for key in ("input_size", "pool_size", "mean", "std", "first_conv", "classifier", "crop_pct", "interpolation"):
        assert tuple(np.atleast_1d(getattr(cfg, key))) == tuple(np.atleast_1d(model_cfg[key])), key


def test_bad_global_pool_names_the_choices():
    with pytest.raises(ValueError, match=r"global_pool='mean' is not one of timm's pooling types \('avg'"):
        octzoo.create_model("resnet20", global_pool="mean")
    model = octzoo.create_model("resnet20")
    with pytest.raises(ValueError, match="global_pool='mean'"):
        model.reset_classifier(3, "mean")
    assert model.get_classifier().out_features == 10  # the old head is kept


@pytest.mark.parametrize("name", ALL)
def test_forward_intermediates_are_merged_maps_of_every_level(name):
    model = octzoo.create_model(name).eval()
    x = _x(name)
    stage_outputs = {}
    for i, info in enumerate(model.feature_info):
        module = model.get_submodule(info["module"])
        module.register_forward_hook(lambda m, args, out, i=i: stage_outputs.__setitem__(i, out))
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    h, w = x.shape[-2:]
    assert [m.shape[1] for m in maps] == info.channels()
    assert [m.shape[-2:] for m in maps] == [(-(-h // r), -(-w // r)) for r in info.reduction()]
    # octave stage outputs, except Oct-MobileNetV2's: its octave channels live inside the inverted residuals
    octave_stages = any(isinstance(out, OctaveTensor) for out in stage_outputs.values())
    assert octave_stages == (name.startswith("oct_") and name != "oct_mobilenet_v2")
    for i, m in enumerate(maps):  # an octave stage's output is handed out merged, never as a pair
        assert torch.equal(m, from_octave(stage_outputs[i]))
    with torch.no_grad():
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=[1, -1], intermediates_only=True)
        early, first = model.forward_intermediates(x, indices=[0], stop_early=True)
    assert [t.shape for t in last_two] == [t.shape for t in maps[-2:]]
    assert torch.equal(picked[0], maps[1]) and torch.equal(picked[1], maps[-1])
    assert torch.equal(first[0], maps[0]) and early.shape == maps[0].shape
    with pytest.raises(ValueError, match="output_fmt='NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("name", ALL)
def test_features_only_is_timms_getter_over_a_pruned_model(name):
    full = octzoo.create_model(name).eval()
    body = octzoo.create_model(name, features_only=True, out_indices=(1, 2)).eval()
    assert type(body).__name__ == "FeatureGetterNet"
    assert isinstance(body.feature_info, FeatureInfo)
    assert body.feature_info.channels() == [full.feature_info[i]["num_chs"] for i in (1, 2)]
    assert body.feature_info.module_name() == [full.feature_info[i]["module"] for i in (1, 2)]
    body.model.load_state_dict(full.state_dict(), strict=False)  # the kept layers are the full model's
    assert sum(p.numel() for p in body.parameters()) < sum(p.numel() for p in full.parameters())
    x = _x(name)
    with torch.no_grad():
        maps = full.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
        for got, want in zip(body(x), maps, strict=True):
            assert torch.equal(got, want)
    levels = len(full.feature_info)
    with pytest.raises(
        ValueError, match=rf"out_indices=\(7,\): this model has {levels} feature levels, 0 to {levels - 1}"
    ):
        octzoo.create_model(name, features_only=True, out_indices=(7,))
    assert body.pretrained_cfg["input_size"] == full.pretrained_cfg["input_size"]
    with pytest.raises(ValueError, match="feature_cls='hook'.*forward_intermediates"):
        octzoo.create_model(name, features_only=True, feature_cls="hook")


def _saved_bytes(model, x) -> tuple[torch.Tensor, int]:
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, sum(saved)


@pytest.mark.parametrize("name", ["oct_resnet20", "oct_resnet26", "oct_mobilenet_v1", "oct_mobilenet_v2"])
def test_grad_checkpointing_recomputes_blocks_with_the_same_outputs_and_gradients(name):
    model = octzoo.create_model(name, drop_rate=0.0).train()
    x = _x(name, batch=2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out, kept = _saved_bytes(model, x)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.load_state_dict(state)
    model.zero_grad()
    model.set_grad_checkpointing()
    ckpt_out, ckpt_kept = _saved_bytes(model, x)
    ckpt_out.square().sum().backward()
    torch.testing.assert_close(ckpt_out, out)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)
    assert ckpt_kept < kept / 2  # only the blocks' inputs are kept for backward
    with torch.no_grad():
        model.eval()
        ckpt_maps = model.forward_intermediates(x, intermediates_only=True)
        model.set_grad_checkpointing(False)
        plain_maps = model.forward_intermediates(x, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(ckpt_maps, plain_maps, strict=True))


BLOCK = re.compile(r"(layer\d+\.\d+|features\.\d+)\.")


@pytest.mark.parametrize("name", ALL)
def test_group_matcher_orders_stem_then_blocks(name):
    model = octzoo.create_model(name)
    groups = param_groups_layer_decay(model, weight_decay=0.0, layer_decay=0.5)
    scales = sorted({g["lr_scale"] for g in groups})
    named = {id(p): n for n, p in model.named_parameters()}
    first = [named[id(p)] for g in groups if g["lr_scale"] == scales[0] for p in g["params"]]
    last = [named[id(p)] for g in groups if g["lr_scale"] == scales[-1] for p in g["params"]]
    assert first and all(n.startswith(("conv1.", "features.0.")) for n in first)  # the stem decays most
    assert any(n.startswith(model.pretrained_cfg["classifier"]) for n in last)  # the head least
    block_names = {m.group(1) for n, _ in model.named_parameters() if (m := BLOCK.match(n))} - {"features.0"}
    assert len(scales) == 1 + len(block_names) + 1  # the stem, one per block, the head


def _stage_nodes(model) -> list[str]:
    return [info["module"] for info in model.feature_info[1:]]


@pytest.mark.parametrize("name", ALL)
def test_fx_traces_every_model(name):
    model = octzoo.create_model(name).eval()
    x = _x(name)
    with torch.no_grad():
        want = model(x)
        traced = torch.fx.symbolic_trace(model)  # the definition path, no input check
        torch.testing.assert_close(traced(x), want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
        nodes = _stage_nodes(model)
        extractor = create_feature_extractor(model, return_nodes=nodes)
        maps = extractor(x)
    assert list(maps) == nodes
    # timm's FX feature extraction keeps the blocks with an eager CPU fast path as leaves: exactly the model
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    timm_fx = create_feature_extractor(model, return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)
    with torch.inference_mode():
        assert torch.equal(next(iter(timm_fx(x).values())), model(x))


FAST_SCRIPT = ["resnet20", "oct_resnet20", "oct_resnet26", "mobilenet_v2", "oct_mobilenet_v1", "oct_mobilenet_v2"]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST_SCRIPT else pytest.mark.slow) for n in octzoo.list_models()]
)
def test_torchscript_runs_the_definition_path(name):
    model = octzoo.create_model(name).eval()
    scripted = torch.jit.script(model)
    assert isinstance(scripted, torch.jit.ScriptModule)
    assert set(scripted.state_dict()) == set(model.state_dict())
    x = _x(name)
    with torch.no_grad(), octzoo.layers.cpu_fast_path(False):
        want = model(x)
        torch.testing.assert_close(scripted(x), want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
    assert not any(isinstance(m, torch.fx.GraphModule) for m in model.modules())  # the model itself is unchanged


@pytest.mark.parametrize("name", ["oct_resnet20", "oct_mobilenet_v1"])
def test_timm_fx_graph_with_leaf_blocks_scripts(name):
    """timm's FX + TorchScript path: the FX leaves (octave blocks, shortcuts) script through their own traces."""
    model = timm.create_model(name).eval()
    tracer_kwargs = dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    extractor = create_feature_extractor(model, return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)
    scripted = torch.jit.script(extractor)
    x = _x(name)
    with torch.no_grad(), octzoo.layers.cpu_fast_path(False):
        want = model(x)
        got = next(iter(scripted(x).values()))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item())
