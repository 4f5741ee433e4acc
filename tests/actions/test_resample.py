"""Band-limited interpolation: accuracy on sines, zeros outside, x4 oversampling."""

from __future__ import annotations

import math

import pytest
import torch

from avalign.actions.resample import (
    ROLLOFF,
    interpolate,
    interpolate_rational,
    nearest_fraction,
    oversample,
)

from .conftest import SR


def _sine(freq: float, positions: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * positions.double() / SR)


@pytest.mark.parametrize("step", [0.9, 1.0, 1.1, 2 ** (2 / 12)])
def test_interpolate_sine_accurately(step: float) -> None:
    x = _sine(440.0, torch.arange(SR, dtype=torch.float64)).float()[None]
    positions = torch.arange(int(SR / step) - 40, dtype=torch.float64) * step
    y = interpolate(x, positions, cutoff=ROLLOFF * min(1.0, 1 / step))
    err = (y[0].double() - _sine(440.0, positions))[40:]
    assert err.abs().max() < 1e-3


def test_interpolate_outside_is_zero_and_integer_positions_exact() -> None:
    x = torch.randn(2, 200)
    assert torch.allclose(interpolate(x, torch.arange(200, dtype=torch.float64)), x, atol=1e-6)
    far = interpolate(x, torch.tensor([-500.0, -40.0, 260.0, 1e7], dtype=torch.float64))
    assert torch.count_nonzero(far) == 0


def test_oversample_reconstructs_between_samples() -> None:
    x = _sine(3000.0, torch.arange(SR, dtype=torch.float64)).float()[None]
    up = oversample(x, 4)
    ref = _sine(3000.0, torch.arange(4 * SR, dtype=torch.float64) / 4)
    assert (up[0].double() - ref)[200:-200].abs().max() < 1e-3


@pytest.mark.parametrize(("p", "q"), [(11, 10), (9, 10), (55, 49), (49, 55), (283, 212)])
def test_interpolate_rational_reads_sines_at_n_p_over_q(p: int, q: int) -> None:
    t = torch.arange(SR, dtype=torch.float64)
    x = (_sine(440.0, t) + 0.5 * _sine(3000.0, t)).float()[None]
    n_out = int(SR * q / p) - 40
    positions = torch.arange(n_out, dtype=torch.float64) * p / q
    y = interpolate_rational(x, p, q, n_out, cutoff=ROLLOFF * min(1.0, q / p))
    err = (y[0].double() - _sine(440.0, positions) - 0.5 * _sine(3000.0, positions))[40:]
    assert err.abs().max() < 1e-3


def test_nearest_fraction_smallest_within_tolerance() -> None:
    cent = 2 ** (1 / 1200) - 1
    assert nearest_fraction(2 ** (2 / 12), 0.1 * cent, 512) == (55, 49)
    assert nearest_fraction(1.5, 0.0, 8) == (3, 2)
    assert nearest_fraction(2 ** (7 / 12), 0.1 * cent, 64) is None  # 3/2 is 2 cents off
    p, q = nearest_fraction(2 ** (-5 / 12), 0.1 * cent, 512)
    assert abs(p / q / 2 ** (-5 / 12) - 1) <= 0.1 * cent and max(p, q) <= 512
    with pytest.raises(ValueError):
        nearest_fraction(-1.0, 0.1, 10)
