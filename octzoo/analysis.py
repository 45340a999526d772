"""Frequency analysis of octave feature maps: do low-frequency branches carry lower frequencies?

A low branch lives at half resolution, so it cannot hold frequencies above 0.25 cycles per (high-grid) pixel;
that alone makes it "low-frequency". The question worth asking is whether, *within the band it can hold*, it
concentrates its energy at lower frequencies than the high branch does. So each layer is compared three ways,
all as radially averaged power spectra of mean-free maps (each map normalised to unit energy, then averaged
over images and channels):

- ``high``: the high branch on its own grid, frequencies up to 0.5 cycles/pixel;
- ``low``: the low branch on its grid, frequencies expressed in high-grid units (up to 0.25);
- ``high_pooled``: the high branch average-pooled 2x onto the low grid: what half resolution alone forces.

``share_below(cutoff)`` is the fraction of a spectrum's energy at or below ``cutoff`` (high-grid cycles/pixel)
among the band both can hold (up to 0.25); the default cut-off, 0.125, halves that band, and is a ring of every
grid down to 8 x 8 (rings are 1/size apart). The low branch concentrates lower frequencies beyond its resolution when
its share exceeds ``high_pooled``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .layers import OctaveTensor, OctConvNormAct, pool2x

__all__ = ["LayerSpectra", "octave_spectra", "plot_spectra", "radial_power_spectrum", "share_below"]


def radial_power_spectrum(maps: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of (N, C, H, W) maps: returns (frequencies, power).

    Each map is made mean-free and scaled to unit energy, so bright channels do not dominate the average; the
    power of every 2-D frequency goes to the ring of width 1/min(H, W) cycles/pixel it falls in, and rings are
    averaged over maps (the power of a ring is summed over its frequencies, so the spectrum sums to 1).
    ``scale`` multiplies the frequencies (0.5 expresses a half-resolution grid in full-resolution units).
    """
    x = maps.detach().double().flatten(0, 1)  # (M, H, W)
    h, w = x.shape[-2:]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square()
    total = power.sum(dim=(-2, -1), keepdim=True)
    power = torch.where(total > 0, power / total.clamp_min(1e-300), torch.zeros_like(power)).mean(0)  # (H, W)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    radius = torch.sqrt(fy.square() + fx.square())
    width = 1.0 / min(h, w)
    ring = torch.round(radius / width).long().flatten()
    spectrum = torch.zeros(int(ring.max()) + 1, dtype=torch.float64).index_add_(0, ring, power.flatten())
    freqs = torch.arange(len(spectrum), dtype=torch.float64) * width * scale
    return freqs, spectrum


def share_below(freqs: Tensor, power: Tensor, cutoff: float = 0.125, band: float = 0.25) -> float:
    """Fraction of the energy at frequencies <= ``band`` that lies at frequencies <= ``cutoff`` (DC excluded: the
    maps are mean-free)."""
    in_band = freqs <= band + 1e-9
    total = float(power[in_band].sum())
    if total <= 1e-9 * float(power.sum()):  # (numerically) nothing in the band
        return float("nan")
    return float(power[in_band & (freqs <= cutoff + 1e-9)].sum()) / total


@dataclass
class LayerSpectra:
    """The three spectra of one octave layer's output (see the module's docstring)."""

    name: str
    channels: tuple[int, int]  # (high, low)
    spectra: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def share_below(self, cutoff: float = 0.125) -> dict[str, float]:
        return {k: share_below(f, p, cutoff) for k, (f, p) in self.spectra.items()}


def octave_spectra(model: nn.Module, images: Tensor, layers: list[str] | None = None) -> list[LayerSpectra]:
    """Run ``model`` on ``images`` (eval mode, no gradients) and return the spectra of every octave block's
    output (``OctConvNormAct`` modules whose output has both branches), or of the named ``layers``."""
    captured: dict[str, OctaveTensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, OctConvNormAct) and (layers is None or name in layers):

            def keep(mod, args, out, name=name):
                if isinstance(out, OctaveTensor):
                    captured[name] = OctaveTensor(out[0].detach(), out[1].detach())

            hooks.append(module.register_forward_hook(keep))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    if layers is not None and (missing := [n for n in layers if n not in captured]):
        raise ValueError(f"no octave output at {missing}; octave blocks of this model: {sorted(captured)}")
    out = []
    for name, (x_h, x_l) in captured.items():
        s = LayerSpectra(name, (x_h.shape[1], x_l.shape[1]))
        s.spectra["high"] = radial_power_spectrum(x_h)
        s.spectra["low"] = radial_power_spectrum(x_l, scale=0.5)
        s.spectra["high_pooled"] = radial_power_spectrum(pool2x(x_h.float()), scale=0.5)
        out.append(s)
    return out


def plot_spectra(spectra: list[LayerSpectra], path, cutoff: float = 0.125):
    """One panel per layer: the three spectra on a log scale, the band limit and the cut-off marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'octzoo[bench]'") from e
    cols = min(3, len(spectra))
    rows = -(-len(spectra) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    styles = {"high": ("tab:blue", "-"), "low": ("tab:red", "-"), "high_pooled": ("tab:blue", "--")}
    for ax, s in zip(axes.flat, spectra, strict=False):
        for key, (freqs, power) in s.spectra.items():
            color, ls = styles[key]
            keep = freqs > 0
            ax.semilogy(freqs[keep], power[keep].clamp_min(1e-12), color=color, ls=ls, label=key)
        ax.axvline(0.25, color="grey", lw=0.8)
        ax.axvline(cutoff, color="grey", lw=0.8, ls=":")
        shares = s.share_below(cutoff)
        ax.set_title(f"{s.name} (c={s.channels[0]}+{s.channels[1]})\nbelow {cutoff}: low {shares['low']:.2f}, "
                     f"pooled high {shares['high_pooled']:.2f}", fontsize=8)  # fmt: skip
        ax.set_xlabel("cycles / pixel (high grid)", fontsize=8)
    for ax in list(axes.flat)[len(spectra) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
