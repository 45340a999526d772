"""BF16Emulation: bfloat16 convolutions and matrix products through float32 kernels, against float64 references."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from octzoo.training.bf16 import BF16Emulation

BF16 = torch.bfloat16


def bf16_ulp(ref: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 numbers (8 significant bits) at each value of ``ref``."""
    _, exponent = torch.frexp(ref.double())  # ref = m * 2**e with 0.5 <= |m| < 1
    return torch.ldexp(torch.ones_like(ref, dtype=torch.float64), exponent - 8)


def assert_correctly_rounded(out: torch.Tensor, ref64: torch.Tensor):
    """``out`` is ``ref64`` rounded to bfloat16, except where float32 summation lands on the other side of a
    rounding boundary: then one ulp away, and rarely."""
    ref = ref64.to(BF16).double()
    off = (out.double() - ref).abs()
    assert (off <= bf16_ulp(ref) * 1.0001).all(), f"{(off / bf16_ulp(ref)).max().item():.2f} ulps off"
    assert (off > 0).float().mean().item() < 0.01


def run_step(fn, inputs, grad_seed=1, emulate=True):
    """Forward under bf16 autocast and backward with a fixed bfloat16 output gradient; returns (out, grads)."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    mode = BF16Emulation if emulate else contextlib.nullcontext
    with torch.autocast("cpu", dtype=BF16), mode():
        out = fn(*leaves)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(BF16)
    with mode():
        out.backward(grad)
    return out.detach(), [t.grad for t in leaves], grad


def reference(fn, inputs, grad):
    """The same function in float64 on the bfloat16-rounded operands: what a correctly rounded kernel returns."""
    leaves = [t.detach().to(BF16).double().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad.double())
    return out.detach(), [t.grad for t in leaves]


CONVS = {
    "3x3": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (4, 16, 12, 12), (24, 16, 3, 3)),
    "3x3 stride 2": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), (4, 16, 12, 12), (24, 16, 3, 3)),
    "1x1": (lambda x, w, b: F.conv2d(x, w, b), (4, 40, 6, 6), (24, 40, 1, 1)),
    "depthwise": (lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=16), (4, 16, 10, 10), (16, 1, 3, 3)),
}


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("name", list(CONVS))
def test_emulated_convolution_is_correctly_rounded_bf16_forward_and_backward(name, channels_last):
    fn, x_shape, w_shape = CONVS[name]
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(x_shape, generator=g), torch.randn(w_shape, generator=g), torch.randn(w_shape[0], generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out, grads, grad = run_step(fn, (x, w, b))
    ref_out, ref_grads = reference(fn, (x, w, b), grad)
    assert out.dtype == BF16
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last  # the layout is kept
    assert_correctly_rounded(out, ref_out)
    for got, want in zip(grads, ref_grads, strict=True):
        # autocast's casts hand float32 leaves float32 gradients: the bfloat16 result of the conv's backward
        assert got.dtype == torch.float32
        assert_correctly_rounded(got, want)


@pytest.mark.parametrize("bias", [True, False], ids=["addmm", "mm"])
def test_emulated_linear_is_correctly_rounded_bf16(bias):
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(8, 64, generator=g), torch.randn(10, 64, generator=g), torch.randn(10, generator=g))
    inputs = inputs if bias else inputs[:2]
    out, grads, grad = run_step(F.linear, inputs)
    ref_out, ref_grads = reference(F.linear, inputs, grad)
    assert out.dtype == BF16
    assert_correctly_rounded(out, ref_out)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_correctly_rounded(got, want)


def test_emulation_agrees_with_the_native_bf16_kernels():
    # oneDNN's own bfloat16 convolution (slow reference kernels on an AVX2 CPU, so small shapes): the forward is
    # correctly rounded there too; its backward may round partial sums, so it is compared by relative error
    fn, x_shape, w_shape = CONVS["3x3"]
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(x_shape, generator=g), torch.randn(w_shape, generator=g), torch.randn(w_shape[0], generator=g)
    emu_out, emu_grads, grad = run_step(fn, inputs)
    nat_out, nat_grads, _ = run_step(fn, inputs, emulate=False)
    assert nat_out.dtype == BF16
    assert_correctly_rounded(nat_out, reference(fn, inputs, grad)[0])
    assert (emu_out.double() - nat_out.double()).abs().max() <= bf16_ulp(nat_out).max()
    for emu, nat in zip(emu_grads, nat_grads, strict=True):
        assert (emu - nat).norm() / nat.norm() < 2 * torch.finfo(BF16).eps


def test_float32_and_other_ops_run_unchanged_under_the_emulation():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 8, 6, 6, generator=g), torch.randn(8, 8, 3, 3, generator=g)
    with BF16Emulation():
        out32 = F.conv2d(x, w, padding=1)
        pooled = F.avg_pool2d(x.to(BF16), 2)
        mixed_error = None
        try:  # a float32 weight with a bfloat16 input is an error natively; the emulation does not hide it
            F.conv2d(x.to(BF16), w, padding=1)
        except RuntimeError as e:
            mixed_error = e
    assert torch.equal(out32, F.conv2d(x, w, padding=1))
    assert pooled.dtype == BF16 and torch.equal(pooled, F.avg_pool2d(x.to(BF16), 2))
    assert mixed_error is not None
