"""probe: stream facts of good files, and a specific MediaError reason for each kind of bad one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tests.media.clipgen import REAL_CLIPS, click_signal

from avalign.errors import MediaError
from avalign.media.probe import MediaInfo, probe
from avalign.media.remux import remux_with_audio


def test_probe_synthetic_mp4(clips: dict[str, Path]) -> None:
    info = probe(clips["mp4"])
    assert isinstance(info, MediaInfo)
    assert (info.container, info.video_codec, info.audio_codec) == ("mp4", "h264", "aac")
    assert (info.width, info.height, info.fps) == (64, 64, 25.0)
    assert (info.sample_rate, info.channels) == (48000, 1)
    assert info.has_video and info.has_audio
    assert info.duration_s == pytest.approx(2.0, abs=0.03)
    assert info.video_start_s == 0.0
    assert info.audio_start_s == 0.0  # AAC priming is hidden by the edit list
    as_json = json.loads(json.dumps(info.to_dict()))
    assert as_json["video_codec"] == "h264" and as_json["path"] == str(clips["mp4"])


def test_probe_start_times_are_first_decoded_frames(clips: dict[str, Path]) -> None:
    late_video = probe(clips["mp4_late_video"])
    assert late_video.video_start_s == pytest.approx(0.12)
    assert late_video.audio_start_s == 0.0
    late_audio = probe(clips["mkv_late_audio"])
    assert late_audio.container == "matroska"
    assert late_audio.video_start_s == 0.0
    assert late_audio.audio_start_s == pytest.approx(0.2)


def test_probe_one_sided_media_when_allowed(clips: dict[str, Path]) -> None:
    audio_only = probe(clips["m4a_audio_only"], require_video=False)
    assert not audio_only.has_video and audio_only.has_audio
    assert audio_only.video_codec is None and audio_only.fps is None
    video_only = probe(clips["mp4_video_only"], require_audio=False)
    assert video_only.has_video and not video_only.has_audio and video_only.sample_rate is None


@pytest.mark.real_av
@pytest.mark.parametrize("name", REAL_CLIPS)
def test_probe_real_clips(real_av_dir: Path, name: str) -> None:
    info = probe(real_av_dir / name)
    assert info.has_video and info.has_audio
    assert 2.0 < info.duration_s < 12.0
    assert info.width and info.height and info.fps and info.fps > 5
    assert info.sample_rate in (44100, 48000)
    assert info.video_start_s is not None and 0.0 <= info.video_start_s < 0.1


@pytest.mark.real_av
def test_probe_real_special_cases(real_av_dir: Path) -> None:
    bbb = probe(real_av_dir / "bbb_small_5ch1_lhotse.mp4")
    assert bbb.channels == 6 and bbb.audio_codec == "aac"
    avi = probe(real_av_dir / "eye_makeup_mmaction2.avi")
    assert (avi.container, avi.video_codec, avi.audio_codec) == ("avi", "mpeg4", "mp3float")
    assert avi.duration_s == pytest.approx(6.56, abs=0.01)
    vfr = probe(real_av_dir / "talking_head_1_retalking.mp4")
    assert vfr.fps == pytest.approx(22.13, abs=0.01)
    assert vfr.video_start_s == pytest.approx(507 / 15360)


# ------------------------------------------------------------------------------- bad input


def _reason(path: Path, **kwargs: object) -> MediaError:
    with pytest.raises(MediaError) as info:
        probe(path, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    err = _reason(tmp_path / "gone.mp4")
    assert err.reason == "file_not_found" and "gone.mp4" in str(err)


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    err = _reason(tmp_path / "empty.mp4")
    assert err.reason == "empty_file"
    assert str(err) == "empty.mp4: empty file (0 bytes)"


def test_random_bytes_with_mp4_extension(tmp_path: Path) -> None:
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    err = _reason(tmp_path / "noise.mp4")
    assert err.reason == "undecodable" and str(err).startswith("noise.mp4: ")


def test_truncated_mp4_moov_at_end(clips: dict[str, Path], tmp_path: Path) -> None:
    data = clips["mp4"].read_bytes()  # PyAV writes the moov after the media data
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    err = _reason(tmp_path / "cut.mp4")
    assert err.reason == "undecodable"
    assert "cut.mp4" in str(err)


def test_truncated_mp4_moov_at_start(tmp_path: Path, clips: dict[str, Path]) -> None:
    # remux writes faststart files (moov first): cut in half, the index points past the end.
    out = remux_with_audio(clips["mp4"], click_signal(16000, 2.0, 1.0), 16000, tmp_path / "fs.mp4")
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")
    (tmp_path / "fs_cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    err = _reason(tmp_path / "fs_cut.mp4")
    assert err.reason == "undecodable"
    assert "truncated" in str(err)


def test_video_only_file(clips: dict[str, Path]) -> None:
    err = _reason(clips["mp4_video_only"])
    assert err.reason == "no_audio_stream"
    assert str(err) == "video_only.mp4: no audio stream (streams: video h264)"


def test_audio_only_file(clips: dict[str, Path]) -> None:
    err = _reason(clips["m4a_audio_only"])
    assert err.reason == "no_video_stream"
    assert str(err) == "audio_only.m4a: no video stream (streams: audio aac)"


def test_too_long(clips: dict[str, Path]) -> None:
    err = _reason(clips["mp4"], max_duration_s=1.5)
    assert err.reason == "too_long"
    assert "2.00 s > limit 1.50 s" in str(err)
    assert probe(clips["mp4"], max_duration_s=2.5).duration_s < 2.5


@pytest.mark.parametrize("rate", [800, 1000, 384000])
def test_bad_sample_rate(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"odd_{rate}.wav"
    sf.write(str(path), np.zeros(rate, np.float32), rate, subtype="PCM_16")
    err = _reason(path, require_video=False)
    assert err.reason == "bad_sample_rate"
    assert f"{rate} Hz" in str(err)


def test_zero_duration_wav(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(str(path), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    assert os.path.getsize(path) > 0  # a header, no samples
    err = _reason(path, require_video=False)
    assert err.reason == "zero_duration"
