"""The shared noise estimate: unbiased on white noise, tracks noise under speech, batch-safe."""

from __future__ import annotations

import pytest
import torch

from avalign.actions import noise
from avalign.actions.noise import noise_psd, smooth_frames, stationary_noise_psd
from avalign.actions.spectral import istft, stft, stft_config

from .conftest import SR, add_white_noise, speech_like


def _power(x: torch.Tensor, overlap: int = 4) -> tuple[torch.Tensor, float, float]:
    cfg = stft_config(SR, overlap)
    spec = stft(x, cfg)
    window_energy = float(cfg.window(torch.device("cpu"), torch.float32).square().sum())
    return spec.abs().square(), cfg.frame_rate(SR), window_energy


@pytest.mark.parametrize("overlap,hop", [(4, 128), (2, 256)])
def test_stft_round_trip_any_length(overlap: int, hop: int) -> None:
    cfg = stft_config(SR, overlap)
    assert (cfg.n_fft, cfg.hop) == (512, hop)
    for t in (1, 100, 257, 4000):
        x = torch.randn(2, 1, t)
        assert torch.allclose(istft(stft(x, cfg), cfg, t), x, atol=1e-5)


@pytest.mark.parametrize("overlap", [4, 2])
def test_white_noise_level_is_estimated_within_1db(overlap: int) -> None:
    x = 0.1 * torch.randn(1, 1, 3 * SR, generator=torch.Generator().manual_seed(3))
    power, frame_rate, energy = _power(x, overlap)
    estimate = stationary_noise_psd(power, frame_rate, overlap=overlap)[..., 1:-1, 0] / energy
    ratio_db = 10 * torch.log10(estimate / 0.01)
    assert ratio_db.mean().abs() < 0.5
    assert ratio_db.abs().quantile(0.95) < 3.0  # per bin: each bin is a noisy statistic


@pytest.mark.parametrize("overlap", [4, 2])
def test_noise_under_speech_is_tracked_not_the_speech(overlap: int) -> None:
    clean = speech_like(3.0)
    noisy = add_white_noise(clean, 5.0)
    noise_var = float((noisy - clean).pow(2).mean())
    power, frame_rate, energy = _power(noisy[None], overlap)
    track = noise_psd(power, frame_rate, overlap=overlap)[..., 1:-1, :] / energy
    level_db = 10 * torch.log10(track.mean() / noise_var)
    assert abs(float(level_db)) < 1.5  # speech energy is 5 dB above the noise, not counted


def test_batch_equals_single() -> None:
    x = torch.randn(3, 2, 8000)
    power, frame_rate, _ = _power(x)
    batch = noise_psd(power, frame_rate)
    single = torch.cat([noise_psd(power[i : i + 1], frame_rate) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-6, rtol=1e-5)


def test_overlaps_without_a_bias_table_are_rejected() -> None:
    with pytest.raises(ValueError, match="overlap must be one of"):
        stft_config(SR, 3)
    with pytest.raises(ValueError, match="overlap must be one of"):
        noise_psd(torch.rand(1, 257, 40), 125.0, overlap=8)


@pytest.mark.parametrize("smoothing", [0.6, 0.36])
def test_compiled_smoothing_equals_the_convolution(
    smoothing: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    if noise._compiled_smoothing() is None:
        pytest.skip("numba is not installed")
    power = torch.rand(2, 1, 300, 257, generator=torch.Generator().manual_seed(5)) ** 4
    power[0, 0, :3] = 0.0  # edges and zeros: the recursions start from replicated frames
    short = power[:, :, :5]  # shorter than the kernel's half-width
    compiled = [smooth_frames(p, smoothing) for p in (power, short)]
    monkeypatch.setattr(noise, "_compiled_smoothing", lambda: None)
    convolved = [smooth_frames(p, smoothing) for p in (power, short)]
    for fast, reference in zip(compiled, convolved, strict=True):
        assert torch.allclose(fast, reference, rtol=1e-5, atol=1e-7)
