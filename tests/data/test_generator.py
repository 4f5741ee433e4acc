"""Procedural clips: valid MP4s, deterministic per seed, and in sync by construction."""

from __future__ import annotations

import time

import numpy as np
import pytest

from avalign.data.generator import CATEGORIES, GeneratedClip, generate_clip, synthesize
from avalign.media.decode import decode_audio, decode_frames
from avalign.media.probe import probe

DUR, FPS, W, H, SR = 2.0, 25.0, 96, 72, 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, GeneratedClip]:
    """One tiny clip per category (seed 1), written once for the module."""
    out = tmp_path_factory.mktemp("gen")
    return {
        cat: generate_clip(
            cat, 1, out / f"{cat}.mp4", duration_s=DUR, fps=FPS, width=W, height=H, sample_rate=SR
        )
        for cat in CATEGORIES
    }


def test_at_least_eight_categories():
    assert len(CATEGORIES) >= 8
    assert {
        "bouncing_ball",
        "metronome",
        "drum",
        "talking_mouth",
        "passing_car",
        "flashing_beacon",
        "rain",
        "fan_hum",
    } <= set(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_clip_is_valid_mp4(clips, category):
    clip = clips[category]
    info = probe(clip.path)
    assert clip.path.suffix == ".mp4"
    assert info.video_codec == "h264" and info.has_audio
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert abs(info.duration_s - DUR) <= 1 / FPS
    assert info.sample_rate == SR and info.channels == 1
    assert clip.audio.dtype == np.float32 and clip.audio.shape == (1, int(DUR * SR))
    assert len(clip.event_times_s) >= 2, "too few events for a sync test"
    assert all(0 <= t < DUR for t in clip.event_times_s)


@pytest.mark.parametrize("category", CATEGORIES)
def test_muxed_audio_is_the_clean_audio_in_place(clips, category):
    """The container adds no shift: decoded sample n is generated sample n (16-bit rounding)."""
    clip = clips[category]
    decoded = decode_audio(clip.path, sample_rate=SR).samples
    assert decoded.shape[1] >= clip.audio.shape[1]
    np.testing.assert_allclose(decoded[:, : clip.audio.shape[1]], clip.audio, atol=1e-4)


@pytest.mark.parametrize("category", CATEGORIES)
def test_events_are_seen_and_heard_at_the_event_times(clips, category):
    """Frame differences peak within +-1 frame of each event, and the sound starts there."""
    clip = clips[category]
    frames = decode_frames(clip.path, max_side=None).frames.astype(np.float32)
    assert frames.shape[0] == int(DUR * FPS)
    motion = np.concatenate([[0.0], np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))])
    baseline = np.median(motion[1:])
    near, peaks = 0, []
    for t in clip.event_times_s:
        f = int(round(t * FPS))
        lo, hi = max(1, f - 3), min(len(motion), f + 4)
        near += (lo + int(np.argmax(motion[lo:hi]))) in (f - 1, f, f + 1)
        peaks.append(motion[max(1, f - 1) : f + 2].max())
    n = len(clip.event_times_s)
    assert near >= 0.6 * n, f"motion peaks near only {near}/{n} events"
    assert np.mean(peaks) >= 1.4 * baseline + 1e-3, "event frames move no more than the rest"

    audio = clip.audio[0].astype(np.float64)
    heard = 0
    for t in clip.event_times_s:
        s = int(round(t * SR))
        after = np.mean(audio[s : s + int(0.02 * SR)] ** 2)
        before = np.mean(audio[max(0, s - int(0.03 * SR)) : max(1, s - int(0.005 * SR))] ** 2)
        heard += after > 2 * before
    assert heard >= 0.7 * n, f"sound onset at only {heard}/{n} events"


def test_deterministic_per_seed(tmp_path):
    a = synthesize("drum", 11, duration_s=DUR, width=W, height=H)
    b = synthesize("drum", 11, duration_s=DUR, width=W, height=H)
    c = synthesize("drum", 12, duration_s=DUR, width=W, height=H)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.event_times_s == b.event_times_s
    assert a.event_times_s != c.event_times_s  # another seed, other (irregular) events

    g1 = generate_clip("passing_car", 5, tmp_path / "a.mp4", duration_s=DUR, width=W, height=H)
    g2 = generate_clip("passing_car", 5, tmp_path / "b.mp4", duration_s=DUR, width=W, height=H)
    assert g1.path.read_bytes() == g2.path.read_bytes(), (
        "x264 output must be byte-identical per seed"
    )
    f1 = decode_frames(g1.path, max_side=None).frames
    f2 = decode_frames(g2.path, max_side=None).frames
    assert np.array_equal(f1, f2)


def test_events_are_irregular():
    """Unequal gaps between events: a periodic train would give AV cross-correlation many peaks."""
    for cat in CATEGORIES:
        ev = np.array(synthesize(cat, 3, duration_s=4.0, width=W, height=H).event_times_s)
        gaps = np.diff(ev)
        assert gaps.size >= 2 and gaps.std() > 0.005, f"{cat}: events too regular {gaps}"


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown category"):
        synthesize("volcano", 0)
    with pytest.raises(ValueError, match="even"):
        synthesize("drum", 0, width=95)


def test_generation_is_fast(tmp_path):
    """A default 4 s 160x120 clip (draw, voice, encode, mux) in well under a second (best of 2)."""
    times = []
    for i in range(2):
        t0 = time.perf_counter()
        generate_clip("talking_mouth", i, tmp_path / f"t{i}.mp4")
        times.append(time.perf_counter() - t0)
    assert min(times) < 1.0, f"generation took {min(times):.2f}s"
