"""Parameter-free octave conversions and the conv-norm-act block (octzoo.layers.blocks).

Resampling is checked against an independent reference (explicit 2x2 means over valid pixels, nearest
upsampling by index arithmetic), never against octzoo's own pool2x / upsample_to.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from helpers import ref_pool, ref_upsample
from torch import Tensor, nn

from octzoo.layers import (
    OctaveTensor,
    OctConv2d,
    OctConvNormAct,
    convert_alpha,
    from_octave,
    oct_add,
    oct_apply,
    set_norm_folding,
    to_octave,
)

SIZES = [(1, 1), (2, 3), (5, 7), (8, 8), (9, 6)]


pytestmark = pytest.mark.usefixtures("one_thread", "operator_path")


def low(h: int) -> int:
    return (h + 1) // 2


def test_reference_helpers():
    x = torch.arange(6, dtype=torch.float64).reshape(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    torch.testing.assert_close(ref_pool(x), torch.tensor([[[[2.0, 3.5]]]], dtype=torch.float64), atol=0, rtol=0)
    y = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    torch.testing.assert_close(
        ref_upsample(y, (2, 3)), torch.tensor([[[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]]], dtype=torch.float64)
    )


# ----------------------------------------------------------------------------------------------------------
# to_octave / from_octave / convert_alpha
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels, alpha", [(8, 0.25), (8, 0.5), (8, 0.75), (16, 0.125), (5, 0.5)])
def test_to_octave(size, channels, alpha):
    torch.manual_seed(0)
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    c_l = int(alpha * channels)
    c_h = channels - c_l
    y = to_octave(x, alpha)
    assert isinstance(y, OctaveTensor)
    assert y.high.shape == (2, c_h, *size)
    assert y.low.shape == (2, c_l, low(size[0]), low(size[1]))
    torch.testing.assert_close(y.high, x[:, :c_h], atol=0, rtol=0)
    torch.testing.assert_close(y.low, ref_pool(x[:, c_h:]), atol=1e-12, rtol=0)


def test_to_octave_alpha_zero_is_identity():
    x = torch.randn(2, 8, 5, 5)
    assert to_octave(x, 0) is x
    assert to_octave(x, 0.0) is x


@pytest.mark.parametrize("alpha", [1.0, -0.5, 2])
def test_to_octave_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        to_octave(torch.randn(1, 8, 4, 4), alpha)


@pytest.mark.parametrize("size", SIZES)
def test_from_octave(size):
    torch.manual_seed(1)
    high = torch.randn(2, 5, *size, dtype=torch.float64)
    lo = torch.randn(2, 3, low(size[0]), low(size[1]), dtype=torch.float64)
    y = from_octave(OctaveTensor(high, lo))
    assert type(y) is Tensor
    assert y.shape == (2, 8, *size)
    torch.testing.assert_close(y[:, :5], high, atol=0, rtol=0)
    torch.testing.assert_close(y[:, 5:], ref_upsample(lo, size), atol=0, rtol=0)


def test_from_octave_tensor_passthrough():
    x = torch.randn(2, 8, 5, 5)
    assert from_octave(x) is x


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels, alpha", [(8, 0.25), (8, 0.5), (16, 0.125), (7, 0.5)])
def test_round_trip(size, channels, alpha):
    """from_octave(to_octave(x)): high channels kept exactly, low channels = upsampled pool."""
    torch.manual_seed(2)
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    c_h = channels - int(alpha * channels)
    y = from_octave(to_octave(x, alpha))
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :c_h], x[:, :c_h], atol=0, rtol=0)
    torch.testing.assert_close(y[:, c_h:], ref_upsample(ref_pool(x[:, c_h:]), size), atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_to_octave_of_from_octave_is_identity(size):
    """The other direction is exact: pooling a nearest-upsampled (cropped) map gives the map back."""
    torch.manual_seed(3)
    x = OctaveTensor(
        torch.randn(1, 4, *size, dtype=torch.float64),
        torch.randn(1, 4, low(size[0]), low(size[1]), dtype=torch.float64),
    )
    y = to_octave(from_octave(x), 0.5)
    torch.testing.assert_close(y.high, x.high, atol=0, rtol=0)
    torch.testing.assert_close(y.low, x.low, atol=1e-12, rtol=0)


@pytest.mark.parametrize("size", [(5, 7), (8, 8)])
def test_convert_alpha(size):
    torch.manual_seed(4)
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    # 0 -> alpha: to_octave
    y = convert_alpha(x, 0.25)
    assert isinstance(y, OctaveTensor)
    torch.testing.assert_close(y.high, x[:, :6], atol=0, rtol=0)
    torch.testing.assert_close(y.low, ref_pool(x[:, 6:]), atol=1e-12, rtol=0)
    # 0 -> 0: unchanged
    assert convert_alpha(x, 0) is x
    # alpha -> 0: from_octave
    z = convert_alpha(y, 0)
    assert type(z) is Tensor
    torch.testing.assert_close(z[:, :6], x[:, :6], atol=0, rtol=0)
    torch.testing.assert_close(z[:, 6:], ref_upsample(ref_pool(x[:, 6:]), size), atol=1e-12, rtol=0)
    # alpha -> other alpha: through a plain map
    w = convert_alpha(y, 0.5)
    assert w.high.shape == (2, 4, *size) and w.low.shape == (2, 4, low(size[0]), low(size[1]))
    merged = torch.cat([y.high, ref_upsample(y.low, size)], dim=1)
    torch.testing.assert_close(w.high, merged[:, :4], atol=0, rtol=0)
    torch.testing.assert_close(w.low, ref_pool(merged[:, 4:]), atol=1e-12, rtol=0)


def test_oct_add():
    torch.manual_seed(5)
    a, b = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(oct_add(a, b), a + b, atol=0, rtol=0)
    x = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    y = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    s = oct_add(x, y)
    assert isinstance(s, OctaveTensor)
    torch.testing.assert_close(s.high, x.high + y.high, atol=0, rtol=0)
    torch.testing.assert_close(s.low, x.low + y.low, atol=0, rtol=0)


@pytest.mark.parametrize("fn", ["from_octave", "convert_alpha", "oct_add"])
def test_helpers_accept_plain_tuple(fn):
    x = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    pair = (x.high, x.low)
    if fn == "from_octave":
        torch.testing.assert_close(from_octave(pair), from_octave(x), atol=0, rtol=0)
    elif fn == "convert_alpha":
        torch.testing.assert_close(convert_alpha(pair, 0), convert_alpha(x, 0), atol=0, rtol=0)
    else:
        s = oct_add(x, pair)
        torch.testing.assert_close(s.low, 2 * x.low, atol=0, rtol=0)


def test_oct_add_mixed_kinds_fails():
    x = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    t = torch.randn(2, 6, 5, 5)
    with pytest.raises((TypeError, AttributeError, ValueError)):
        oct_add(t, x)
    with pytest.raises((TypeError, AttributeError, ValueError)):
        oct_add(x, t)


def test_oct_add_rejects_mismatched_branches():
    x = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    y = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 1, 1))
    with pytest.raises((ValueError, RuntimeError)):
        oct_add(x, y)


def test_oct_apply():
    x = OctaveTensor(torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3))
    y = oct_apply(torch.relu, x)
    assert isinstance(y, OctaveTensor)
    torch.testing.assert_close(y.high, x.high.clamp_min(0), atol=0, rtol=0)
    torch.testing.assert_close(y.low, x.low.clamp_min(0), atol=0, rtol=0)
    t = torch.randn(3, 3)
    torch.testing.assert_close(oct_apply(torch.tanh, t), torch.tanh(t), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# OctConvNormAct
# ----------------------------------------------------------------------------------------------------------


def make_input(n, c, alpha, h, w):
    c_l = int(alpha * c)
    if c_l == 0:
        return torch.randn(n, c, h, w)
    return OctaveTensor(torch.randn(n, c - c_l, h, w), torch.randn(n, c_l, low(h), low(w)))


@pytest.mark.parametrize(
    "c_in, c_out, alpha_in, alpha_out",
    [(8, 16, 0, 0.5), (16, 16, 0.5, 0.5), (16, 8, 0.25, 0), (8, 8, 0, 0), (16, 16, 0.125, 0.75)],
)
def test_norm_features_match_split(c_in, c_out, alpha_in, alpha_out):
    block = OctConvNormAct(c_in, c_out, alpha_in=alpha_in, alpha_out=alpha_out)
    c_l = int(alpha_out * c_out)
    assert isinstance(block.norm_h, nn.BatchNorm2d)
    assert block.norm_h.num_features == c_out - c_l
    if c_l:
        assert isinstance(block.norm_l, nn.BatchNorm2d)
        assert block.norm_l.num_features == c_l
        assert block.norm_l is not block.norm_h
    else:
        assert block.norm_l is None
    assert block.alpha_in == alpha_in and block.alpha_out == alpha_out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_train_mode_normalises_each_branch(stride, size):
    torch.manual_seed(6)
    block = OctConvNormAct(8, 12, 3, stride=stride, alpha_in=0.5, alpha_out=0.5, act_layer=None)
    assert isinstance(block.act, nn.Identity)
    with torch.no_grad():  # give each branch a different scale and offset so shared statistics would show
        block.conv.h2h.weight.mul_(5.0)
        block.conv.l2l.weight.mul_(0.1)
    block.train()
    x = make_input(4, 8, 0.5, *size)
    x = OctaveTensor(x.high + 3.0, x.low - 7.0)
    y = block(x)
    assert isinstance(y, OctaveTensor)
    for branch in (y.high, y.low):
        mean = branch.mean(dim=(0, 2, 3))
        var = branch.var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        # eps = 1e-5 makes var slightly below 1 for tiny variances; compare with the eps-corrected value
        torch.testing.assert_close(var, torch.ones_like(var), atol=2e-3, rtol=0)


@pytest.mark.parametrize("operator_path", ["fast"], indirect=True)  # the NCHW detour is the fast path's
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_few_channel_channels_last_norms_match_the_native_norm(monkeypatch, threads, dtype):
    """With more than one thread, training norms of channels_last maps whose channels are not a multiple of the
    vector width run on an NCHW copy. Outputs (channels_last), gradients and running statistics must be those of
    the native channels_last norm; with one thread, or at a multiple of the width, the map is normalised as is."""
    from octzoo.layers import cpu_fast

    monkeypatch.setattr(cpu_fast, "VECTOR_LANES", 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the rule reads it; the work runs on one
    torch.manual_seed(9)
    block = OctConvNormAct(16, 40, 3, alpha_in=0.5, alpha_out=0.5, act_layer=None).to(dtype)  # 20 + 20 channels out
    twin = copy.deepcopy(block)
    seen, grads_seen = [], []  # whether the norms' inputs and output gradients were NCHW

    def watch_gradient(module, args, out) -> None:
        out.register_hook(lambda g: grads_seen.append(g.is_contiguous()))

    for norm in (block.norm_h, block.norm_l):
        norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
        norm.register_forward_hook(watch_gradient)
    x = make_input(4, 16, 0.5, 8, 6)
    x = OctaveTensor(*(t.to(dtype).contiguous(memory_format=torch.channels_last) for t in x))
    xa = OctaveTensor(*(t.clone().requires_grad_() for t in x))
    xb = OctaveTensor(*(t.clone().requires_grad_() for t in x))
    ya = block(xa)
    monkeypatch.setattr(cpu_fast, "VECTOR_LANES", 1)  # every channel count is a multiple: the native path
    yb = twin(xb)
    assert seen == [threads > 1] * 2  # the NCHW copy was taken only with more than one thread
    grads = [torch.randn_like(t) for t in ya]
    torch.autograd.backward(list(ya), grads)
    torch.autograd.backward(list(yb), grads)
    assert grads_seen == [threads > 1] * 2  # and the norms' backward got NCHW gradients, not channels_last ones
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    for a, b in zip(ya, yb, strict=True):
        assert a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous()
        torch.testing.assert_close(a, b, **tol)
    for a, b in zip((*xa, *block.parameters()), (*xb, *twin.parameters()), strict=True):
        torch.testing.assert_close(a.grad, b.grad, **tol)
    for a, b in zip(block.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b, **tol)

    seen.clear()  # at a multiple of the width the map stays channels_last even with several threads
    monkeypatch.setattr(cpu_fast, "VECTOR_LANES", 20)
    block(x)
    assert seen == [False, False]


def test_other_norms_see_channels_last_maps_as_they_are(monkeypatch):
    """Only batch norms have the slow channels_last kernel: another norm layer gets the map without a copy."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    block = OctConvNormAct(16, 40, 3, alpha_in=0.5, alpha_out=0.5, norm_layer=lambda c: nn.GroupNorm(4, c)).train()
    seen = []
    for norm in (block.norm_h, block.norm_l):
        norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    x = make_input(2, 16, 0.5, 8, 6)
    block(OctaveTensor(*(t.contiguous(memory_format=torch.channels_last) for t in x)))
    assert seen == [False, False]


def test_branch_statistics_are_separate():
    """Each BatchNorm tracks running statistics of its own branch only."""
    torch.manual_seed(7)
    block = OctConvNormAct(8, 12, 3, alpha_in=0.5, alpha_out=0.5)
    block.train()
    x = make_input(4, 8, 0.5, 6, 6)
    with torch.no_grad():
        conv_out = block.conv(x)
        block(x)
    m = block.norm_h.momentum
    torch.testing.assert_close(block.norm_h.running_mean, m * conv_out.high.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(block.norm_l.running_mean, m * conv_out.low.mean(dim=(0, 2, 3)))
    n_h = conv_out.high.numel() / conv_out.high.shape[1]
    n_l = conv_out.low.numel() / conv_out.low.shape[1]
    torch.testing.assert_close(
        block.norm_h.running_var, (1 - m) + m * conv_out.high.var(dim=(0, 2, 3), unbiased=False) * n_h / (n_h - 1)
    )
    torch.testing.assert_close(
        block.norm_l.running_var, (1 - m) + m * conv_out.low.var(dim=(0, 2, 3), unbiased=False) * n_l / (n_l - 1)
    )


def test_eval_mode_uses_per_branch_running_stats_and_relu():
    torch.manual_seed(8)
    block = OctConvNormAct(8, 12, 3, alpha_in=0.5, alpha_out=0.5)
    with torch.no_grad():
        for bn in (block.norm_h, block.norm_l):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    block.eval()
    x = make_input(2, 8, 0.5, 5, 7)
    with torch.no_grad():
        y = block(x)
        c = block.conv(x)
    for out, pre, bn in ((y.high, c.high, block.norm_h), (y.low, c.low, block.norm_l)):
        want = (pre - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        want = torch.relu(want * bn.weight[:, None, None] + bn.bias[:, None, None])
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    assert (y.high >= 0).all() and (y.low >= 0).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k, groups", [(3, 1), (1, 1), (3, 4), (3, 8)])
def test_alpha_zero_equals_conv_bn_relu(stride, k, groups):
    torch.manual_seed(9)
    block = OctConvNormAct(8, 8, k, stride=stride, groups=groups, alpha_in=0, alpha_out=0)
    ref = nn.Sequential(
        nn.Conv2d(8, 8, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
    )
    ref[0].load_state_dict(block.conv.h2h.state_dict())
    with torch.no_grad():
        block.norm_h.weight.normal_()
        block.norm_h.bias.normal_()
    ref[1].load_state_dict(block.norm_h.state_dict())
    block.train()
    ref.train()
    for size in [(9, 9), (8, 6)]:
        x = torch.randn(3, 8, *size)
        y = block(x)
        assert type(y) is Tensor
        torch.testing.assert_close(y, ref(x), atol=0, rtol=0)
    torch.testing.assert_close(block.norm_h.running_mean, ref[1].running_mean, atol=0, rtol=0)
    torch.testing.assert_close(block.norm_h.running_var, ref[1].running_var, atol=0, rtol=0)
    block.eval()
    ref.eval()
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(block(x), ref(x), atol=0, rtol=0)


def test_block_shapes_and_types_chain():
    """0 -> a -> a (depthwise, stride 2) -> 0 on an odd size."""
    torch.manual_seed(10)
    first = OctConvNormAct(3, 16, 3, alpha_in=0, alpha_out=0.5)
    dw = OctConvNormAct(16, 16, 3, stride=2, groups=16, alpha_in=0.5, alpha_out=0.5)
    last = OctConvNormAct(16, 8, 1, alpha_in=0.5, alpha_out=0, act_layer=None)
    x = torch.randn(2, 3, 9, 7)
    a = first(x)
    assert isinstance(a, OctaveTensor) and a.high.shape == (2, 8, 9, 7) and a.low.shape == (2, 8, 5, 4)
    b = dw(a)
    assert dw.conv.h2l is None and dw.conv.l2h is None
    assert b.high.shape == (2, 8, 5, 4) and b.low.shape == (2, 8, 3, 2)
    c = last(b)
    assert type(c) is Tensor and c.shape == (2, 8, 5, 4)
    assert c.min() < 0  # no activation


def test_block_gradients_reach_both_norms():
    torch.manual_seed(11)
    block = OctConvNormAct(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    y = block(make_input(2, 8, 0.5, 6, 6))
    (y.high.square().sum() + y.low.square().sum()).backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_block_state_dict_has_both_norms():
    """Each branch's norm appears in the state dict under its own name."""
    block = OctConvNormAct(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    keys = set(block.state_dict())
    assert {"norm_h.running_mean", "norm_l.running_mean", "norm_h.weight", "norm_l.weight"} <= keys
    clone = copy.deepcopy(block)
    clone.load_state_dict(block.state_dict())


# Inference folds eval-mode batch norms into the convolution's weights (OctConvNormAct.forward).

FOLD_CASES = [  # c_in, c_out, k, stride, groups, alpha_in, alpha_out, size
    (8, 12, 3, 1, 1, 0.0, 0.0, (7, 5)),
    (8, 12, 3, 2, 1, 0.0, 0.0, (7, 5)),
    (3, 16, 3, 1, 1, 0.0, 0.5, (9, 7)),
    (16, 12, 3, 1, 1, 0.5, 0.5, (9, 7)),
    (16, 12, 1, 1, 1, 0.5, 0.5, (8, 8)),
    (16, 12, 3, 2, 1, 0.5, 0.5, (9, 7)),
    (16, 16, 3, 2, 16, 0.5, 0.5, (9, 7)),
    (16, 16, 3, 1, 16, 0.5, 0.5, (6, 6)),
    (16, 8, 1, 1, 1, 0.5, 0.0, (5, 4)),
    (16, 8, 3, 2, 1, 0.25, 0.0, (5, 4)),
]


def randomise_norms(block: OctConvNormAct) -> None:
    """Running statistics and affine parameters far from the identity, so a norm left out would show."""
    with torch.no_grad():
        for bn in (block.norm_h, block.norm_l):
            if bn is not None:
                bn.running_mean.normal_(0, 2)
                bn.running_var.uniform_(0.1, 4.0)
                bn.weight.normal_()
                bn.bias.normal_()


def branches(y) -> tuple[Tensor, ...]:
    return (y,) if isinstance(y, Tensor) else tuple(y)


def folded(block: nn.Module) -> bool:
    return bool({"_folded_weight_cache", "_definition_folded_weight_cache"} & set(block.conv.__dict__))


@pytest.mark.parametrize("c_in, c_out, k, stride, groups, alpha_in, alpha_out, size", FOLD_CASES)
@pytest.mark.parametrize("act_layer", [nn.ReLU, nn.ReLU6, None, nn.SiLU])
def test_inference_folds_norms_exactly(c_in, c_out, k, stride, groups, alpha_in, alpha_out, size, act_layer):
    """Eval mode without autograd runs the folded weights; float64 conv -> norm -> act is the reference."""
    torch.manual_seed(12)
    block = OctConvNormAct(c_in, c_out, k, stride, groups, alpha_in, alpha_out, act_layer=act_layer).eval()
    randomise_norms(block)
    x = make_input(2, c_in, alpha_in, *size)
    with torch.no_grad():
        y = block(x)
    assert folded(block)
    ref = copy.deepcopy(block).double()
    x64 = x.double() if isinstance(x, Tensor) else OctaveTensor(x.high.double(), x.low.double())
    want = ref(x64)  # autograd on: the module path, conv then norm then act
    assert not folded(ref)
    assert type(y) is type(want)
    for got, exp in zip(branches(y), branches(want), strict=True):
        assert got.dtype == torch.float32 and got.shape == exp.shape
        torch.testing.assert_close(got.double(), exp, atol=1e-5, rtol=1e-5)
    if act_layer is not None and act_layer is not nn.SiLU:
        assert min(t.min() for t in branches(y)) >= 0


def test_folding_covers_conv_biases():
    """A convolution's own bias passes through the norm's scale, for each path into a branch."""
    torch.manual_seed(13)
    conv = OctConv2d(16, 12, 3, alpha_in=0.5, alpha_out=0.5, bias=True)
    norms = (nn.BatchNorm2d(6).eval(), nn.BatchNorm2d(6).eval())
    block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5)
    block.conv, block.norm_h, block.norm_l = conv, *norms
    randomise_norms(block)
    x = make_input(2, 16, 0.5, 7, 7)
    with torch.no_grad():
        y = conv.forward_folded(x, norms)
        c = conv(x)
        want = (norms[0](c.high), norms[1](c.low))
    for got, exp in zip(y, want, strict=True):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-5)


def test_folded_weights_follow_running_stats_and_loads():
    torch.manual_seed(14)
    block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5)
    x = make_input(2, 16, 0.5, 6, 6)

    def check():
        block.eval()
        with torch.no_grad():
            y = block(x)
        assert folded(block)
        with torch.enable_grad():
            want = block(x)
        for got, exp in zip(y, want, strict=True):
            torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-5)
        return y

    before = check()
    block.train()
    block(make_input(4, 16, 0.5, 6, 6)).high.sum().backward()  # updates the running statistics in place
    after = check()
    assert not torch.allclose(before.high, after.high)
    other = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5)
    randomise_norms(other)
    block.load_state_dict(other.state_dict())
    loaded = check()
    torch.testing.assert_close(loaded.high, other.eval()(x).high, atol=1e-5, rtol=1e-5)
    block.norm_l.eps = 0.5  # not a tensor, part of the cache key too
    check()


def test_norms_in_train_mode_or_without_running_stats_are_not_folded():
    torch.manual_seed(15)
    x = make_input(4, 16, 0.5, 6, 6)
    block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5, act_layer=None).eval()
    block.norm_l.train()  # batch statistics for the low branch
    with torch.no_grad():
        y = block(x)
    assert not folded(block)
    torch.testing.assert_close(y.low.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5, rtol=0)
    for norm_layer in (lambda c: nn.BatchNorm2d(c, track_running_stats=False), lambda c: nn.GroupNorm(2, c)):
        block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5, norm_layer=norm_layer).eval()
        with torch.no_grad():
            y = block(x)
        assert not folded(block)
        c = block.conv(x)
        torch.testing.assert_close(y.high, torch.relu(block.norm_h(c.high)), atol=0, rtol=0)


def test_hooks_and_replaced_forwards_see_every_module():
    """Folding skips the norms' calls, so anything observing a module or replacing a forward turns it off."""
    torch.manual_seed(16)
    x = make_input(2, 16, 0.5, 6, 6)

    def run(setup):
        block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5).eval()
        randomise_norms(block)
        calls = []
        setup(block, lambda *args: calls.append(1))
        with torch.no_grad():
            y = block(x)
        with torch.enable_grad():
            want = block(x)
        tol = 1e-5 if folded(block) else 0  # unfolded, it is the very same computation
        torch.testing.assert_close(y.high, want.high, atol=tol, rtol=tol)
        return folded(block), len(calls)

    assert run(lambda block, hook: None) == (True, 0)
    assert run(lambda block, hook: block.norm_h.register_forward_hook(hook)) == (False, 2)
    assert run(lambda block, hook: block.norm_l.register_forward_pre_hook(hook)) == (False, 2)
    assert run(lambda block, hook: block.conv.l2l.register_forward_hook(hook))[0] is False
    assert run(lambda block, hook: block.act.register_forward_hook(hook)) == (False, 4)

    def replace_forward(block, hook):
        conv = block.conv
        conv.forward = lambda inp: (hook(), type(conv).forward(conv, inp))[1]

    assert run(replace_forward) == (False, 2)
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert run(lambda block, hook: None)[0] is False
    finally:
        handle.remove()


@pytest.mark.parametrize("operator_path", ["fast"], indirect=True)  # the unfolded weights are cached there only
def test_weight_caches_are_derived_state():
    """Neither cache is pickled or deep-copied, and clear_weight_cache drops both."""
    block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5).eval()
    x = make_input(1, 16, 0.5, 6, 6)
    with torch.no_grad():
        block(x)
        block.conv(x)
    assert {"_weight_cache", "_folded_weight_cache"} <= set(block.conv.__dict__)
    for clone in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        assert not {"_weight_cache", "_folded_weight_cache"} & set(clone.conv.__dict__)
    block.conv.clear_weight_cache()
    assert not {"_weight_cache", "_folded_weight_cache"} & set(block.conv.__dict__)


def test_folding_in_bfloat16():
    """Folded in float32 and rounded once: as close to float64 as the unfolded bfloat16 path."""
    torch.manual_seed(17)
    block = OctConvNormAct(16, 12, 3, alpha_in=0.5, alpha_out=0.5).eval()
    randomise_norms(block)
    x = make_input(2, 16, 0.5, 7, 7)
    want = copy.deepcopy(block).double()(OctaveTensor(x.high.double(), x.low.double()))
    block.bfloat16()
    xb = OctaveTensor(x.high.bfloat16(), x.low.bfloat16())
    with torch.no_grad():
        y = block(xb)
    assert folded(block) and y.high.dtype == torch.bfloat16
    unfolded = block(xb)
    for got, plain, exp in zip(y, unfolded, want, strict=True):
        err, err_plain = (got.double() - exp).abs().max(), (plain.double() - exp).abs().max()
        assert err <= 2 * err_plain + 1e-2, (err, err_plain)


def test_set_norm_folding_switches_every_block():
    torch.manual_seed(18)
    model = nn.Sequential(
        OctConvNormAct(3, 16, 3, alpha_out=0.5), OctConvNormAct(16, 8, 3, alpha_in=0.5, act_layer=None)
    ).eval()
    for block in model:
        randomise_norms(block)
    x = torch.randn(2, 3, 7, 7)
    assert set_norm_folding(model, False) is model
    with torch.no_grad():
        y = model(x)
    assert not any(folded(block) for block in model)
    step_by_step = model[1].act(model[1].norm_h(model[1].conv(model[0](x))))
    torch.testing.assert_close(y, step_by_step, atol=0, rtol=0)
    set_norm_folding(model, True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-5)
    assert all(folded(block) for block in model)
