"""Every registered model: forward, backward, gradients, head reset, tiny and odd inputs, octave placement."""

import copy
import dataclasses
import re
import types
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import ALL, small_input
from helpers import reference_octconv
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import octzoo
from octzoo.layers import OctConv2d, OctConvNormAct

CL = torch.channels_last


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = octzoo.create_model(name, num_classes=7)
    out = model(torch.randn(2, 3, *small_input(name)))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("name", ALL)
def test_tiny_inputs_down_to_one_pixel(name):
    """Inputs smaller than the network's total stride (32) are valid, not errors: every downsampling (strided
    conv, pooling, the low branch's 2x pool) rounds up, so a 1 x 1 image stays 1 x 1 down to the head."""
    model = octzoo.create_model(name, num_classes=3).eval()
    with torch.no_grad():
        for size in [(1, 1), (2, 3), (5, 4)]:
            assert model(torch.randn(1, 3, *size)).shape == (1, 3)


@pytest.mark.parametrize("name", ALL)
def test_head_reset_and_timm_interface(name):
    model = octzoo.create_model(name, num_classes=0).eval()
    x = torch.randn(2, 3, *small_input(name))
    with torch.no_grad():  # like the comparison below: inference folds the norms, which rounds differently
        feats = model(x)
    assert feats.shape == (2, model.num_features)
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    model.reset_classifier(5)
    assert model.get_classifier().out_features == 5
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(pre, feats)
        assert model(x).shape == (2, 5)


@pytest.mark.parametrize("name", [n for n in octzoo.list_models("oct_*")])
def test_octave_models_have_exactly_the_parameters_of_their_plain_twin(name):
    plain = octzoo.create_model(name.removeprefix("oct_"))
    n_plain = sum(p.numel() for p in plain.parameters())
    for alpha in (0.125, 0.5, 0.75):
        model = octzoo.create_model(name, alpha=alpha)
        assert sum(p.numel() for p in model.parameters()) == n_plain


@pytest.mark.parametrize("name", ["oct_resnet20", "oct_resnet50", "oct_mobilenet_v2"])
def test_alpha_zero_octave_model_is_the_plain_model(name):
    torch.manual_seed(0)
    plain = octzoo.create_model(name.removeprefix("oct_")).eval()
    oct0 = octzoo.create_model(name, alpha=0.0).eval()
    assert list(plain.state_dict()) == list(oct0.state_dict())
    oct0.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, *small_input(name))
    with torch.no_grad():
        assert torch.equal(plain(x), oct0(x))


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_stem_max_pool_gives_nn_max_pools_values_in_the_layout_the_next_layer_wants(keep, layout):
    from octzoo.models.resnet_blocks import StemMaxPool2d

    pool, ref = StemMaxPool2d(keep_channels_last=keep), torch.nn.MaxPool2d(3, 2, 1)
    x = torch.randn(2, 8, 13, 12)
    x[0, 0, 1, 1] = float("nan")  # max-pool propagates NaN; both layouts must agree on it
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = pool(x)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=0, equal_nan=True)
    cl = keep or layout == "channels_last"
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    xg = x.clone().requires_grad_()  # autograd: nn.MaxPool2d's own path, same gradient
    pool(xg).nan_to_num().sum().backward()
    xr = x.clone().requires_grad_()
    ref(xr).nan_to_num().sum().backward()
    assert torch.equal(xg.grad, xr.grad)


def test_imagenet_resnets_keep_the_stem_output_channels_last_only_for_an_octave_stage():
    assert octzoo.create_model("oct_resnet50", alpha=0.25).maxpool.keep_channels_last
    assert not octzoo.create_model("resnet50").maxpool.keep_channels_last
    assert isinstance(octzoo.create_model("resnet20").maxpool, torch.nn.Identity)


@pytest.mark.parametrize("train", [False, True])
def test_oct_mobilenet_v2_blocks_hand_on_channels_last_maps_with_unchanged_values(train):
    """Each octave block's projection keeps its plain output channels_last (the layout of the residual sum and
    of the next octave expansion); forward and backward agree with the weights' layout run in float64."""
    torch.manual_seed(3)
    fast = octzoo.create_model("oct_mobilenet_v2", alpha=0.375, num_classes=10, drop_rate=0.0).train(train)
    ref = copy.deepcopy(fast).double()
    for m in ref.modules():
        if isinstance(m, OctConv2d):
            m.plain_output_format = None  # the default: a plain output in the weights' (NCHW) layout
    layouts = []
    for model in (fast, ref):
        model.features[2].register_forward_hook(lambda m, i, o: layouts.append(o.is_contiguous(memory_format=CL)))
    x = torch.randn(2, 3, 48, 40)
    with torch.set_grad_enabled(train):
        y, want = fast(x), ref(x.double())
    assert layouts == [True, False]
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-4 * want.abs().max().item())
    if train:  # batch statistics over two images: float32 rounding is amplified, in either layout
        y.square().sum().backward()
        want.square().sum().backward()
        scale = max(q.grad.abs().max().item() for q in ref.parameters())
        for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad.double(), q.grad, rtol=0, atol=1e-3 * scale, msg=name)
    plain = octzoo.create_model("mobilenet_v2")
    assert all(m.plain_output_format is None for m in plain.modules() if isinstance(m, OctConv2d))


def _conv_alphas(model):
    return [(m.alpha_in, m.alpha_out) for m in model.modules() if isinstance(m, OctConv2d)]


def test_oct_resnet50_placement_follows_the_official_models():
    m = octzoo.create_model("oct_resnet50", alpha=0.5)
    assert (m.conv1.alpha_in, m.conv1.alpha_out) == (0, 0)
    b = m.layer1[0]
    assert [(c.alpha_in, c.alpha_out) for c in (b.conv1, b.conv2, b.conv3, b.downsample)] == [
        (0, 0.5),
        (0.5, 0.5),
        (0.5, 0.5),
        (0, 0.5),
    ]
    for layer in (m.layer1[1:], m.layer2, m.layer3):
        assert all(a == (0.5, 0.5) for a in _conv_alphas(layer))
    b = m.layer4[0]
    assert [(c.alpha_in, c.alpha_out) for c in (b.conv1, b.conv2, b.conv3, b.downsample)] == [
        (0.5, 0),
        (0, 0),
        (0, 0),
        (0.5, 0),
    ]
    assert all(a == (0, 0) for a in _conv_alphas(m.layer4[1:]))


def test_oct_resnet20_is_octave_from_the_first_block_to_the_last_conv():
    m = octzoo.create_model("oct_resnet20", alpha=0.25)
    alphas = _conv_alphas(m)
    assert alphas[0] == (0, 0)  # stem
    assert alphas[1] == (0, 0.25)  # first block, conv1
    assert alphas[-1] == (0.25, 0)  # last block, conv2
    assert all(a == (0.25, 0.25) for a in alphas[2:-1])


def test_oct_mobilenet_placement():
    v1 = octzoo.create_model("oct_mobilenet_v1", alpha=0.5)
    blocks = v1.features[1:]
    assert [b.dw.alpha_in for b in blocks] == [0] + [0.5] * 10 + [0] * 2
    assert [b.pw.alpha_out for b in blocks] == [0.5] * 10 + [0] * 3
    v2 = octzoo.create_model("oct_mobilenet_v2", alpha=0.375)
    middle = [b.conv[-2].alpha_out for b in v2.features[1:-1]]  # each block's depthwise conv
    assert middle == [0] + [0.375] * 12 + [0] * 4  # torchvision's first block has no expansion conv
    assert all(isinstance(b.conv[-1], OctConvNormAct) and b.conv[-1].alpha_out == 0 for b in v2.features[1:-1])


def test_blocks_have_per_branch_norm_statistics():
    m = octzoo.create_model("oct_resnet20", alpha=0.5)
    block = m.layer2[1].conv1
    assert block.norm_h.num_features == 16 and block.norm_l.num_features == 16
    assert block.norm_h is not block.norm_l


def test_default_alphas_and_num_classes():
    assert octzoo.create_model("oct_resnet50").alpha == 0.25
    assert octzoo.create_model("oct_resnet152").alpha == 0.125
    assert octzoo.create_model("oct_resnet20").alpha == 0.25
    assert octzoo.create_model("oct_mobilenet_v1").alpha == 0.5
    assert octzoo.create_model("oct_mobilenet_v2").alpha == 0.375
    assert octzoo.create_model("resnet50").alpha == 0
    assert octzoo.create_model("resnet20").num_classes == 10
    assert octzoo.create_model("resnet18").num_classes == 1000


def test_in_chans_changes_the_stem():
    m = octzoo.create_model("oct_resnet20", in_chans=1)
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_list_models_patterns():
    names = octzoo.list_models()
    plain = ["resnet18", "resnet26", "resnet34", "resnet50", "resnet101", "resnet152"]
    plain += ["resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "mobilenet_v1", "mobilenet_v2"]
    assert sorted(names) == sorted(plain + ["oct_" + n for n in plain])
    assert octzoo.list_models("oct_resnet2*") == ["oct_resnet20", "oct_resnet26"]


BAD_ARGUMENTS = [
    (dict(name="oct_resnet50", alpha=1.0), r"alpha=1\.0 .*\[0, 1\)"),
    (dict(name="oct_resnet50", alpha=-0.1), r"\[0, 1\)"),
    (dict(name="oct_resnet20", alpha="0.5"), r"alpha='0\.5' .*\[0, 1\)"),
    (dict(name="oct_mobilenet_v2", alpha=float("nan")), r"alpha=nan .*\[0, 1\)"),
    (dict(name="resnet50", alpha=0.5), "plain model.*oct_resnet50"),
    (dict(name="resnet50", num_classes=-1), "num_classes=-1"),
    (dict(name="resnet20", num_classes=2.5), r"num_classes=2\.5 must be an integer"),
    (dict(name="resnet20", num_classes=True), "num_classes=True must be an integer"),
    (dict(name="resnet50", width_mult=True), "width_mult=True must be a number > 0"),
    (dict(name="mobilenet_v1", width_mult=0), "width_mult=0 must be a number > 0"),
    (dict(name="oct_mobilenet_v2", width_mult=-1.0), r"width_mult=-1\.0 must be a number > 0"),
    (dict(name="resnet20", in_chans=0), "in_chans=0 must be an integer >= 1"),
    (dict(name="mobilenet_v2", drop_rate=1.0), r"drop_rate=1\.0 must be a dropout probability in \[0, 1\)"),
    # a low branch that rounds away in the 16-channel stage but not in later ones: option-A shortcuts cannot
    # create it, so the model says which alpha works instead of failing in the first stage transition
    (dict(name="oct_resnet20", alpha=0.05), r"CIFAR ResNet-20: alpha=0\.05 .*16-channel stage .*alpha >= 0\.0625"),
    (dict(name="oct_resnet56", alpha=0.03), r"CIFAR ResNet-56: alpha=0\.03 .*64-channel stage has some"),
    (dict(name="oct_resnet5"), "did you mean .*'oct_resnet50'"),
    (dict(name="mobilenetv2"), "did you mean 'mobilenet_v2'"),
    (dict(name="oct_resnet56", pretrained=True), "no published weights"),
]


@pytest.mark.parametrize("kwargs, match", BAD_ARGUMENTS)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        octzoo.create_model(**kwargs)


@pytest.mark.parametrize("name, alpha", [("oct_resnet20", 1.0), ("oct_mobilenet_v2", True), ("resnet20", -0.5)])
def test_a_bad_alpha_is_refused_once_by_create_model_before_any_layer_is_built(monkeypatch, name, alpha):
    """create_model validates alpha itself, with check_alpha's message, and never calls the builder."""
    from octzoo.layers import check_alpha
    from octzoo.models import _registry

    entry = _registry.model_entry(name)
    builder = mock.Mock(wraps=entry.fn)
    monkeypatch.setitem(_registry._REGISTRY, name, dataclasses.replace(entry, fn=builder))
    checks = mock.Mock(wraps=check_alpha)
    monkeypatch.setattr(_registry, "check_alpha", checks)
    message = (
        f"alpha={alpha!r} is not a valid low-frequency share: use a number in [0, 1) "
        "(0 = plain convolution, e.g. 0.25 or 0.5 for octave)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        octzoo.create_model(name, alpha=alpha)
    checks.assert_called_once_with(alpha)
    builder.assert_not_called()
    octzoo.create_model(name, alpha=0.5 if entry.is_octave else 0.0, num_classes=3)  # a good one builds
    assert checks.call_count == 2 and builder.call_count == 1


@pytest.mark.parametrize("alpha", [0.01, 0.0625, 0.999])
def test_extreme_alphas_that_keep_the_branches_consistent_build_and_run(alpha):
    # 0.01 rounds every low branch away (a plain network), 0.0625 is the smallest alpha with one low channel
    # in every CIFAR stage, 0.999 leaves one high channel per layer
    model = octzoo.create_model("oct_resnet20", alpha=alpha, num_classes=3).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 7, 5))).all()


# Every kind of wrong input is refused at the model's door, naming the model, before any convolution runs.
BAD_INPUTS = [
    ("list", lambda: [[0.0] * 8] * 8, TypeError, r"takes a float Tensor of shape \(N, 3, H, W\), got list$"),
    ("ndarray", lambda: np.zeros((1, 3, 8, 8), np.float32), TypeError, r"got ndarray; convert with torch\.as_tensor"),
    ("pair", lambda: (torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 4, 4)), TypeError, "got tuple"),
    (
        "uint8",
        lambda: torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
        TypeError,
        r"dtype torch\.uint8; .*x\.float\(\) / 255",
    ),
    ("int64", lambda: torch.zeros(1, 3, 8, 8, dtype=torch.long), TypeError, r"dtype torch\.int64"),
    ("unbatched", lambda: torch.zeros(3, 8, 8), ValueError, r"3-D Tensor of shape \(3, 8, 8\); .*unsqueeze\(0\)"),
    ("2-D", lambda: torch.zeros(8, 8), ValueError, r"2-D Tensor of shape \(8, 8\)$"),
    ("5-D", lambda: torch.zeros(1, 1, 3, 8, 8), ValueError, r"5-D Tensor of shape \(1, 1, 3, 8, 8\)"),
    ("grey", lambda: torch.zeros(1, 1, 8, 8), ValueError, r"got 1 channels .*in_chans=1"),
    ("rgba", lambda: torch.zeros(2, 4, 8, 8), ValueError, r"got 4 channels \(shape \(2, 4, 8, 8\)\)"),
    ("NHWC", lambda: torch.zeros(1, 8, 8, 3), ValueError, r"got 8 channels .*x\.permute\(0, 3, 1, 2\)"),
    ("zero height", lambda: torch.zeros(1, 3, 0, 8), ValueError, r"empty image shape \(1, 3, 0, 8\)"),
    ("zero width", lambda: torch.zeros(1, 3, 8, 0), ValueError, r"empty image shape \(1, 3, 8, 0\)"),
]
FAMILY_PAIRS = ["resnet20", "oct_resnet20", "oct_resnet18", "mobilenet_v1", "oct_mobilenet_v1", "oct_mobilenet_v2"]


@pytest.mark.parametrize("name", FAMILY_PAIRS)
@pytest.mark.parametrize("what, make, error, match", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_name_the_model_and_the_fix(name, what, make, error, match):
    model = octzoo.create_model(name).eval()
    with pytest.raises(error, match=match) as info:
        model(make())
    assert str(info.value).startswith(f"{name} takes a float Tensor of shape (N, 3, H, W)")
    assert info.traceback[-1].name == "check_image_batch"  # refused before any layer ran


def test_bad_inputs_to_timm_entry_points_and_feature_extractors_name_the_model():
    model = octzoo.create_model("oct_resnet20", in_chans=1)
    with pytest.raises(ValueError, match=r"oct_resnet20 takes a float Tensor of shape \(N, 1, H, W\), got 3 channels"):
        model.forward_features(torch.zeros(1, 3, 8, 8))
    features = octzoo.create_model("oct_mobilenet_v2", features_only=True)
    with pytest.raises(ValueError, match=r"oct_mobilenet_v2 takes .* got 1 channels"):
        features(torch.zeros(1, 1, 8, 8))
    direct = octzoo.models.MobileNetV1(alpha=0.5)  # built without the registry: named by its class
    with pytest.raises(TypeError, match=r"^MobileNetV1 takes a float Tensor"):
        direct("image.png")


@pytest.mark.parametrize("name", ["oct_resnet50", "oct_resnet20", "oct_mobilenet_v1", "oct_mobilenet_v2"])
def test_features_only_returns_one_plain_map_per_stage(name):
    model = octzoo.create_model(name, features_only=True).eval()
    h, w = small_input(name)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    info = model.feature_info
    assert len(feats) == len(info)
    for f, channels, reduction in zip(feats, info.channels(), info.reduction(), strict=True):
        assert isinstance(f, torch.Tensor)
        assert f.shape[1] == channels
        assert f.shape[-2:] == (-(-h // reduction), -(-w // reduction))
    sub = octzoo.create_model(name, features_only=True, out_indices=(1, 2))
    assert sub.feature_info.reduction() == info.reduction()[1:3]


def _reference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` whose octave layers compute the paper's Eq. 1-2 with the independent reference
    of test_octconv (its own pooling and upsampling, each path's conv from the spec) instead of their forward."""
    model = copy.deepcopy(model).double()

    def forward(layer, x):
        return reference_octconv(
            layer,
            x,
            c_in=layer.in_channels,
            c_out=layer.out_channels,
            alpha_in=layer.alpha_in,
            alpha_out=layer.alpha_out,
            groups=layer.groups,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
        )

    for m in model.modules():
        if isinstance(m, OctConv2d):
            m.forward = types.MethodType(forward, m)
    return model


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["oct_resnet20", "oct_resnet26", "oct_mobilenet_v1", "oct_mobilenet_v2"])
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    alpha=st.one_of(st.just(0.0), st.floats(0.0, 0.9)),
    width=st.sampled_from([0.25, 0.5]),
    batch=st.integers(1, 3),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    num_classes=st.integers(1, 12),
)
def test_models_at_random_shapes_and_alphas_agree_with_the_reference(name, alpha, width, batch, h, w, num_classes):
    """Random model, alpha, batch and (odd or even) input size: the logits have the right shape, are finite,
    equal the float64 reference network row by row, and at alpha 0 equal the plain twin's with the same weights."""
    kwargs = dict(alpha=alpha, num_classes=num_classes)
    if "mobilenet" in name:
        kwargs["width_mult"] = width  # narrow, to keep the examples fast
    lows = [int(alpha * c) for c in (16, 32, 64)]
    if name == "oct_resnet20" and 0 in lows and any(lows):  # see BAD_ARGUMENTS: refused, with the alpha that works
        event("refused: first CIFAR stage without a low branch")
        with pytest.raises(ValueError, match=r"CIFAR ResNet-20: alpha=.* use alpha >= 0\.0625"):
            octzoo.create_model(name, **kwargs)
        return
    event(f"alpha {'0' if alpha == 0 else '> 0'}, {'odd' if h % 2 or w % 2 else 'even'} size")
    torch.manual_seed(0)
    model = octzoo.create_model(name, **kwargs).eval()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # non-trivial statistics
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
        x = torch.randn(batch, 3, h, w)
        out = model(x)
        assert out.shape == (batch, num_classes) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        want = _reference_copy(model)(x.double())
        torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
        fast64 = copy.deepcopy(model).double()(x.double())  # float64 too: agreement down to rounding
        torch.testing.assert_close(fast64, want, rtol=1e-9, atol=1e-9)
        if alpha == 0:
            plain = octzoo.create_model(name.removeprefix("oct_"), **{k: v for k, v in kwargs.items() if k != "alpha"})
            plain.load_state_dict(model.state_dict())
            assert torch.equal(plain.eval()(x), out)


def test_resnet_width_mult_scales_every_stage_and_keeps_octave_working():
    thin = octzoo.create_model("resnet20", width_mult=0.84)
    assert thin.width_mult == 0.84
    assert [thin.conv1.conv.out_channels] + [
        thin.get_submodule(f"layer{i}")[0].conv1.conv.out_channels for i in (1, 2, 3)
    ] == [13, 13, 27, 54]
    assert thin.num_features == 54 and thin(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    octave = octzoo.create_model("oct_resnet20", alpha=0.5, width_mult=0.5)  # stages of 8/16/32 channels
    assert octave.layer1[0].conv1.conv.out_split == (4, 4)
    assert octave(torch.randn(1, 3, 17, 15)).shape == (1, 10)
    wide = octzoo.create_model("resnet50", width_mult=0.25, num_classes=3)
    assert wide.num_features == 512 and wide(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"width_mult=0 must be a number > 0"):
        octzoo.create_model("resnet20", width_mult=0)
