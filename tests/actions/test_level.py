"""Loudness matches BS.1770 (pyloudnorm), volume lands on target, peaks respect the ceiling."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import torch

from avalign.actions import level
from avalign.actions.level import integrated_loudness, limit_true_peak, true_peak, volume_adjust

from .conftest import SR, speech_like, tone


def _pyln(x: torch.Tensor, filter_class: str = "DeMan") -> float:
    return float(pyloudnorm.Meter(SR, filter_class).integrated_loudness(x.T.double().numpy()))


def test_loudness_matches_pyloudnorm() -> None:
    x = torch.cat([speech_like(3.0), 0.3 * speech_like(3.0, seed=5)])  # stereo
    ours = float(integrated_loudness(x[None], SR)[0])
    assert abs(ours - _pyln(x)) < 0.01  # same (exact BS.1770) K-weighting
    assert abs(ours - _pyln(x, "K-weighting")) < 0.2  # pyloudnorm's RBJ approximation


@pytest.mark.parametrize("target", [-23.0, -16.0, -30.0])
def test_volume_lands_on_target_and_under_ceiling(target: float) -> None:
    x = speech_like(3.0)
    y = volume_adjust(x[None], SR, target, -1.0)[0]
    assert abs(_pyln(y) - target) < 0.1
    assert abs(_pyln(y, "K-weighting") - target) < 0.2
    assert 20 * np.log10(float(true_peak(y[None])[0])) <= -1.0 + 1e-3


def test_limiter_keeps_true_peak_under_ceiling() -> None:
    x = speech_like(3.0)
    y = volume_adjust(x[None], SR, -10.0, -1.0)  # needs ~10 dB of peak reduction
    assert 20 * np.log10(float(true_peak(y)[0])) <= -1.0 + 1e-3
    assert y.abs().max() < 1.0
    loud = tone(5000.0, 0.5, amplitude=0.999)[None]
    limited = limit_true_peak(loud, SR, -3.0)
    assert 20 * np.log10(float(true_peak(limited)[0])) <= -3.0 + 1e-3


def test_silence_is_left_alone_and_per_item_targets() -> None:
    silent = torch.zeros(1, 1, SR)
    assert torch.equal(volume_adjust(silent, SR, -23.0), silent)
    x = torch.stack([speech_like(2.0), speech_like(2.0, seed=3)])
    y = volume_adjust(x, SR, [-20.0, -30.0])
    measured = integrated_loudness(y, SR)
    assert abs(float(measured[0]) + 20.0) < 0.1 and abs(float(measured[1]) + 30.0) < 0.1


def test_bad_targets() -> None:
    with pytest.raises(ValueError, match="peak_ceiling_db"):
        volume_adjust(torch.zeros(1, 1, 100), SR, -23.0, 3.0)
    with pytest.raises(ValueError, match="target_lufs"):
        volume_adjust(torch.zeros(1, 1, 100), SR, float("inf"))


def test_true_peak_above_a_floor_is_exact_where_it_matters() -> None:
    from avalign.actions.level import _true_peak_above

    x = speech_like(2.0).repeat(3, 1, 1) * torch.tensor([0.2, 0.5, 1.0]).view(-1, 1, 1)
    exact = true_peak(x)
    floor = torch.full((3,), float(exact[1]) * 0.99)
    above = _true_peak_above(x, floor)
    assert torch.equal(above[1:], exact[1:])  # above the floor: exact
    assert float(above[0]) <= float(floor[0])  # below it: no more than the floor


def test_compiled_weighted_energy_equals_sosfilt(monkeypatch: pytest.MonkeyPatch) -> None:
    if level._compiled_energy() is None:
        pytest.skip("numba is not installed")
    x = torch.randn(3, 2, 20000, generator=torch.Generator().manual_seed(2)) * 0.3
    # blocks at 16 kHz (1.25 s), one block at 48 kHz, shorter than a block (a single "block")
    for clip, sample_rate in ((x, 16000), (x, 48000), (x[..., :1000], 16000)):
        compiled = level.block_energies(clip, sample_rate)
        monkeypatch.setattr(level, "_compiled_energy", lambda: None)
        reference = level.block_energies(clip, sample_rate)
        monkeypatch.undo()
        assert compiled.dtype == torch.float64 and compiled.shape == reference.shape
        assert torch.allclose(compiled, reference, rtol=1e-9, atol=0.0)


def _peak_cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return {
        "noise": 0.1 * torch.randn(2, 1, 40000, generator=g),  # sparse peaks: the scan prunes
        "speech stereo": torch.stack([speech_like(2.0), 0.5 * speech_like(2.0, seed=7)])[None, :, 0],
        "loud tone": tone(5000.0, 0.5, amplitude=0.999)[None],  # dense: handed to the convolution
        "short": torch.randn(3, 2, 40, generator=g),
        "one sample": torch.randn(1, 1, 1, generator=g),
    }


def test_compiled_true_peak_equals_the_convolution() -> None:
    if level._compiled_true_peak() is None:
        pytest.skip("numba is not installed")
    for name, x in _peak_cases().items():
        exact = level._true_peak_torch(x, None)
        assert torch.allclose(level._true_peak_above(x, None), exact, rtol=1e-6, atol=0.0), name
        # a floor below the peak changes nothing; one above it caps what may be reported
        assert torch.allclose(level._true_peak_above(x, 0.9 * exact), exact, rtol=1e-6, atol=0.0), name
        capped = level._true_peak_above(x, 1.2 * exact)
        sample_peak = x.abs().flatten(1).amax(-1)
        assert bool((capped <= torch.maximum(1.2 * exact, sample_peak)).all()), name


def _clicks(half: int) -> torch.Tensor:
    """Quiet noise with clicks at both ends and pairs just inside and outside one region's reach."""
    x = 0.01 * torch.randn(1, 1, 12000, generator=torch.Generator().manual_seed(9))
    for at in (0, 3, 2000, 2000 + 4 * half, 6000, 6000 + 4 * half + 1, 11999):
        x[0, 0, at] = 0.9
    return x


def test_compiled_limiter_equals_the_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The regions-only gain and true-peak check against the whole-clip torch ops."""
    if level._compiled_apply_limiter() is None:
        pytest.skip("numba is not installed")
    for name, x in {**_peak_cases(), "clicks": _clicks(level._limiter_half(SR))}.items():
        for scale in (1.0, 3.0):
            loud = x * scale
            compiled = limit_true_peak(loud, SR, -2.0)
            with monkeypatch.context() as patch:
                patch.setattr(level, "_compiled_apply_limiter", lambda: None)
                reference = limit_true_peak(loud, SR, -2.0)
            assert torch.allclose(compiled, reference, rtol=0.0, atol=1e-6), (name, scale)
            assert float(true_peak(compiled).max()) <= 10 ** (-2.0 / 20) * (1 + 1e-6), (name, scale)
    quiet = 0.01 * torch.ones(1, 1, 1000)
    assert torch.equal(limit_true_peak(quiet, SR, -2.0), quiet)


def test_envelope_points_serve_every_smaller_gain() -> None:
    """volume_adjust scans a clip once, at the largest gain it may try, and limits at each gain."""
    if level._compiled_apply_limiter() is None:
        pytest.skip("numba is not installed")
    x = torch.cat([speech_like(0.75)[None], 0.5 * _clicks(160)])  # 12000 samples each
    lin = np.array([10 ** (-1 / 20), 10 ** (-3 / 20)])
    half = level._limiter_half(SR)
    largest = np.array([8.0, 4.0])
    target = lin * 10.0 ** (-level._LIMIT_MARGIN_DB / 20.0)
    points = level._envelope_points(x, target / largest)
    for gains in (np.array([1.0, 1.0]), np.array([3.0, 2.5]), largest):
        reused = level._limit_gained(x, gains, lin, half, points)
        gained = x * torch.from_numpy(gains).float().view(-1, 1, 1)
        fresh = limit_true_peak(gained, SR, [-1.0, -3.0])
        assert torch.allclose(reused, fresh, rtol=0.0, atol=1e-6), gains
        assert bool((true_peak(reused).double() <= torch.from_numpy(lin) * (1 + 1e-6)).all()), gains


def test_volume_without_numba_matches_the_compiled_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch ops (CUDA, or no numba) and the compiled scan limit alike, to float32 rounding."""
    if level._compiled_apply_limiter() is None:
        pytest.skip("numba is not installed")
    x = torch.stack([speech_like(2.0), speech_like(2.0, seed=3), 0.3 * speech_like(2.0, seed=4)])
    targets, ceilings = [-10.0, -14.0, -23.0], [-1.0, -2.0, -1.0]
    compiled = volume_adjust(x, SR, targets, ceilings)
    monkeypatch.setattr(level, "_compiled_apply_limiter", lambda: None)
    reference = volume_adjust(x, SR, targets, ceilings)
    assert torch.allclose(compiled, reference, rtol=0.0, atol=2e-6)
    peaks_db = 20 * torch.log10(true_peak(compiled).double())
    assert bool((peaks_db <= torch.tensor(ceilings, dtype=torch.float64) + 1e-4).all())


def test_compiled_gates_equal_the_numpy_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    if level._compiled_gated_loudness() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(3)
    z = rng.random((4, 97)) ** 4 * 1e-2  # energies spanning ~80 dB: both gates drop blocks
    z[1] = 0.0  # silent: -inf
    z[2, :90] = 1e-12  # all but 7 blocks under the absolute gate
    gains = np.array([1.0, 2.0, 0.5, 10.0])
    compiled = level._gated_loudness(z, gains)
    monkeypatch.setattr(level, "_compiled_gated_loudness", lambda: None)
    reference = level._gated_loudness(z, gains)
    assert np.isneginf(compiled[1]) and np.isneginf(reference[1])
    finite = np.isfinite(reference)
    assert np.allclose(compiled[finite], reference[finite], rtol=0, atol=1e-9)
