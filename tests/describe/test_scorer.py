"""The reflection scorer: scores in [0, 1] that fall with noise, offset and semantic mismatch."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from avalign.data.corruption import add_noise, apply_offset
from avalign.data.generator import synthesize
from avalign.describe.scorer import AVScorer, audio_quality


def bag_of_words(texts: list[str]) -> np.ndarray:
    """Deterministic unit-test embedder: hashed word counts (a stand-in for MiniLM)."""
    out = np.zeros((len(texts), 4096))
    for i, text in enumerate(texts):
        for word in text.lower().replace(",", " ").replace(".", " ").replace(":", " ").split():
            if word not in {"sounds", "picture"}:
                out[i, zlib.crc32(word.encode()) % 4096] += 1.0
    return out


@pytest.fixture(scope="module")
def drum():
    s = synthesize("drum", 2, duration_s=4.0, width=96, height=72)
    times = np.arange(s.frames.shape[0]) / s.fps
    return s, {"heard": "Sounds: drum, percussion.", "seen": "Picture: drum, percussion.",
               "frame_times_s": times.tolist()}


def test_clean_clip_scores_high_and_in_range(drum):
    s, ev = drum
    alignment, sync, detail = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, ev)
    assert 0.8 <= alignment <= 1.0 and 0.8 <= sync <= 1.0
    assert detail["offset_ms"] == pytest.approx(0.0, abs=40.0)


def test_offset_lowers_sync(drum):
    s, ev = drum
    late, _ = apply_offset(s.audio, s.sample_rate, 300.0)
    _, sync, detail = AVScorer(bag_of_words).score(late[0], s.frames, s.fps, ev)
    assert sync < 0.3 and detail["offset_ms"] == pytest.approx(300.0, abs=40.0)


def test_offset_lowers_alignment_through_sync(drum):
    s, ev = drum
    scorer = AVScorer(bag_of_words)
    in_sync, _, base = scorer.score(s.audio[0], s.frames, s.fps, ev)
    late, _ = apply_offset(s.audio, s.sample_rate, 300.0)
    shifted, sync, detail = scorer.score(late[0], s.frames, s.fps, ev)
    # the content term barely moves with an offset; the product falls with sync
    assert detail["content"] == pytest.approx(base["content"], abs=0.05)
    assert shifted < 0.5 * in_sync
    expected = (0.25 * detail["semantic"] + 0.75 * detail["quality"] ** 0.5) * sync
    assert shifted == pytest.approx(expected, abs=1e-3)


def test_noise_lowers_alignment(drum):
    s, ev = drum
    clean, _, _ = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, ev)
    noisy_audio, _ = add_noise(s.audio, s.sample_rate, 0.0, "white", seed=3)
    noisy, _, detail = AVScorer(bag_of_words).score(noisy_audio[0], s.frames, s.fps, ev)
    assert noisy < clean - 0.2 and detail["snr_db"] < 5.0


def test_semantic_mismatch_lowers_alignment(drum):
    s, ev = drum
    match, _, _ = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, ev)
    other = {**ev, "heard": "Sounds: applause, crowd."}
    mismatch, _, detail = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, other)
    assert detail["semantic"] == 0.0 and mismatch < match


def test_offscreen_sound_lowers_quality_in_proportion(drum):
    s, ev = drum
    clean, _, base = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, ev)
    marked, _, detail = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, {**ev, "offscreen_s": 0.5})
    assert base["q_offscreen"] == 1.0 and detail["q_offscreen"] == pytest.approx(0.75)  # 0.5 s of 4 s
    assert detail["quality"] == pytest.approx(0.75 * base["quality"], abs=1e-3) and marked < clean
    _, _, most = AVScorer(bag_of_words).score(s.audio[0], s.frames, s.fps, {**ev, "offscreen_s": 4.0})
    assert most["q_offscreen"] == 0.5  # at most halves it


def test_bad_input_is_a_clear_error(drum):
    s, ev = drum
    with pytest.raises(ValueError, match="finite"):
        AVScorer(bag_of_words).score(np.full(16000, np.nan, np.float32), s.frames, s.fps, ev)
    with pytest.raises(ValueError, match="two"):
        AVScorer(bag_of_words).score(s.audio[0], s.frames[:1], s.fps, ev)


def test_quality_components():
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    clipped = np.clip(tone * 10, -1, 1)
    assert audio_quality(clipped)["q_clipping"] < 0.5
    quiet = tone * 1e-3 + 1e-5 * rng.standard_normal(tone.size).astype(np.float32)
    assert audio_quality(quiet)["q_level"] < 0.1
