"""remux_with_audio: video copied bit for bit, new audio at the same time; write_audio."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from tests.media.clipgen import click_signal, impulse_time

from avalign.errors import MediaError
from avalign.media import remux as remux_module
from avalign.media.decode import decode_audio
from avalign.media.probe import probe
from avalign.media.remux import container_for, remux_with_audio, write_audio

ONE_MS = 1e-3


def video_packets(path: Path) -> list[tuple[bytes, int | None, int | None]]:
    """(bytes, pts, dts) of every video packet, pts/dts in microseconds."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                pts = (
                    None
                    if packet.pts is None
                    else round(float(packet.pts * packet.time_base) * 1e6)
                )
                dts = (
                    None
                    if packet.dts is None
                    else round(float(packet.dts * packet.time_base) * 1e6)
                )
                out.append((bytes(packet), pts, dts))
    return out


def moved_impulse(src: Path, out_path: Path, at_s: float, rate: int = 16000) -> tuple[Path, float]:
    """Decode src, add an impulse at ``at_s``, remux, decode: (output, impulse error in s)."""
    track = decode_audio(src, sample_rate=rate)
    x = track.samples * 0.1
    x[:, int(round(at_s * rate))] = 1.0
    out = remux_with_audio(src, x, rate, out_path)
    back = decode_audio(out, sample_rate=rate)
    return out, impulse_time(back.samples, rate) - at_s


@pytest.mark.parametrize(
    ("clip", "suffix"),
    [("mp4", ".mp4"), ("mp4_late_video", ".mp4"), ("mkv_mpeg4", ".mkv"), ("webm_vp9", ".mkv")],
)
def test_impulse_round_trip(clips: dict[str, Path], tmp_path: Path, clip: str, suffix: str) -> None:
    out, error_s = moved_impulse(clips[clip], tmp_path / f"out{suffix}", at_s=0.7321)
    assert out.suffix == suffix
    assert abs(error_s) <= ONE_MS, f"{clip}: impulse moved by {error_s * 1e3:.3f} ms"


def test_round_trip_keeps_samples(clips: dict[str, Path], tmp_path: Path) -> None:
    # FLAC is lossless: what comes back is the input up to 16-bit quantisation, at the same time.
    track = decode_audio(clips["mp4_late_video"], sample_rate=16000)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, track.samples.shape).astype(np.float32)
    out = remux_with_audio(clips["mp4_late_video"], x, 16000, tmp_path / "noise.mp4")
    back = decode_audio(out, sample_rate=16000)
    assert back.samples.shape == x.shape
    np.testing.assert_allclose(back.samples, x, atol=1 / 32767)


def test_stereo_native_rate(clips: dict[str, Path], tmp_path: Path) -> None:
    x = click_signal(44100, 2.0, 1.25, channels=2)
    out = remux_with_audio(clips["mkv_mpeg4"], x, 44100, tmp_path / "st.mkv")
    info = probe(out)
    assert (info.audio_codec, info.sample_rate, info.channels) == ("flac", 44100, 2)
    back = decode_audio(out, sample_rate=None, mono=False)
    assert back.samples.shape == x.shape
    assert impulse_time(back.samples, 44100) == 1.25


@pytest.mark.parametrize("clip", ["mp4", "mp4_late_video", "mkv_mpeg4", "webm_vp9"])
def test_video_packets_copied_bit_for_bit(
    clips: dict[str, Path], tmp_path: Path, clip: str
) -> None:
    out = remux_with_audio(clips[clip], click_signal(16000, 2.0, 1.0), 16000, tmp_path / "o.mp4")
    src, dst = video_packets(clips[clip]), video_packets(out)
    assert [p[0] for p in dst] == [p[0] for p in src]  # same bytes, same order
    assert [p[1] for p in dst] == pytest.approx([p[1] for p in src], abs=1000)  # pts within 1 ms


def test_container_follows_codec(clips: dict[str, Path], tmp_path: Path) -> None:
    assert container_for("h264") == ("mp4", ".mp4")
    assert container_for("hevc") == ("mp4", ".mp4")
    assert container_for("vp9") == ("matroska", ".mkv")
    assert container_for("mpeg4") == ("matroska", ".mkv")
    x = click_signal(16000, 1.0, 0.5)
    assert remux_with_audio(clips["webm_vp9"], x, 16000, tmp_path / "a.mp4").name == "a.mkv"
    assert remux_with_audio(clips["mp4"], x, 16000, tmp_path / "b.mkv").name == "b.mp4"
    assert remux_with_audio(clips["mp4"], x, 16000, tmp_path / "sub" / "c").name == "c.mp4"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.mkv", "b.mp4", "c.mp4", "sub"]


def test_mp4_output_is_faststart_with_flac(clips: dict[str, Path], tmp_path: Path) -> None:
    out = remux_with_audio(clips["mp4"], click_signal(16000, 2.0, 1.0), 16000, tmp_path / "f.mp4")
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # playable while streaming
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.width, info.fps) == ("h264", "flac", 64, 25.0)


@pytest.mark.real_av
@pytest.mark.parametrize(
    "name",
    [
        "stage_applause_videollama.mp4",  # video starts at 0.0667 s, B-frames
        "talking_head_1_retalking.mp4",  # variable frame rate, video starts at 0.033 s
        "eye_makeup_mmaction2.avi",  # mpeg4 part 2 + mp3 in AVI -> MKV
        "bbb_small_5ch1_lhotse.mp4",  # 5.1 AAC source
    ],
)
def test_real_clip_round_trip(real_av_dir: Path, tmp_path: Path, name: str) -> None:
    src = real_av_dir / name
    out, error_s = moved_impulse(src, tmp_path / "out.mp4", at_s=1.5003)
    assert abs(error_s) <= ONE_MS, f"{name}: impulse moved by {error_s * 1e3:.3f} ms"
    assert [p[0] for p in video_packets(out)] == [p[0] for p in video_packets(src)]
    before, after = probe(src), probe(out)
    assert after.video_start_s == pytest.approx(before.video_start_s, abs=ONE_MS)
    assert after.audio_start_s == pytest.approx(after.video_start_s, abs=ONE_MS)
    assert after.fps == pytest.approx(before.fps, rel=1e-3)


# ------------------------------------------------------------------------------ failures


def test_remux_failure_leaves_nothing(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous version")

    def broken_mux(*args: object, **kwargs: object) -> None:
        raise av.error.InvalidDataError(1094995529, "injected failure")

    monkeypatch.setattr(remux_module, "_mux", broken_mux)
    with pytest.raises(MediaError) as info:
        remux_with_audio(clips["mp4"], click_signal(16000, 2.0, 1.0), 16000, target)
    assert info.value.reason == "remux_failed"
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_remux_rejects_bad_audio_and_video(clips: dict[str, Path], tmp_path: Path) -> None:
    x = click_signal(16000, 1.0, 0.5)
    x[0, 10] = np.nan
    with pytest.raises(MediaError) as info:
        remux_with_audio(clips["mp4"], x, 16000, tmp_path / "nan.mp4")
    assert info.value.reason == "nan_samples"
    with pytest.raises(MediaError) as info:
        remux_with_audio(
            clips["m4a_audio_only"], click_signal(16000, 1.0, 0.5), 16000, tmp_path / "x.mp4"
        )
    assert info.value.reason == "no_video_stream"
    with pytest.raises(ValueError):
        remux_with_audio(clips["mp4"], np.zeros((9, 100), np.float32), 16000, tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- write_audio


def test_write_audio_wav_float_is_exact(tmp_path: Path) -> None:
    x = np.random.default_rng(1).uniform(-1.2, 1.2, (2, 1600)).astype(np.float32)
    path = write_audio(tmp_path / "x.wav", x, 16000)
    assert path == tmp_path / "x.wav"
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == 16000
    np.testing.assert_array_equal(data.T, x)  # float WAV keeps overs and every bit
    back = decode_audio(path, sample_rate=None, mono=False)
    np.testing.assert_array_equal(back.samples, x)


def test_write_audio_flac_and_pcm16(tmp_path: Path) -> None:
    x = click_signal(16000, 1.0, 0.25)
    flac = write_audio(tmp_path / "x.flac", x[0], 16000)  # 1-D accepted as mono
    assert sf.info(str(flac)).subtype == "PCM_24"
    pcm = write_audio(tmp_path / "y.wav", x * 2, 16000, subtype="PCM_16")  # overs clip, not wrap
    data, _ = sf.read(str(pcm), dtype="float32")
    assert data.max() == pytest.approx(1.0, abs=1e-4) and data.min() >= 0
    assert impulse_time(decode_audio(flac).samples, 16000) == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac", "y.wav"]


def test_write_audio_rejects_nan_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        write_audio(tmp_path / "n.wav", np.full((1, 10), np.nan, np.float32), 16000)
    assert info.value.reason == "nan_samples"
    with pytest.raises(ValueError):
        write_audio(tmp_path / "n.mp3", np.zeros((1, 10), np.float32), 16000)
    assert list(tmp_path.iterdir()) == []
