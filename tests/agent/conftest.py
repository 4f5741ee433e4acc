"""Small procedural clips with known corruption, made once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avalign.data.corruption import add_noise, apply_offset
from avalign.data.generator import generate_clip
from avalign.media.decode import decode_audio
from avalign.media.remux import remux_with_audio


def _variant(src: Path, out: Path, transform) -> Path:
    audio = decode_audio(src, sample_rate=None, mono=False)
    corrupted, _ = transform(audio.samples, audio.sample_rate)
    return remux_with_audio(src, corrupted.astype(np.float32), audio.sample_rate, out)


@pytest.fixture(scope="session")
def agent_clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agent_clips")
    clean = generate_clip("drum", 3, root / "clean.mp4", duration_s=4.0, width=96, height=72).path
    return {
        "clean": Path(clean),
        "late": _variant(Path(clean), root / "late.mp4", lambda x, sr: apply_offset(x, sr, 240.0)),
        "noisy": _variant(Path(clean), root / "noisy.mp4", lambda x, sr: add_noise(x, sr, 3.0, "white", seed=1)),
    }
