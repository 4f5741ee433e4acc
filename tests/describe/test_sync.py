"""The offset estimator recovers known offsets on synthetic events and abstains on noise."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.describe.features import motion_energy, onset_envelope, resample_series
from avalign.describe.sync import SyncEstimate, estimate_offset, sync_score

SR, FPS, DUR = 16000, 25.0, 6.0


def _events(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.3, DUR - 0.5, size=9))


def _audio(events: np.ndarray, offset_ms: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    x = 0.003 * rng.standard_normal(int(DUR * SR))
    for e in events + offset_ms / 1000.0:
        i = int(round(e * SR))
        if 0 <= i < x.size - 800:
            x[i:i + 800] += 0.5 * rng.standard_normal(800) * np.exp(-np.arange(800) / 200)
    return x.astype(np.float32)


def _frames(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(int(DUR * FPS)) / FPS
    frames = np.full((times.size, 8, 8, 3), 40, dtype=np.uint8)
    for e in events:  # a flash at the first frame at or after the event, fading over 6 frames
        k = int(np.ceil(e * FPS - 1e-9))
        for j in range(6):
            if k + j < times.size:
                frames[k + j] = np.maximum(frames[k + j], int(40 + 180 * 0.6**j))
    return frames, times


def _estimate(offset_ms: float, seed: int = 0) -> SyncEstimate:
    events = _events(seed)
    frames, times = _frames(events)
    energy, et = motion_energy(frames, times)
    motion = resample_series(energy, et, DUR)
    env = onset_envelope(_audio(events, offset_ms, seed), SR)
    return estimate_offset(env, motion)


@pytest.mark.parametrize("offset_ms", [-500, -200, -80, 0, 80, 200, 500])
def test_recovers_known_offset_within_one_frame(offset_ms):
    est = _estimate(offset_ms)
    assert est.known, est
    assert abs(est.offset_ms - offset_ms) <= 40.0, est


def test_abstains_when_audio_is_unrelated_noise():
    events = _events(3)
    frames, times = _frames(events)
    energy, et = motion_energy(frames, times)
    rng = np.random.default_rng(9)
    env = onset_envelope((0.1 * rng.standard_normal(int(DUR * SR))).astype(np.float32), SR)
    est = estimate_offset(env, resample_series(energy, et, DUR))
    assert not est.known or est.confidence < 0.5


def test_sync_score_mapping():
    assert sync_score(SyncEstimate(None, 0.0, 0.0)) == 0.5
    assert sync_score(SyncEstimate(0.0, 1.0, 0.9)) == pytest.approx(1.0)
    assert sync_score(SyncEstimate(400.0, 1.0, 0.9)) < 0.05
    assert sync_score(SyncEstimate(0.0, 0.3, 0.5)) > sync_score(SyncEstimate(200.0, 0.3, 0.5))


def _drifting_estimate(speed: float, seed: int = 0):
    """Events at picture time e are heard at e / speed (the audio plays ``speed`` times faster)."""
    from avalign.describe.sync import estimate_drift

    events = _events(seed)
    frames, times = _frames(events)
    energy, et = motion_energy(frames, times)
    env = onset_envelope(_audio(events / speed, 0.0, seed), SR)
    return estimate_drift(env, resample_series(energy, et, DUR))


@pytest.mark.parametrize("speed", [0.97, 0.98, 1.02, 1.03])
def test_drift_is_measured_to_half_a_percent(speed):
    est = _drifting_estimate(speed)
    assert est.speed is not None and abs(est.speed - speed) <= 0.0051, est
    assert est.gain >= 1.2 and abs(est.offset_ms) <= 40.0, est


def test_no_drift_in_a_steady_clip():
    est = _drifting_estimate(1.0)
    assert est.speed is None and est.gain < 1.2, est


def test_motion_acceleration_peaks_where_a_ball_bounces():
    from avalign.describe.features import motion_acceleration

    times = np.arange(50) / FPS
    phase = (times % 0.8) / 0.8
    height = 1.0 - (2.0 * phase - 1.0) ** 2  # falling under gravity, bouncing at 0, 0.8, 1.6 s
    frames = np.zeros((times.size, 40, 20, 3), dtype=np.uint8)
    for i, h in enumerate(height):
        y = int(round(34 - 28 * h))
        frames[i, y : y + 4, 8:12] = 255
    acc, at = motion_acceleration(frames, times)
    assert acc.size == times.size - 3
    peaks = at[np.argsort(acc)[-2:]]
    assert all(min(abs(p - b) for b in (0.8, 1.6)) <= 0.06 for p in peaks), peaks


def test_a_second_cue_must_not_contradict_motion_energy():
    from avalign.describe.sync import _agrees

    events = _events(0)
    frames, times = _frames(events)
    energy, et = motion_energy(frames, times)
    motion = resample_series(energy, et, DUR)
    env = onset_envelope(_audio(events, 200.0, 0), SR)
    peak = _estimate(200.0).peak_corr
    assert _agrees(env, motion, 200.0, peak)
    assert not _agrees(env, motion, -700.0, peak)
