"""Figures for MLflow: real PNGs from real arrays, and clips that cannot be read are skipped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from avalign.tracking.plots import clip_spectrograms, score_histogram_png, spectrogram_pair_png

PNG = b"\x89PNG\r\n\x1a\n"
RATE = 16000


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_spectrogram_pair_accepts_stereo_and_mono(tmp_path):
    rng = np.random.default_rng(1)
    before = rng.standard_normal((2, RATE)).astype(np.float32) * 0.1
    after = np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32) * 0.3
    out = spectrogram_pair_png(before, after, RATE, "clip", tmp_path / "deep" / "pair.png")
    assert _png_size(out) == (800, 540)


def test_spectrogram_pair_of_a_very_short_clip(tmp_path):
    out = spectrogram_pair_png(np.zeros(10), np.zeros(10), RATE, "tiny", tmp_path / "tiny.png")
    assert out.is_file()
    with pytest.raises(ValueError, match="shape"):
        spectrogram_pair_png(np.zeros((1, 2, 3)), np.zeros(10), RATE, "bad", tmp_path / "bad.png")


def test_histogram_leaves_out_missing_scores(tmp_path):
    out = score_histogram_png(
        [0.2, None, np.nan, 0.4], [0.9, 0.95, None, 1.0], "alignment", tmp_path / "h.png"
    )
    assert _png_size(out) == (600, 360)


def test_clip_spectrograms_skip_unreadable_media(tmp_path):
    t = np.arange(RATE) / RATE
    sf.write(tmp_path / "src.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE)
    sf.write(tmp_path / "out.wav", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), RATE)
    frame = pd.DataFrame(
        {
            "clip_id": ["good", "gone", "kept"],
            "outcome": ["improved", "improved", "kept_original"],
            "source_uri": [
                str(tmp_path / "src.wav"),
                str(tmp_path / "missing.wav"),
                str(tmp_path / "src.wav"),
            ],
            "audio_uri": [str(tmp_path / "out.wav"), str(tmp_path / "out.wav"), None],
            "actions": ["gain", "gain", ""],
            "alignment_before": [0.5, 0.1, 0.5],
            "alignment_after": [0.7, 0.9, 0.5],
        }
    )
    made = clip_spectrograms(frame, tmp_path / "spec", max_clips=3)
    assert [p.name for p in made] == ["good.png"]  # "gone" had the larger gain but no source
    assert clip_spectrograms(frame, tmp_path / "none", max_clips=0) == []
