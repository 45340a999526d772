"""Frequency analysis of octave maps: spectra of known signals, and the per-layer report on a real model."""

import math

import pytest
import torch

import octzoo
from octzoo.analysis import octave_spectra, plot_spectra, radial_power_spectrum, share_below
from octzoo.layers.resample import pool2x


def _wave(f_y, f_x, size=32, channels=2):
    y = torch.arange(size, dtype=torch.float64)[:, None]
    x = torch.arange(size, dtype=torch.float64)[None, :]
    return torch.cos(2 * math.pi * (f_y * y + f_x * x)).expand(1, channels, size, size) + 3.0  # a DC offset too


def test_a_plane_wave_lands_in_its_frequency_ring():
    freqs, power = radial_power_spectrum(_wave(4 / 32, 0))
    assert torch.isclose(power.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert freqs[power.argmax()] == pytest.approx(0.125)
    assert power.max() == pytest.approx(1.0)  # the offset (DC) is removed, all energy in one ring
    diagonal = radial_power_spectrum(_wave(3 / 32, 4 / 32))  # radius 5/32
    assert diagonal[0][diagonal[1].argmax()] == pytest.approx(5 / 32)
    assert share_below(freqs, power, 0.2) == pytest.approx(1.0) and share_below(freqs, power, 0.1) < 1e-12


def test_half_resolution_frequencies_are_in_high_grid_units():
    low = torch.nn.functional.avg_pool2d(_wave(4 / 32, 0), 2)  # the same wave on a 16 x 16 grid
    freqs, power = radial_power_spectrum(low, scale=0.5)
    assert freqs[power.argmax()] == pytest.approx(0.125)
    assert freqs.max() <= 0.5 * math.sqrt(2) * 0.5 + 1e-9


def test_a_band_above_the_low_grid_limit_is_outside_the_compared_band():
    freqs, power = radial_power_spectrum(_wave(12 / 32, 0))  # 0.375 cycles/pixel: beyond 0.25
    assert math.isnan(share_below(freqs, power, 0.1))  # nothing in the band both grids hold


def test_every_octave_block_of_a_model_is_reported():
    torch.manual_seed(0)
    model = octzoo.create_model("oct_resnet20", alpha=0.5).train()
    images = torch.randn(4, 3, 32, 32)
    spectra = octave_spectra(model, images)
    blocks = [n for n, m in model.named_modules() if isinstance(m, octzoo.OctConvNormAct) and m.conv.out_split[1]]
    assert [s.name for s in spectra] == blocks and model.training
    first = spectra[0]
    assert first.channels == (8, 8)
    for _, power in first.spectra.values():
        assert torch.isclose(power.sum(), torch.tensor(1.0, dtype=torch.float64))
    shares = first.share_below(0.125)
    assert set(shares) == {"high", "low", "high_pooled"} and all(0 <= v <= 1 for v in shares.values())
    with pytest.raises(ValueError, match="no octave output"):
        octave_spectra(model, images, layers=["fc"])


def test_a_low_branch_equal_to_the_pooled_high_branch_has_its_spectrum():
    torch.manual_seed(1)
    x_h = torch.randn(2, 4, 32, 32)
    torch.testing.assert_close(
        radial_power_spectrum(pool2x(x_h), scale=0.5)[1], radial_power_spectrum(pool2x(x_h.clone()), scale=0.5)[1]
    )
    smooth = torch.nn.functional.avg_pool2d(pool2x(x_h), 3, 1, 1)  # low-passed: more energy below the cut-off
    f, p = radial_power_spectrum(smooth, scale=0.5)
    f0, p0 = radial_power_spectrum(pool2x(x_h), scale=0.5)
    assert share_below(f, p, 0.1) > share_below(f0, p0, 0.1)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model = octzoo.create_model("oct_resnet20", alpha=0.25)
    path = plot_spectra(octave_spectra(model, torch.randn(2, 3, 32, 32))[:4], tmp_path / "s.png")
    assert path.stat().st_size > 10_000


def test_the_default_cut_off_is_a_ring_of_an_8_by_8_grid():
    wave = _wave(1 / 8, 0, size=8)  # 0.125 cycles/pixel on the smallest grid of the CIFAR ResNets
    freqs, power = radial_power_spectrum(wave)
    assert share_below(freqs, power) == pytest.approx(1.0)
    freqs, power = radial_power_spectrum(_wave(2 / 8, 0, size=8))
    assert share_below(freqs, power) < 1e-12
