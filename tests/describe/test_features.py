"""Weights-free measurements: blind SNR, dropouts and motion energy."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.describe.features import blind_snr_db, dropouts, find_gaps, level_stats, motion_energy


def _speechlike(seconds: float = 4.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    envelope = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(float)
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 600, 900), 1))
    return (0.2 * envelope * voice).astype(np.float32)


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0])
def test_blind_snr_tracks_white_noise(snr_db):
    x = _speechlike()
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(x.size)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    assert blind_snr_db((x + noise).astype(np.float32), 16000) == pytest.approx(snr_db, abs=3.0)


def test_digital_silence_does_not_fake_a_clean_clip():
    x = _speechlike()
    rng = np.random.default_rng(2)
    noisy = x + 0.1 * rng.standard_normal(x.size).astype(np.float32)
    noisy[16000:24000] = 0.0  # a dropout must not pull the noise floor to zero
    assert blind_snr_db(noisy, 16000) < 10.0


def test_dropouts_inside_sound_are_found_but_content_silence_is_not():
    sr = 16000
    hum = 0.1 * np.sin(2 * np.pi * 220 * np.arange(3 * sr) / sr)
    hum[sr:sr + 3200] = 0.0
    (start, dur), = level_stats(hum, sr).gaps
    assert start == pytest.approx(1.0, abs=1e-3) and dur == pytest.approx(0.2, abs=1e-3)
    ticks = np.zeros(3 * sr)
    ticks[:: sr // 2] = 0.5  # mostly silence: the silence is the content
    assert dropouts(find_gaps(ticks, sr), 3.0) == []


def test_motion_energy_peaks_between_the_frames_that_change():
    frames = np.zeros((5, 4, 4, 3), np.uint8)
    frames[3:] = 255
    energy, times = motion_energy(frames, np.arange(5) / 25.0)
    assert int(np.argmax(energy)) == 2 and times[2] == pytest.approx(0.1)
