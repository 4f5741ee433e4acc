"""Band-limited interpolation: accuracy on sines, zeros outside, x4 oversampling."""

from __future__ import annotations

import math

import pytest
import torch

from avalign.actions.resample import ROLLOFF, interpolate, oversample

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
