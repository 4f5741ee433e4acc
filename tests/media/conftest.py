"""Media test fixtures: synthetic clips written once per session (see clipgen.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.media.clipgen import write_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic clips shared by the media tests (written once per session, ~1 s in all)."""
    d = tmp_path_factory.mktemp("clips")
    return {
        # h264 + AAC (1024 samples of priming, hidden by the MP4 edit list)
        "mp4": write_clip(d / "clip.mp4"),
        # video starts 0.12 s after the audio: decode must drop the first 0.12 s of audio
        "mp4_late_video": write_clip(d / "late_video.mp4", video_start_frames=3),
        # audio starts 0.2 s after the video: decode must pad 0.2 s of leading zeros
        "mkv_late_audio": write_clip(
            d / "late_audio.mkv",
            video_codec="mpeg4",
            audio_codec="flac",
            fmt="matroska",
            audio_start_s=0.2,
        ),
        "mkv_mpeg4": write_clip(
            d / "clip.mkv", video_codec="mpeg4", audio_codec="flac", fmt="matroska"
        ),
        "webm_vp9": write_clip(
            d / "clip.webm",
            video_codec="libvpx-vp9",
            audio_codec="libopus",
            fmt="webm",
            click_s=0.8,
        ),
        "mp4_video_only": write_clip(d / "video_only.mp4", audio_codec=None),
        "m4a_audio_only": write_clip(d / "audio_only.m4a", video_codec=None, fmt="mp4"),
        "mkv_51": write_clip(
            d / "surround.mkv",
            video_codec="mpeg4",
            audio_codec="flac",
            fmt="matroska",
            channels=6,
            click_channel=3,
        ),
    }
