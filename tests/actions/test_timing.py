"""Pitch, speed and shift: frequencies, lengths, positions and exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avalign.actions.resample import nearest_fraction
from avalign.actions.timing import (
    PITCH_MAX_TERM,
    PITCH_TOLERANCE_CENTS,
    _lock_reference,
    pitch_change,
    shift_samples,
    speed_change,
    time_shift,
)

from .conftest import SR, tone


def _peak_hz(x: torch.Tensor) -> float:
    y = x.reshape(-1).double().numpy()
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)), 8 * len(y)))
    return float(np.fft.rfftfreq(8 * len(y), 1 / SR)[spectrum.argmax()])


@pytest.mark.parametrize("semitones", [2.0, -2.0, 7.0])
def test_pitch_moves_sine_within_1_percent_keeps_length_and_level(semitones: float) -> None:
    x = tone(440.0, 2.0)[None]
    y = pitch_change(x, SR, semitones)
    expected = 440.0 * 2 ** (semitones / 12)
    assert y.shape == x.shape
    assert abs(_peak_hz(y) - expected) / expected < 0.01
    mid = slice(SR // 4, -SR // 4)
    assert abs(float(y[..., mid].std() / x[..., mid].std()) - 1.0) < 0.05


def test_pitch_keeps_timing_of_a_burst() -> None:
    x = torch.zeros(1, 1, 2 * SR)
    x[..., SR : SR + 1600] = tone(1000.0, 0.1)
    y = pitch_change(x, SR, 3.0)[0, 0].abs()
    env = y.reshape(-1, 160).amax(-1)  # 10 ms envelope
    loud = torch.nonzero(env > 0.25).flatten()
    assert abs(int(loud[0]) - 100) <= 2 and abs(int(loud[-1]) - 109) <= 2


@pytest.mark.parametrize("factor", [1.25, 0.8])
def test_speed_keeps_length_and_moves_click(factor: float) -> None:
    x = torch.zeros(1, 1, 2 * SR)
    click = 12000
    x[..., click] = 1.0
    y = speed_change(x, SR, factor)
    assert y.shape == x.shape
    assert abs(int(y[0, 0].abs().argmax()) - click / factor) <= 1


def test_speed_up_leaves_silent_tail_and_one_is_identity() -> None:
    x = tone(300.0, 1.0)[None]
    y = speed_change(x, SR, 1.25)
    assert torch.count_nonzero(y[..., int(SR / 1.25) + 1 :]) == 0
    assert torch.equal(speed_change(x, SR, 1.0), x)


@pytest.mark.parametrize("factor", [1.1, 1.25, 0.9, 2.0])
def test_speed_compiled_placement_equals_the_torch_ops(
    factor: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the polyphase phases interleaved, the tail fade and the silent tail in one compiled pass
    from avalign.actions import timing

    if timing._compiled_placement() is None:
        pytest.skip("numba not installed: only the torch ops run")
    x = torch.randn(3, 2, SR + 7)
    fast = speed_change(x, SR, factor)
    monkeypatch.setattr(timing, "_compiled_placement", lambda: None)
    plain = speed_change(x, SR, factor)
    assert torch.equal(fast, plain)
    assert bool((fast[..., timing.content_length(SR + 7, factor) :] == 0).all())


@pytest.mark.parametrize("k", [1, 37, 800, -1, -37, -800])
def test_time_shift_is_exact(k: int) -> None:
    x = torch.randn(2, 2, 4000)
    y = time_shift(x, SR, k * 1000.0 / SR)
    assert y.shape == x.shape
    if k > 0:
        assert torch.equal(y[..., k:], x[..., :-k]) and torch.count_nonzero(y[..., :k]) == 0
    else:
        assert torch.equal(y[..., :k], x[..., -k:]) and torch.count_nonzero(y[..., k:]) == 0


def test_shift_rounding_and_huge_shift() -> None:
    assert shift_samples(1.0, SR) == 16 and shift_samples(-1.0, SR) == -16
    assert shift_samples(0.03125, SR) == 1 and shift_samples(-0.03125, SR) == -1
    assert torch.count_nonzero(time_shift(torch.ones(1, 1, 100), SR, 1000.0)) == 0


def test_bad_arguments() -> None:
    x = torch.zeros(1, 1, 100)
    with pytest.raises(ValueError, match="factor"):
        speed_change(x, SR, 0.0)
    with pytest.raises(ValueError, match="factor"):
        speed_change(x, SR, -1.0)
    with pytest.raises(ValueError, match="semitones"):
        pitch_change(x, SR, 40.0)
    with pytest.raises(ValueError, match="shape"):
        time_shift(torch.zeros(100), SR, 1.0)
    with pytest.raises(ValueError, match="sample_rate"):
        pitch_change(x, 0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        speed_change(torch.full((1, 1, 10), float("nan")), SR, 1.1)


def test_lock_reference_is_the_loudest_bin_within_two() -> None:
    gen = torch.Generator().manual_seed(0)
    mag = torch.stack([torch.randperm(257, generator=gen) for _ in range(40)]).float()[None]
    _, expected = torch.nn.functional.max_pool1d(
        mag.reshape(-1, 1, 257), 5, stride=1, padding=2, return_indices=True
    )
    assert torch.equal(_lock_reference(mag), expected.reshape(mag.shape))
    silent = _lock_reference(torch.zeros(3, 257))  # ties: any bin of the window, never outside
    offsets = silent - torch.arange(257)
    assert silent.min() >= 0 and silent.max() <= 256 and offsets.abs().max() <= 2


@pytest.mark.parametrize("semitones", [19.0, -19.0])
def test_pitch_without_a_nearby_fraction_takes_the_exact_path(semitones: float) -> None:
    ratio = 2 ** (semitones / 12)
    assert nearest_fraction(ratio, 2 ** (PITCH_TOLERANCE_CENTS / 1200) - 1, PITCH_MAX_TERM) is None
    x = tone(220.0 if semitones > 0 else 880.0, 1.0)[None]
    y = pitch_change(x, SR, semitones)
    expected = (220.0 if semitones > 0 else 880.0) * ratio
    assert y.shape == x.shape and abs(_peak_hz(y) - expected) / expected < 0.01
