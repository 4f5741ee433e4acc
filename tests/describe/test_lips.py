"""Lip-landmark sync: synthetic opening series, then the real talking heads (../shared/data/real_av)."""

from __future__ import annotations

import numpy as np
import pytest

from avalign.agent.summary import shift
from avalign.describe import lips
from avalign.describe.features import onset_envelope
from avalign.describe.sync import SPEECH_BAND_HZ, estimate_fused, estimate_lips

SR, FPS, DUR = 16000, 25.0, 6.0


def _syllables(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.3, DUR - 0.6, size=14))


def _voice(onsets: np.ndarray, offset_ms: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(DUR * SR)) / SR
    x = 0.002 * rng.standard_normal(t.size)
    for o in onsets + offset_ms / 1000.0:
        on = (t >= o) & (t < o + 0.18)
        x[on] += 0.3 * np.sin(2 * np.pi * 800 * t[on]) * np.exp(-(t[on] - o) / 0.08)
    return x.astype(np.float32)


def _opening(onsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(int(DUR * FPS)) / FPS
    opening = np.full(times.size, 0.02)
    for o in onsets:  # the mouth opens with the syllable and closes over ~0.2 s
        k = int(np.ceil(o * FPS - 1e-9))
        for j, v in enumerate((0.10, 0.08, 0.05, 0.03)):
            if k + j < times.size:
                opening[k + j] = max(opening[k + j], v)
    return opening, times


@pytest.mark.parametrize("offset_ms", [-300, -80, 0, 120, 500])
def test_recovers_offset_from_a_lip_opening_series(offset_ms):
    onsets = _syllables(0)
    opening, times = _opening(onsets)
    env = onset_envelope(_voice(onsets, offset_ms), SR, band_hz=SPEECH_BAND_HZ)
    est = estimate_lips(env, opening, times, DUR)
    assert est.known and est.method == "lips", est
    assert abs(est.offset_ms - offset_ms) <= 40.0, est
    assert est.confidence >= 0.5


def test_no_face_or_unrelated_voice_is_cannot_tell():
    opening, times = _opening(_syllables(0))
    for seed in (7, 8, 9, 10):  # other speakers' syllable timings
        env = onset_envelope(_voice(_syllables(seed), 0.0), SR, band_hz=SPEECH_BAND_HZ)
        assert not estimate_lips(env, opening, times, DUR).known, seed
    env = onset_envelope(_voice(_syllables(7), 0.0), SR, band_hz=SPEECH_BAND_HZ)
    nothing = estimate_lips(env, np.full(times.size, np.nan), times, DUR)
    assert not nothing.known and nothing.confidence == 0.0


def test_lip_opening_is_nan_without_a_face():
    frames = np.full((10, 64, 64, 3), 128, dtype=np.uint8)
    assert np.isnan(lips.lip_opening(frames)).all()


@pytest.fixture(scope="module")
def talking_head(real_av_dir):
    from avalign.media.decode import decode_audio, decode_frames

    if not lips.available():
        pytest.skip("mediapipe face mesh not importable")
    path = real_av_dir / "talking_head_3_retalking.mp4"
    audio = decode_audio(path, sample_rate=16000).samples[0]
    video = decode_frames(path, sample_fps=25.0, max_side=160)  # the loop's own decode settings
    return audio, video


def test_lip_opening_follows_a_real_face(talking_head):
    _, video = talking_head
    opening = lips.lip_opening(video.frames)
    assert np.mean(~np.isnan(opening)) > 0.9
    assert np.nanmax(opening) > 2 * np.nanmin(opening)  # the mouth opens and closes while speaking


@pytest.mark.parametrize("offset_ms", [-500, -200, 80, 200])
def test_real_talking_head_offsets_are_recovered_within_one_frame(talking_head, offset_ms):
    audio, video = talking_head
    est = estimate_fused(shift(audio, offset_ms), SR, video.frames, video.times_s, speech_s=4.0)
    assert est.method == "lips" and est.known, est
    assert abs(est.offset_ms - offset_ms) <= 40.0, est


@pytest.mark.parametrize("offset_ms", [0, 200])
def test_voice_over_a_visible_face_is_cannot_tell(real_av_dir, offset_ms):
    """The eye-makeup clip: a face on screen, a narration not spoken by its lips."""
    from avalign.media.decode import decode_audio, decode_frames

    if not lips.available():
        pytest.skip("mediapipe face mesh not importable")
    path = real_av_dir / "eye_makeup_mmaction2.avi"
    audio = decode_audio(path, sample_rate=16000).samples[0]
    video = decode_frames(path, sample_fps=25.0, max_side=160)
    est = estimate_fused(shift(audio, offset_ms), SR, video.frames, video.times_s, speech_s=4.0)
    assert est.method == "lips" and not est.known, est
