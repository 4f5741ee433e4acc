"""The shared noise estimate: unbiased on white noise, tracks noise under speech, batch-safe."""

from __future__ import annotations

import torch

from avalign.actions.noise import noise_psd, stationary_noise_psd
from avalign.actions.spectral import istft, stft, stft_config

from .conftest import SR, add_white_noise, speech_like


def _power(x: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    cfg = stft_config(SR)
    spec = stft(x, cfg)
    window_energy = float(cfg.window(torch.device("cpu"), torch.float32).square().sum())
    return spec.abs().square(), cfg.frame_rate(SR), window_energy


def test_stft_round_trip_any_length() -> None:
    cfg = stft_config(SR)
    assert (cfg.n_fft, cfg.hop) == (512, 128)
    for t in (1, 100, 257, 4000):
        x = torch.randn(2, 1, t)
        assert torch.allclose(istft(stft(x, cfg), cfg, t), x, atol=1e-5)


def test_white_noise_level_is_estimated_within_1db() -> None:
    x = 0.1 * torch.randn(1, 1, 3 * SR, generator=torch.Generator().manual_seed(3))
    power, frame_rate, energy = _power(x)
    estimate = stationary_noise_psd(power, frame_rate)[..., 1:-1, 0] / energy
    ratio_db = 10 * torch.log10(estimate / 0.01)
    assert ratio_db.mean().abs() < 0.5
    assert ratio_db.abs().quantile(0.95) < 3.0  # per bin: each bin is a noisy statistic


def test_noise_under_speech_is_tracked_not_the_speech() -> None:
    clean = speech_like(3.0)
    noisy = add_white_noise(clean, 5.0)
    noise_var = float((noisy - clean).pow(2).mean())
    power, frame_rate, energy = _power(noisy[None])
    track = noise_psd(power, frame_rate)[..., 1:-1, :] / energy
    level_db = 10 * torch.log10(track.mean() / noise_var)
    assert abs(float(level_db)) < 1.5  # speech energy is 5 dB above the noise, not counted


def test_batch_equals_single() -> None:
    x = torch.randn(3, 2, 8000)
    power, frame_rate, _ = _power(x)
    batch = noise_psd(power, frame_rate)
    single = torch.cat([noise_psd(power[i : i + 1], frame_rate) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-6, rtol=1e-5)
