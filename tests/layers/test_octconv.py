"""OctConv2d against an independent float64 reference of the paper's Eq. 1-2 (arXiv 1904.05049).

The reference below deliberately re-implements the two resampling operators instead of calling
``octzoo.layers.pool2x`` / ``upsample_to``:

* pooling: 2x2 mean over the valid pixels of each block, done by zero-padding to an even size, summing each
  2x2 block through a reshape and dividing by a count map (a partial window at an odd border averages
  only the pixels it covers);
* upsampling: nearest neighbour by index arithmetic, ``y[..., i, j] = x[..., i // 2, j // 2]`` for every
  (i, j) of the exact high-branch size (2x then crop).

Convolutions use ``torch.nn.functional.conv2d`` with the layer's own weights cast to float64, and the
groups of every path are derived from the spec (not read from the layer's sub-modules).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import PATHS, expected_paths, ref_low_side, ref_pool, ref_split, ref_upsample, reference_octconv
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from octzoo.layers import OctaveTensor, OctConv2d, split_channels
from octzoo.layers.cpu_kernels import fast_pool2x, pool2x_backward, sum_pool2x

ATOL = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread", "operator_path")


# ----------------------------------------------------------------------------------------------------------
# Independent reference
# ----------------------------------------------------------------------------------------------------------


def make_input(n, c_in, alpha_in, h, w, dtype=torch.float64):
    ci_h, ci_l = ref_split(c_in, alpha_in)
    x_h = torch.randn(n, ci_h, h, w, dtype=dtype)
    if ci_l == 0:
        return x_h
    return OctaveTensor(x_h, torch.randn(n, ci_l, ref_low_side(h), ref_low_side(w), dtype=dtype))


def randomise_biases(layer: nn.Module) -> None:
    """Default bias init can be tiny; make each path's bias clearly visible in the output."""
    with torch.no_grad():
        for name in PATHS:
            mod = getattr(layer, name, None)
            if mod is not None and mod.bias is not None:
                mod.bias.normal_()


def check_against_reference(c_in, c_out, alpha_in, alpha_out, groups, stride, k, size, bias, dilation=1, n=2):
    layer = OctConv2d(
        c_in,
        c_out,
        k,
        stride=stride,
        dilation=dilation,
        groups=groups,
        bias=bias,
        alpha_in=alpha_in,
        alpha_out=alpha_out,
    ).double()
    randomise_biases(layer)
    # the layer's sub-modules are exactly the spec's paths
    paths = expected_paths(c_in, c_out, alpha_in, alpha_out, groups)
    ci_h, ci_l = ref_split(c_in, alpha_in)
    co_h, co_l = ref_split(c_out, alpha_out)
    chans = {"h2h": (ci_h, co_h), "h2l": (ci_h, co_l), "l2h": (ci_l, co_h), "l2l": (ci_l, co_l)}
    for name, g in paths.items():
        mod = getattr(layer, name)
        if g is None:
            assert mod is None, f"{name} should be absent"
        else:
            assert isinstance(mod, nn.Conv2d), f"{name} should be an nn.Conv2d"
            cin, cout = chans[name]
            assert tuple(mod.weight.shape) == (cout, cin // g, k, k), name
            assert (mod.bias is not None) == bias, name

    h, w = size
    x = make_input(n, c_in, alpha_in, h, w)
    pad = (k - 1) // 2 * dilation
    with torch.no_grad():
        got = layer(x)
        want = reference_octconv(
            layer,
            x,
            c_in=c_in,
            c_out=c_out,
            alpha_in=alpha_in,
            alpha_out=alpha_out,
            groups=groups,
            stride=stride,
            padding=pad,
            dilation=dilation,
        )

    out_h = h if stride == 1 else ref_low_side(h)
    out_w = w if stride == 1 else ref_low_side(w)
    if co_l == 0:
        assert isinstance(got, Tensor) and not isinstance(got, tuple)
        assert got.shape == (n, co_h, out_h, out_w)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    else:
        assert isinstance(got, OctaveTensor)
        assert got.high.shape == (n, co_h, out_h, out_w)
        assert got.low.shape == (n, co_l, ref_low_side(out_h), ref_low_side(out_w))
        torch.testing.assert_close(got.high, want[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(got.low, want[1], atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# The reference itself (so a bug in it cannot hide a bug in the layer)
# ----------------------------------------------------------------------------------------------------------


def test_reference_pool_hand_computed():
    x = torch.arange(15, dtype=torch.float64).reshape(1, 1, 3, 5)
    # rows [0..4], [5..9], [10..14]
    want = torch.tensor(
        [
            [
                [(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2],
                [(10 + 11) / 2, (12 + 13) / 2, 14 / 1],
            ]
        ],
        dtype=torch.float64,
    )[None]
    torch.testing.assert_close(ref_pool(x), want, atol=0, rtol=0)
    one = torch.tensor([[[[3.5]]]], dtype=torch.float64)
    torch.testing.assert_close(ref_pool(one), one, atol=0, rtol=0)


def test_reference_upsample_hand_computed():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
    want = torch.tensor([[[[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [3.0, 3.0, 4.0]]]], dtype=torch.float64)
    torch.testing.assert_close(ref_upsample(x, (3, 3)), want, atol=0, rtol=0)
    torch.testing.assert_close(ref_upsample(x[..., :1, :1], (1, 1)), x[..., :1, :1], atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# 1. The grid against the reference
# ----------------------------------------------------------------------------------------------------------

ALPHAS = [(0, 0), (0, 0.25), (0, 0.5), (0.25, 0.25), (0.5, 0.5), (0.75, 0.75), (0.5, 0), (0.25, 0), (0.125, 0.5)]
SIZES = [(1, 1), (2, 3), (5, 7), (8, 8), (9, 6)]
# groups label -> (c_in, c_out, groups); channel counts chosen so every branch of every alpha pair divides.
GROUPS = {"g1": (8, 16, 1), "g2": (16, 8, 2), "dw": (8, 8, 8)}


def _grid():
    params = []
    for a_in, a_out in ALPHAS:
        for label, (c_in, c_out, g) in GROUPS.items():
            if label == "dw" and a_in != a_out:
                continue
            for stride in (1, 2):
                for k in (1, 3, 5):
                    params.append(
                        pytest.param(
                            a_in, a_out, c_in, c_out, g, stride, k, id=f"a{a_in}-{a_out}-{label}-s{stride}-k{k}"
                        )
                    )
    return params


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("alpha_in, alpha_out, c_in, c_out, groups, stride, k", _grid())
def test_matches_reference(alpha_in, alpha_out, c_in, c_out, groups, stride, k, bias):
    torch.manual_seed(0)
    for size in SIZES:
        check_against_reference(c_in, c_out, alpha_in, alpha_out, groups, stride, k, size, bias)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("alpha_in, alpha_out", [(0, 0), (0, 0.5), (0.5, 0.5), (0.5, 0), (0.25, 0.75)])
def test_matches_reference_dilated(alpha_in, alpha_out, stride):
    torch.manual_seed(1)
    for size in [(1, 1), (5, 7), (8, 8), (11, 4)]:
        check_against_reference(8, 8, alpha_in, alpha_out, 1, stride, 3, size, bias=True, dilation=2)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    c_in=st.integers(1, 12),
    c_out=st.integers(1, 12),
    alpha_in=st.sampled_from([0.0, 0.1, 0.125, 0.3, 0.5, 0.6, 0.9]),
    alpha_out=st.sampled_from([0.0, 0.1, 0.125, 0.3, 0.5, 0.6, 0.9]),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    stride=st.sampled_from([1, 2]),
    k=st.sampled_from([1, 3]),
    bias=st.booleans(),
)
def test_matches_reference_random(c_in, c_out, alpha_in, alpha_out, h, w, stride, k, bias):
    # Layers whose alpha > 0 rounds to an empty low branch are covered (and disputed) separately.
    assume((alpha_in == 0) == (ref_split(c_in, alpha_in)[1] == 0))
    assume((alpha_out == 0) == (ref_split(c_out, alpha_out)[1] == 0))
    torch.manual_seed(2)
    check_against_reference(c_in, c_out, alpha_in, alpha_out, 1, stride, k, (h, w), bias, n=1)


@pytest.mark.parametrize("kind", ["grouped", "depthwise"])
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.sampled_from([2, 3, 4]),
    in_per_group=st.integers(1, 4),
    out_per_group=st.integers(1, 4),
    alpha_in=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    alpha_out=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    stride=st.sampled_from([1, 2]),
    bias=st.booleans(),
)
def test_matches_reference_random_groups(
    kind, groups, in_per_group, out_per_group, alpha_in, alpha_out, h, w, stride, bias
):
    """Grouped and depthwise layers at random shapes: the reference where every branch divides by ``groups``,
    else the construction error that says so (never a shape error at run time)."""
    if kind == "depthwise":  # groups == c_in == c_out with one alpha: each branch is depthwise on its own
        c_in = c_out = groups * in_per_group
        groups, alpha_out = c_in, alpha_in
    else:
        c_in, c_out = groups * in_per_group, groups * out_per_group
    assume((alpha_in == 0) == (ref_split(c_in, alpha_in)[1] == 0))
    assume((alpha_out == 0) == (ref_split(c_out, alpha_out)[1] == 0))
    branches = ref_split(c_in, alpha_in) + ref_split(c_out, alpha_out)
    depthwise = groups == c_in == c_out and alpha_in == alpha_out  # drawn, or by chance (one channel per group)
    if not depthwise and any(c % groups for c in branches):
        event("refused: a branch does not divide by groups")
        with pytest.raises(ValueError, match=rf"groups={groups} must divide every branch"):
            OctConv2d(c_in, c_out, 3, groups=groups, alpha_in=alpha_in, alpha_out=alpha_out)
        return
    event("depthwise" if depthwise else "grouped")
    torch.manual_seed(3)
    check_against_reference(c_in, c_out, alpha_in, alpha_out, groups, stride, 3, (h, w), bias, n=2)


@pytest.mark.parametrize("stride, size", [(2, (5, 3)), (1, (6, 4)), (2, (4, 8))])
def test_gradcheck(stride, size):
    torch.manual_seed(3)
    layer = OctConv2d(4, 4, 3, stride=stride, bias=True, alpha_in=0.5, alpha_out=0.5).double()
    x_h = torch.randn(1, 2, *size, dtype=torch.float64, requires_grad=True)
    x_l = torch.randn(1, 2, ref_low_side(size[0]), ref_low_side(size[1]), dtype=torch.float64, requires_grad=True)

    def fn(a, b):
        y = layer((a, b))
        return y.high, y.low

    assert torch.autograd.gradcheck(fn, (x_h, x_l))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("c", [3, 8, 64])
@pytest.mark.parametrize("size", [(8, 6), (2, 2), (5, 7), (4, 3)])
def test_pool2x_backward_is_the_gradient_of_the_reference_pool(layout, c, size):
    """h2l's backward routes its input gradient through pool2x_backward (even sizes: an upsample of grad / 4)."""
    torch.manual_seed(7)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, c, *size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    pooled = ref_pool(x)
    grad = torch.randn_like(pooled).contiguous(memory_format=fmt)
    pooled.backward(grad)
    got = pool2x_backward(grad, x.detach())
    assert got.shape == x.shape
    torch.testing.assert_close(got, x.grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("c", [3, 8, 15, 16, 64])  # either side of VECTOR_LANES on AVX2 (8) and AVX-512 (16)
@pytest.mark.parametrize("size", [(8, 6), (2, 2), (5, 7), (4, 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [2, 1400])  # the few-channels kernel takes maps of 16384 values and more
def test_pool2x_and_sum_pool2x_match_the_reference_pool(layout, c, size, dtype, batch):
    """Every kernel fast_pool2x and sum_pool2x choose (avg_pool2d, strided sums, the few-channels row-pair sums) gives
    the reference pool, keeps the input's layout and does not modify the input."""
    torch.manual_seed(3)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, c, *size, dtype=dtype).contiguous(memory_format=fmt)
    before = x.clone()
    want = ref_pool(x.double())
    h, w = size
    count = F.pad(torch.ones(h, w, dtype=torch.float64), (0, w % 2, 0, h % 2))  # pixels under each window
    count = count.reshape(-1, 2, count.shape[1] // 2, 2).sum(dim=(1, 3))
    tol = ATOL if dtype == torch.float64 else 1e-6
    with torch.no_grad():
        for got, ref in ((fast_pool2x(x), want), (sum_pool2x(x), want * count)):
            assert got.dtype == dtype and got.shape == want.shape
            if layout == "channels_last":
                assert got.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(got.double(), ref, atol=tol, rtol=tol)
    assert torch.equal(x, before)


# ----------------------------------------------------------------------------------------------------------
# Channel split and structure
# ----------------------------------------------------------------------------------------------------------


def test_split_channels_official_rounding():
    for c in range(0, 65):
        for a in (0, 0.1, 0.125, 0.25, 0.3, 0.375, 0.5, 0.7, 0.75, 0.9, 0.99):
            assert split_channels(c, a) == (c - int(a * c), int(a * c)), (c, a)
    assert split_channels(64, 0.5) == (32, 32)
    assert split_channels(3, 0.25) == (3, 0)
    assert split_channels(10, 0.7) == (3, 7)  # 0.7 * 10 == 7.000000000000001
    assert split_channels(30, 0.1) == (27, 3)


@pytest.mark.parametrize("alpha", [1, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_split_channels_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_channels(8, alpha)


@pytest.mark.parametrize("alpha_in, alpha_out", [(0, 0), (0, 0.5), (0.5, 0.5), (0.25, 0.75), (0.5, 0)])
def test_parameter_count_equals_plain_conv(alpha_in, alpha_out):
    layer = OctConv2d(16, 32, 3, alpha_in=alpha_in, alpha_out=alpha_out)
    assert sum(p.numel() for p in layer.parameters()) == 16 * 32 * 9


def test_depthwise_structure():
    layer = OctConv2d(16, 16, 3, groups=16, alpha_in=0.25, alpha_out=0.25)
    assert layer.h2l is None and layer.l2h is None
    assert layer.h2h.groups == 12 and layer.h2h.in_channels == layer.h2h.out_channels == 12
    assert layer.l2l.groups == 4 and layer.l2l.in_channels == layer.l2l.out_channels == 4
    assert sum(p.numel() for p in layer.parameters()) == 16 * 9


def test_groups_on_every_path():
    layer = OctConv2d(16, 8, 3, groups=2, alpha_in=0.5, alpha_out=0.5)
    for name in PATHS:
        assert getattr(layer, name).groups == 2, name


def test_depthwise_needs_equal_alphas():
    # groups == in == out but alpha_in != alpha_out: not depthwise, so every branch must divide by groups
    with pytest.raises(ValueError, match=r"groups=8"):
        OctConv2d(8, 8, 3, groups=8, alpha_in=0.5, alpha_out=0.25)


# ----------------------------------------------------------------------------------------------------------
# 2. alpha 0 / 0 is exactly nn.Conv2d
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "k, padding, dilation", [(3, None, 1), (3, 0, 1), (3, 2, 1), (5, None, 2), (1, 0, 1), (3, 1, 3)]
)
@pytest.mark.parametrize("groups", [1, 4])
def test_plain_equals_conv2d(stride, k, padding, dilation, groups):
    torch.manual_seed(4)
    layer = OctConv2d(
        8, 12, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=True, alpha_in=0, alpha_out=0
    )
    assert layer.h2l is None and layer.l2h is None and layer.l2l is None
    assert isinstance(layer.h2h, nn.Conv2d)
    assert layer.h2h.stride == (stride, stride)
    pad = (k - 1) // 2 * dilation if padding is None else padding
    conv = nn.Conv2d(8, 12, k, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=True)
    conv.load_state_dict(layer.h2h.state_dict())
    for size in [(9, 9), (8, 11), (16, 16)]:
        x = torch.randn(2, 8, *size)
        y = layer(x)
        assert type(y) is Tensor
        torch.testing.assert_close(y, conv(x), atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# 3. Gradients reach all four paths
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_gradients_reach_all_paths(stride, size):
    torch.manual_seed(5)
    layer = OctConv2d(8, 8, 3, stride=stride, bias=True, alpha_in=0.5, alpha_out=0.5)
    assert all(getattr(layer, name) is not None for name in PATHS)
    x_h = torch.randn(2, 4, *size, requires_grad=True)
    x_l = torch.randn(2, 4, ref_low_side(size[0]), ref_low_side(size[1]), requires_grad=True)
    y = layer(OctaveTensor(x_h, x_l))
    loss = (y.high * torch.randn_like(y.high)).sum() + (y.low * torch.randn_like(y.low)).sum()
    loss.backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert x_h.grad is not None and x_h.grad.abs().sum() > 0
    assert x_l.grad is not None and x_l.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------
# 4. Shapes and types
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(1, 1), (1, 4), (2, 3), (3, 3), (5, 7), (7, 7), (9, 6), (13, 2)])
def test_output_shapes_odd_sizes(stride, size):
    torch.manual_seed(6)
    layer = OctConv2d(8, 12, 3, stride=stride, alpha_in=0.5, alpha_out=0.25)
    h, w = size
    y = layer(make_input(3, 8, 0.5, h, w, dtype=torch.float32))
    oh, ow = (h, w) if stride == 1 else (math.ceil(h / 2), math.ceil(w / 2))
    assert y.high.shape == (3, 9, oh, ow)
    assert y.low.shape == (3, 3, math.ceil(oh / 2), math.ceil(ow / 2))
    # the output chains into the next octave layer
    nxt = OctConv2d(12, 4, 3, stride=stride, alpha_in=0.25, alpha_out=0)
    z = nxt(y)
    assert type(z) is Tensor
    assert z.shape[:2] == (3, 4)


def test_plain_tuple_input_accepted():
    torch.manual_seed(7)
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    x = make_input(2, 8, 0.5, 5, 7, dtype=torch.float32)
    a = layer(x)
    b = layer((x.high, x.low))
    assert isinstance(b, OctaveTensor)
    torch.testing.assert_close(a.high, b.high, atol=0, rtol=0)
    torch.testing.assert_close(a.low, b.low, atol=0, rtol=0)


@pytest.mark.parametrize(
    "alpha_in, alpha_out, out_is_octave",
    [(0, 0, False), (0, 0.5, True), (0.5, 0.5, True), (0.5, 0, False), (0.125, 0.75, True)],
)
def test_output_types(alpha_in, alpha_out, out_is_octave):
    layer = OctConv2d(8, 8, 3, alpha_in=alpha_in, alpha_out=alpha_out)
    y = layer(make_input(1, 8, alpha_in, 6, 6, dtype=torch.float32))
    if out_is_octave:
        assert isinstance(y, OctaveTensor)
        assert isinstance(y.high, Tensor) and isinstance(y.low, Tensor)
    else:
        assert type(y) is Tensor


def test_alpha_positive_with_empty_low_branch_is_a_plain_layer():
    """The branch structure follows the rounded split: int(.25 * 3) == 0 low channels make a plain layer."""
    layer = OctConv2d(3, 3, 3, alpha_in=0.25, alpha_out=0.25)
    assert layer.in_split == (3, 0) and layer.out_split == (3, 0)
    assert type(layer(torch.randn(1, 3, 4, 4))) is Tensor
    with pytest.raises(ValueError, match=r"plain Tensor \(its low branch int\(0.25 \* 3\) is empty\)"):
        layer(OctaveTensor(torch.randn(1, 3, 4, 4), torch.randn(1, 0, 2, 2)))


def test_octave_layers_need_same_padding():
    with pytest.raises(ValueError, match="'same' padding"):
        OctConv2d(8, 8, 3, padding=0)
    with pytest.raises(ValueError, match="'same' padding"):
        OctConv2d(8, 8, 2)
    conv = OctConv2d(8, 8, 3, padding=0, alpha_in=0, alpha_out=0)  # a plain layer is any nn.Conv2d
    assert conv(torch.randn(1, 8, 6, 6)).shape == (1, 8, 4, 4)


def test_plain_layer_takes_any_stride_octave_layer_only_1_or_2():
    conv = OctConv2d(8, 8, 3, stride=3, alpha_in=0, alpha_out=0)
    assert conv(torch.randn(1, 8, 9, 9)).shape == (1, 8, 3, 3)
    with pytest.raises(ValueError, match="stride 1 or 2, got stride=3"):
        OctConv2d(8, 8, 3, stride=3)


# ----------------------------------------------------------------------------------------------------------
# 5. Bad input -> ValueError with a useful message
# ----------------------------------------------------------------------------------------------------------

DESC = r"OctConv2d\(8, 8, kernel_size=3"


@pytest.mark.parametrize("kw", ["alpha_in", "alpha_out"])
@pytest.mark.parametrize("bad", [1, 1.0, -0.25, 2.5, float("nan")])
def test_bad_alpha_at_construction(kw, bad):
    with pytest.raises(ValueError, match=rf"{kw}=.*\[0, 1\)"):
        OctConv2d(8, 8, 3, **{kw: bad})


def test_bad_alpha_at_construction_names_layer():
    with pytest.raises(ValueError, match=r"OctConv2d\(8, 8"):
        OctConv2d(8, 8, 3, alpha_in=1.0)


def test_numpy_float32_alpha_accepted():
    layer = OctConv2d(8, 8, 3, alpha_in=np.float32(0.5), alpha_out=np.float32(0.5))
    assert layer.in_split == (4, 4)


def test_wrong_high_channels():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    x = OctaveTensor(torch.randn(2, 5, 8, 8), torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match=rf"{DESC}.*high branch.*4 channels.*got 5"):
        layer(x)


def test_wrong_plain_channels():
    layer = OctConv2d(8, 8, 3, alpha_in=0, alpha_out=0.5)
    with pytest.raises(ValueError, match=r"OctConv2d\(8, 8.*8 channels.*got 3"):
        layer(torch.randn(2, 3, 8, 8))


def test_wrong_low_channels():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    x = OctaveTensor(torch.randn(2, 4, 8, 8), torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match=rf"{DESC}.*low branch.*\(2, 4, 4, 4\).*got \(2, 5, 4, 4\)"):
        layer(x)


@pytest.mark.parametrize(
    "high, low, want",
    [
        ((8, 8), (8, 8), "(2, 4, 4, 4)"),  # low not halved
        ((8, 8), (2, 2), "(2, 4, 4, 4)"),  # quartered
        ((5, 7), (2, 3), "(2, 4, 3, 4)"),  # floor instead of ceil
        ((1, 1), (0, 0), "(2, 4, 1, 1)"),
    ],
)
def test_wrong_low_spatial_size(high, low, want):
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    x = OctaveTensor(torch.randn(2, 4, *high), torch.randn(2, 4, *low))
    with pytest.raises(ValueError, match=rf"{DESC}.*low branch.*{re.escape(want)}"):
        layer(x)


def test_low_batch_mismatch():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    with pytest.raises(ValueError, match=r"low branch.*\(2, 4, 4, 4\).*got \(3, 4, 4, 4\)"):
        layer(OctaveTensor(torch.randn(2, 4, 8, 8), torch.randn(3, 4, 4, 4)))


def test_tensor_where_pair_needed():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    with pytest.raises(ValueError, match=rf"{DESC}.*\(high, low\) pair.*got Tensor"):
        layer(torch.randn(2, 8, 8, 8))


@pytest.mark.parametrize("bad", [(torch.randn(2, 4, 8, 8),), [torch.randn(2, 4, 8, 8)] * 3])
def test_wrong_length_pair(bad):
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    with pytest.raises(ValueError, match=r"pair"):
        layer(bad)


@pytest.mark.parametrize("as_tuple", [False, True])
def test_pair_where_tensor_needed(as_tuple):
    layer = OctConv2d(8, 8, 3, alpha_in=0, alpha_out=0.5)
    x = OctaveTensor(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4))
    if as_tuple:
        x = tuple(x)
    with pytest.raises(ValueError, match=r"OctConv2d\(8, 8.*plain Tensor.*got (OctaveTensor|tuple)"):
        layer(x)


@pytest.mark.parametrize("shape", [(8, 8, 8), (2, 8, 8, 8, 1), (8,)])
def test_wrong_rank_plain(shape):
    layer = OctConv2d(8, 8, 3, alpha_in=0, alpha_out=0)
    with pytest.raises(ValueError, match=rf"OctConv2d\(8, 8.*4-D.*{re.escape(str(shape))}"):
        layer(torch.randn(*shape))


def test_wrong_rank_pair():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    with pytest.raises(ValueError, match=r"4-D.*\(4, 8, 8\)"):
        layer((torch.randn(4, 8, 8), torch.randn(4, 4, 4)))
    with pytest.raises(ValueError, match=r"low branch.*\(2, 4, 4, 4\).*got \(4, 4, 4\)"):
        layer((torch.randn(2, 4, 8, 8), torch.randn(4, 4, 4)))


@pytest.mark.parametrize("alpha_out", [0, 0.5])
def test_none_low_branch_rejected(alpha_out):
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=alpha_out)
    with pytest.raises(ValueError):
        layer((torch.randn(2, 4, 8, 8), None))


def test_non_tensor_pair_rejected():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5)
    with pytest.raises(ValueError):
        layer((None, torch.randn(2, 4, 4, 4)))


@pytest.mark.parametrize(
    "c_in, c_out, alpha_in, alpha_out, groups",
    [
        (8, 8, 0.125, 0.5, 2),  # low in = 1
        (16, 8, 0.5, 0.25, 4),  # out split (6, 2)
        (6, 8, 0, 0, 4),  # plain conv, 6 % 4
        (12, 12, 0.5, 0.5, 5),
    ],
)
def test_groups_not_divisible(c_in, c_out, alpha_in, alpha_out, groups):
    with pytest.raises(ValueError, match=rf"OctConv2d\({c_in}, {c_out}.*groups={groups}.*divide"):
        OctConv2d(c_in, c_out, 3, groups=groups, alpha_in=alpha_in, alpha_out=alpha_out)
