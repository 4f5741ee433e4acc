"""decode_audio / decode_frames: one timeline (zero = first video frame), containers, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tests.media.clipgen import REAL_CLIPS, grey_level, impulse_time

from avalign.errors import MediaError
from avalign.media.decode import AudioTrack, VideoFrames, decode_audio, decode_frames
from avalign.media.probe import probe

ONE_MS = 1e-3

# ---------------------------------------------------------------------------------- audio


def test_decode_audio_shape_and_click_time(clips: dict[str, Path]) -> None:
    track = decode_audio(clips["mp4"])
    assert isinstance(track, AudioTrack)
    assert track.samples.dtype == np.float32 and track.samples.ndim == 2
    assert track.samples.shape[0] == 1 and track.sample_rate == 16000
    assert track.duration_s == pytest.approx(2.0, abs=0.03)
    # AAC priming (1024 samples = 21 ms at 48 kHz) must not delay the click.
    assert abs(impulse_time(track.samples, 16000) - 1.0) <= ONE_MS


def test_decode_audio_native_rate_and_channels(clips: dict[str, Path]) -> None:
    track = decode_audio(clips["mkv_mpeg4"], sample_rate=None, mono=False)
    assert track.sample_rate == 48000 and track.samples.shape == (1, 96000)
    assert impulse_time(track.samples, 48000) == 1.0  # FLAC: sample exact


@pytest.mark.parametrize(
    ("clip", "expected_s"), [("mp4", 1.0), ("mkv_mpeg4", 1.0), ("webm_vp9", 0.8)]
)
def test_click_lands_where_it_was_written(
    clips: dict[str, Path], clip: str, expected_s: float
) -> None:
    track = decode_audio(clips[clip])
    assert abs(impulse_time(track.samples, 16000) - expected_s) <= ONE_MS


def test_video_starting_late_drops_leading_audio(clips: dict[str, Path]) -> None:
    # Video's first frame at 0.12 s, audio from 0: timeline zero is 0.12 s on the file clock.
    track = decode_audio(clips["mp4_late_video"])
    assert abs(impulse_time(track.samples, 16000) - (1.0 - 0.12)) <= ONE_MS
    assert track.duration_s == pytest.approx(2.0 - 0.12, abs=0.03)


def test_audio_starting_late_is_padded_with_zeros(clips: dict[str, Path]) -> None:
    track = decode_audio(clips["mkv_late_audio"])
    lead = int(0.2 * 16000)
    assert np.all(track.samples[:, : lead - 16] == 0.0)
    assert abs(impulse_time(track.samples, 16000) - 1.2) <= ONE_MS


def test_audio_only_file_starts_at_its_own_start(clips: dict[str, Path]) -> None:
    track = decode_audio(clips["m4a_audio_only"])
    assert abs(impulse_time(track.samples, 16000) - 1.0) <= ONE_MS


def test_surround_downmix_averages_channels(clips: dict[str, Path]) -> None:
    multi = decode_audio(clips["mkv_51"], sample_rate=None, mono=False)
    assert multi.samples.shape[0] == 6
    assert np.argmax(np.abs(multi.samples).max(axis=1)) == 3  # click only on channel 3
    mono = decode_audio(clips["mkv_51"], sample_rate=None)
    assert mono.samples.shape[0] == 1
    np.testing.assert_allclose(mono.samples[0], multi.samples.mean(axis=0), atol=1e-6)
    assert mono.samples.max() == pytest.approx(0.9 / 6, abs=1e-3)


def test_resampling_is_deterministic(clips: dict[str, Path]) -> None:
    a = decode_audio(clips["mp4"], sample_rate=22050)
    b = decode_audio(clips["mp4"], sample_rate=22050)
    assert a.sample_rate == 22050
    np.testing.assert_array_equal(a.samples, b.samples)
    assert abs(impulse_time(a.samples, 22050) - 1.0) <= ONE_MS


def test_decode_audio_wav_formats(tmp_path: Path) -> None:
    x = np.zeros((2, 8000), np.float32)
    x[0, 4000] = 0.5
    x[1, 4000] = -0.25
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"):
        path = tmp_path / f"{subtype}.wav"
        sf.write(str(path), x.T, 8000, subtype=subtype)
        track = decode_audio(path, sample_rate=None, mono=False)
        np.testing.assert_allclose(track.samples, x, atol=1 / 127, err_msg=subtype)


# ----------------------------------------------------------------------------- real clips


@pytest.mark.real_av
@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_clip_decodes(real_av_dir: Path, name: str) -> None:
    path = real_av_dir / name
    info = probe(path)
    track = decode_audio(path)
    assert track.sample_rate == 16000 and track.samples.shape[0] == 1
    assert np.isfinite(track.samples).all() and np.abs(track.samples).max() > 0
    assert abs(track.duration_s - info.duration_s) < 0.2
    frames = decode_frames(path, sample_fps=2, max_frames=6)
    assert isinstance(frames, VideoFrames)
    assert frames.frames.dtype == np.uint8 and frames.frames.shape[-1] == 3
    assert (
        len(frames) == min(6, int(info.duration_s * 2) + 1) and max(frames.frames.shape[1:3]) == 256
    )
    assert (frames.width, frames.height) == (info.width, info.height)
    assert frames.times_s[0] == 0.0 and np.all(np.diff(frames.times_s) > 0.4)


@pytest.mark.real_av
def test_real_51_downmix(real_av_dir: Path) -> None:
    path = real_av_dir / "bbb_small_5ch1_lhotse.mp4"
    multi = decode_audio(path, sample_rate=None, mono=False)
    assert multi.samples.shape[0] == 6 and multi.sample_rate == 48000
    mono = decode_audio(path, sample_rate=None)
    np.testing.assert_allclose(mono.samples[0], multi.samples.mean(axis=0), atol=1e-6)


@pytest.mark.real_av
def test_real_avi_mpeg4_mp3(real_av_dir: Path) -> None:
    path = real_av_dir / "eye_makeup_mmaction2.avi"
    track = decode_audio(path, sample_rate=None, mono=False)
    assert track.samples.shape[0] == 2 and track.sample_rate == 44100
    frames = decode_frames(path, max_side=None, max_frames=3)
    assert frames.frames.shape == (3, 240, 320, 3)
    assert frames.fps == 25.0
    np.testing.assert_allclose(frames.times_s, [0.0, 0.04, 0.08])


@pytest.mark.real_av
def test_real_vfr_frame_times_are_not_uniform(real_av_dir: Path) -> None:
    frames = decode_frames(real_av_dir / "talking_head_1_retalking.mp4", max_side=32)
    steps = np.diff(frames.times_s)
    assert np.all(steps > 0)
    assert steps.max() - steps.min() > 0.005  # variable frame rate
    assert frames.fps == pytest.approx(22.13, abs=0.01)
    assert frames.times_s[-1] == pytest.approx(len(frames) / frames.fps, rel=0.05)


# --------------------------------------------------------------------------------- frames


def test_decode_frames_all_frames(clips: dict[str, Path]) -> None:
    frames = decode_frames(clips["mp4"])
    assert frames.frames.shape == (50, 64, 64, 3)
    np.testing.assert_allclose(frames.times_s, np.arange(50) / 25.0)
    assert (frames.fps, frames.width, frames.height) == (25.0, 64, 64)


def test_decode_frames_samples_by_pts(clips: dict[str, Path]) -> None:
    frames = decode_frames(clips["mp4"], sample_fps=5)
    np.testing.assert_allclose(frames.times_s, np.arange(10) * 0.2)
    # the right source frames: frame k*5 has grey level grey_level(5k)
    levels = frames.frames[:, 32, 32, 0].astype(int)
    expected = [grey_level(5 * k) for k in range(10)]
    assert np.all(np.abs(levels - expected) <= 3)


def test_decode_frames_times_relative_to_first_frame(clips: dict[str, Path]) -> None:
    frames = decode_frames(clips["mp4_late_video"], sample_fps=5, max_frames=3)
    np.testing.assert_allclose(frames.times_s, [0.0, 0.2, 0.4])


def test_decode_frames_max_frames_and_downscale(tmp_path: Path) -> None:
    from tests.media.clipgen import write_clip

    path = write_clip(tmp_path / "wide.mp4", size=(128, 72), duration_s=1.0, audio_codec=None)
    frames = decode_frames(path, max_side=32, max_frames=4)
    assert frames.frames.shape == (4, 18, 32, 3)  # aspect kept, longest side 32
    assert (frames.width, frames.height) == (128, 72)
    assert decode_frames(path, max_side=1000, max_frames=1).frames.shape == (
        1,
        72,
        128,
        3,
    )  # no upscale


def test_decode_frames_vp9_webm(clips: dict[str, Path]) -> None:
    frames = decode_frames(clips["webm_vp9"], sample_fps=1)
    np.testing.assert_allclose(frames.times_s, [0.0, 1.0])


@pytest.mark.parametrize("kwargs", [{"sample_fps": 0}, {"max_side": 0}, {"max_frames": 0}])
def test_decode_frames_rejects_bad_arguments(clips: dict[str, Path], kwargs: dict) -> None:
    with pytest.raises(ValueError):
        decode_frames(clips["mp4"], **kwargs)


# ------------------------------------------------------------------------------ bad input


def test_nan_samples(tmp_path: Path) -> None:
    x = np.zeros(16000, np.float32)
    x[100] = np.nan
    x[200] = np.inf
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(MediaError) as info:
        decode_audio(tmp_path / "nan.wav")
    assert info.value.reason == "nan_samples"
    assert "nan.wav: 2 NaN/Inf" in str(info.value)


def test_zero_samples(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16000)
    with pytest.raises(MediaError) as info:
        decode_audio(tmp_path / "empty.wav")
    assert info.value.reason == "zero_duration"


def test_stream_missing(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(clips["mp4_video_only"])
    assert info.value.reason == "no_audio_stream"
    with pytest.raises(MediaError) as info:
        decode_frames(clips["m4a_audio_only"])
    assert info.value.reason == "no_video_stream"


def test_bad_files(tmp_path: Path, clips: dict[str, Path]) -> None:
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(10_000))
    data = clips["mp4"].read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    cases = {
        "zero.mp4": "empty_file",
        "noise.mp4": "undecodable",
        "half.mp4": "undecodable",
        "missing.mp4": "file_not_found",
    }
    for name, reason in cases.items():
        for decode in (decode_audio, decode_frames):
            with pytest.raises(MediaError) as info:
                decode(tmp_path / name)
            assert info.value.reason == reason, (name, decode.__name__)
            assert name in str(info.value)


@pytest.mark.real_av
def test_truncated_avi_is_undecodable(real_av_dir: Path, tmp_path: Path) -> None:
    data = (real_av_dir / "eye_makeup_mmaction2.avi").read_bytes()
    (tmp_path / "half.avi").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as info:
        decode_audio(tmp_path / "half.avi")
    assert info.value.reason == "undecodable"
    assert "truncated" in str(info.value)


def test_too_long(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as info:
        decode_audio(clips["mp4"], max_duration_s=1.0)
    assert info.value.reason == "too_long"
    assert decode_audio(clips["mp4"], max_duration_s=3.0).duration_s < 3.0


def test_bad_sample_rate(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "low.wav"), np.zeros(1000, np.float32), 900, subtype="PCM_16")
    with pytest.raises(MediaError) as info:
        decode_audio(tmp_path / "low.wav")
    assert info.value.reason == "bad_sample_rate"


@pytest.mark.real_av
def test_corrupted_middle_is_undecodable(real_av_dir: Path, tmp_path: Path) -> None:
    # 30% of the file overwritten with noise: most packets fail to decode -> undecodable, no crash.
    data = bytearray((real_av_dir / "talking_head_2_retalking.mp4").read_bytes())
    start, length = int(len(data) * 0.3), int(len(data) * 0.3)
    data[start : start + length] = np.random.default_rng(0).bytes(length)
    path = tmp_path / "noisy.mp4"
    path.write_bytes(bytes(data))
    for decode in (decode_audio, decode_frames):
        with pytest.raises(MediaError) as info:
            decode(path)
        assert info.value.reason == "undecodable"
        assert "packets failed to decode" in str(info.value)
