"""A hostile media corpus, written on the fly into a test's folder (binaries are never committed).

Each ``Kind`` is one way a file, a file name or a manifest row has hurt media pipelines, with the
outcome the pipeline owes it: quarantine with a specific ``reason``, or normal processing.
Everything is tiny or sparse so the whole corpus is written in a few seconds: the "two hour"
files hold 7200 frames of 16x16 video at 1 fps and one audio packet every 10 s, the 10000x10000
frame is a 1-bit PNG that deflates to ~12 KB, and containers that lie get their header patched.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.media.clipgen import click_signal, grey_level, write_clip

PROCESSED = "processed"  # the partition must align it (improved or kept_original)
ACCEPTED = "accepted"  # ingest must list it in a manifest

RATE = 16000  # sample rate of the ordinary clips
TWO_HOURS_S = 7200
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1", 12: "7.1.4", 16: "hexadecagonal"}


@dataclass(frozen=True)
class Kind:
    """One hostile input: where it lives, and what ingest and the partition run must make of it."""

    name: str  # also its clip id in the partition manifest
    file_name: str  # name inside the corpus folder ("" for manifest-only kinds)
    partition: str  # quarantine reason in run_partition, or PROCESSED
    ingest: str  # reject reason in ingest, ACCEPTED, or "" when ingest never sees it
    what: str  # one line for the report table
    make: Callable[[Path], None] | None = None


# ------------------------------------------------------------------------------------- writers


def write_av(
    path: Path,
    *,
    fmt: str = "matroska",
    video_codec: str | None = "mpeg4",
    audio_codec: str | None = "flac",
    size: tuple[int, int] = (64, 64),
    fps: int = 25,
    frame_pts: Iterable[int] | None = None,
    sample_rate: int = RATE,
    channels: int = 1,
    audio: np.ndarray | None = None,
    audio_chunks: Iterable[tuple[int, np.ndarray]] | None = None,
    duration_s: float = 2.0,
    metadata: dict[str, str] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """A small clip: grey frames at ``frame_pts`` (1/fps units) and audio placed by sample pts.

    ``audio_chunks`` ((start sample, (C, n) array), ...) writes sparse audio: the gaps between
    chunks are holes in the timestamps, which is how a cheap file can span hours.
    """
    container = av.open(str(path), "w", format=fmt, options=options or {})
    if metadata:
        container.metadata.update(metadata)
    vstream = astream = None
    if video_codec:
        vstream = container.add_stream(video_codec, rate=fps)
        vstream.width, vstream.height = size
        vstream.pix_fmt = "yuv420p"
    if audio_codec:
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = _LAYOUTS[channels]
        astream.format = astream.codec_context.codec.audio_formats[0].name
    if vstream is not None:
        pts_list = list(frame_pts) if frame_pts is not None else range(round(duration_s * fps))
        img = np.zeros((size[1], size[0], 3), np.uint8)
        for k, pts in enumerate(pts_list):
            img[:] = grey_level(k)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, fps)
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode())
    if astream is not None:
        if audio_chunks is None:
            x = audio if audio is not None else click_signal(sample_rate, duration_s, 0.5, channels)
            audio_chunks = [(0, x)]
        fmt_obj = astream.codec_context.codec.audio_formats[0]
        step = astream.codec_context.frame_size or 4096
        for start, x in audio_chunks:
            for s in range(0, x.shape[1], step):
                frame = _audio_frame(x[:, s : s + step], fmt_obj, _LAYOUTS[channels])
                frame.sample_rate, frame.time_base = sample_rate, Fraction(1, sample_rate)
                frame.pts = start + s
                container.mux(astream.encode(frame))
        container.mux(astream.encode())
    container.close()
    return path


def _audio_frame(chunk: np.ndarray, fmt: av.AudioFormat, layout: str) -> av.AudioFrame:
    if fmt.name.startswith("s16"):
        data = (np.clip(chunk, -1, 1) * 32767).round().astype(np.int16)
    elif fmt.name.startswith("s32"):
        data = (np.clip(chunk, -1, 1) * 2147483647).round().astype(np.int32)
    else:
        data = chunk.astype(np.float32)  # flt: NaN and Inf go in untouched
    if not fmt.is_planar:
        data = np.ascontiguousarray(data.T).reshape(1, -1)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name, layout=layout)


def write_good(path: Path) -> Path:
    """An ordinary 2 s clip (mpeg4 + FLAC in Matroska) that the partition must process."""
    return write_av(path)


def _replace_once(data: bytes, old: bytes, new: bytes, what: str) -> bytes:
    assert len(old) == len(new), what
    if data.count(old) != 1:
        raise AssertionError(f"{what}: expected the pattern once, found it {data.count(old)} times")
    return data.replace(old, new)


def _mkv_declare_duration(path: Path, seconds: float) -> None:
    """Patch a Matroska Segment/Info/Duration (EBML 0x4489, 8-byte float in ms) to ``seconds``."""
    data = path.read_bytes()
    i = data.find(b"\x44\x89\x88")
    assert i >= 0, "no 8-byte Duration element"
    path.write_bytes(data[: i + 3] + struct.pack(">d", seconds * 1000.0) + data[i + 11 :])


def _faststart_mp4(path: Path) -> bytes:
    """h264 + AAC MP4 with its moov in front (what remuxers write), returned as bytes."""
    write_av(path, fmt="mp4", video_codec="libx264", audio_codec="aac",
             options={"movflags": "+faststart"})
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov should come first"
    return data


def _atom(data: bytes, name: bytes) -> tuple[int, int]:
    """(offset of the atom's size field, atom size) of the first atom called ``name``."""
    i = data.find(name) - 4
    assert i >= 0, name
    return i, struct.unpack(">I", data[i : i + 4])[0]


def _png(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of any size (a 10000x10000 one deflates to about 12 KB)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------- makers


def _zero_bytes(p: Path) -> None:
    p.write_bytes(b"")


def _random_bytes(p: Path) -> None:
    p.write_bytes(np.random.default_rng(7).integers(0, 256, 65536, dtype=np.uint8).tobytes())


def _truncated_mp4(p: Path) -> None:
    write_clip(p)  # moov at the end: cutting the file loses the whole index
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _truncated_faststart(p: Path) -> None:
    data = _faststart_mp4(p)  # moov intact, media data cut: the index points past the end
    p.write_bytes(data[: int(len(data) * 0.7)])


def _broken_moov(p: Path) -> None:
    data = _faststart_mp4(p)
    i, size = _atom(data, b"moov")
    noise = np.random.default_rng(11).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    p.write_bytes(data[: i + 8] + noise + data[i + size :])


def _moov_bad_offsets(p: Path) -> None:
    """Every chunk offset (stco) of every track points far past the end of the file."""
    data = bytearray(_faststart_mp4(p))
    start = 0
    while (j := data.find(b"stco", start)) >= 0:
        n = struct.unpack(">I", data[j + 8 : j + 12])[0]
        for k in range(n):
            data[j + 12 + 4 * k : j + 16 + 4 * k] = struct.pack(">I", 0x7FFF0000 + k)
        start = j + 4
    p.write_bytes(bytes(data))


def _mkv_named_mp4(p: Path) -> None:
    write_good(p)


def _mp4_named_wav(p: Path) -> None:
    write_clip(p, fmt="mp4")


def _video_only(p: Path) -> None:
    write_av(p, audio_codec=None)


def _audio_only(p: Path) -> None:
    write_av(p, video_codec=None)


def _rate_0hz(p: Path) -> None:
    """Matroska can store a 0 Hz sampling frequency; FFmpeg will not write one, so patch it."""
    write_av(p, audio_codec="pcm_s16le", sample_rate=8000)
    data = p.read_bytes()
    old = b"\xb5\x88" + struct.pack(">d", 8000.0)  # SamplingFrequency, 8-byte float
    p.write_bytes(_replace_once(data, old, b"\xb5\x88" + struct.pack(">d", 0.0), "sample rate"))


def _rate_1hz(p: Path) -> None:
    write_av(p, audio_codec="pcm_s16le", sample_rate=1, audio=np.zeros((1, 2), np.float32))


def _rate_384khz(p: Path) -> None:
    write_av(p, audio_codec="pcm_s16le", sample_rate=384_000)


def _channels_8(p: Path) -> None:
    write_av(p, channels=8)


def _channels_16(p: Path) -> None:
    write_av(p, audio_codec="pcm_s16le", channels=16)


def _nan_samples(p: Path) -> None:
    x = click_signal(RATE, 2.0, 0.5)
    x[0, 1000:1010] = np.nan
    write_av(p, audio_codec="pcm_f32le", audio=x)


def _inf_samples(p: Path) -> None:
    x = click_signal(RATE, 2.0, 0.5)
    x[0, 2000], x[0, 3000] = np.inf, -np.inf
    write_av(p, audio_codec="pcm_f32le", audio=x)


def _sparse_two_hours(p: Path, *, video_s: int = TWO_HOURS_S, audio_from_s: int = 0,
                      audio_s: int = TWO_HOURS_S, every_s: int = 10) -> None:
    """16x16 video at 1 fps and 48 kHz stereo FLAC with one 0.1 s packet every ``every_s``:
    decoded naively (holes filled with silence) the audio alone is 2.7 GB of float32."""
    rate = 48000
    chunk = np.full((2, rate // 10), 0.1, np.float32)
    chunks = [((audio_from_s + t) * rate, chunk) for t in range(0, audio_s, every_s)]
    chunks.append(((audio_from_s + audio_s) * rate - chunk.shape[1], chunk))  # the last 0.1 s
    write_av(p, size=(16, 16), fps=1, frame_pts=range(video_s), sample_rate=rate, channels=2,
             audio_chunks=chunks)


def _two_hours(p: Path) -> None:
    _sparse_two_hours(p)


def _lying_duration(p: Path) -> None:
    """Two hours of media under a header that says 2 s: only a streaming limit can stop it."""
    _sparse_two_hours(p)
    _mkv_declare_duration(p, 2.0)


def _lying_video(p: Path) -> None:
    """2 s of audio, two hours of video, header says 2 s: the frame decoder must stop itself."""
    _sparse_two_hours(p, audio_s=2, every_s=1)
    _mkv_declare_duration(p, 2.0)


def _late_audio(p: Path) -> None:
    """2 s of video, audio that starts two hours later, header says 2 s: the leading silence that
    would put the audio on the video's timeline is 2.7 GB of float32."""
    _sparse_two_hours(p, video_s=2, audio_from_s=TWO_HOURS_S, audio_s=2, every_s=1)
    _mkv_declare_duration(p, 2.0)


def _one_frame(p: Path) -> None:
    write_av(p, frame_pts=[0])


def _frame_10000(p: Path) -> None:
    """One real 10000x10000 PNG frame (a decoder would allocate 100 MP) plus 2 s of audio."""
    container = av.open(str(p), "w", format="mov")  # Matroska does not take PNG
    video = container.add_stream("png", rate=1)
    video.width = video.height = 10000
    video.pix_fmt = "monob"
    audio = container.add_stream("pcm_s16le", rate=RATE)
    audio.layout, audio.format = "mono", "s16"
    packet = av.Packet(_png(10000, 10000))
    packet.stream, packet.pts, packet.dts, packet.time_base = video, 0, 0, Fraction(1, 1)
    packet.duration = 2
    packet.is_keyframe = True
    container.mux(packet)
    x = click_signal(RATE, 2.0, 0.5)
    step = audio.codec_context.frame_size or 4096
    for s in range(0, x.shape[1], step):
        frame = _audio_frame(x[:, s : s + step], audio.codec_context.codec.audio_formats[0], "mono")
        frame.sample_rate, frame.time_base, frame.pts = RATE, Fraction(1, RATE), s
        container.mux(audio.encode(frame))
    container.mux(audio.encode())
    container.close()


def _huge_metadata(p: Path) -> None:
    """4 MB of tags in one value plus 2000 more tags of 512 bytes (5 MB in all)."""
    tags = {f"tag_{i:05d}": "v" * 512 for i in range(2000)}
    tags["comment"] = "x" * (4 << 20)
    write_av(p, metadata=tags)


KINDS: tuple[Kind, ...] = (
    # name, file name, partition verdict, ingest verdict, what, maker
    Kind("good", "good.mkv", PROCESSED, ACCEPTED,
         "an ordinary clip (control)", write_good),
    Kind("zero_bytes", "zero_bytes.mp4", "empty_file", "empty_file",
         "0-byte file", _zero_bytes),
    Kind("random_bytes", "random_bytes.mp4", "undecodable", "undecodable",
         "64 KB of noise named .mp4", _random_bytes),
    Kind("truncated_mp4", "truncated.mp4", "undecodable", "undecodable",
         "MP4 cut in half (moov lost)", _truncated_mp4),
    Kind("truncated_faststart", "truncated_faststart.mp4", "undecodable", "undecodable",
         "faststart MP4 cut at 70 % (index past EOF)", _truncated_faststart),
    Kind("broken_moov", "broken_moov.mp4", "undecodable", "undecodable",
         "moov payload = random bytes", _broken_moov),
    Kind("moov_bad_offsets", "moov_bad_offsets.mp4", "undecodable", "undecodable",
         "moov chunk offsets point past EOF", _moov_bad_offsets),
    Kind("mkv_named_mp4", "mkv_inside.mp4", PROCESSED, ACCEPTED,
         "Matroska named .mp4", _mkv_named_mp4),
    Kind("mp4_named_wav", "mp4_inside.wav", PROCESSED, "unsupported_extension",
         "MP4 named .wav", _mp4_named_wav),
    Kind("video_only", "video_only.mkv", "no_audio_stream", "no_audio_stream",
         "no audio stream", _video_only),
    Kind("audio_only", "audio_only.mkv", "no_video_stream", "no_video_stream",
         "no video stream", _audio_only),
    Kind("rate_0hz", "rate_0hz.mkv", "bad_sample_rate", "bad_sample_rate",
         "0 Hz (patched header)", _rate_0hz),
    Kind("rate_1hz", "rate_1hz.mkv", "bad_sample_rate", "bad_sample_rate",
         "1 Hz PCM", _rate_1hz),
    Kind("rate_384khz", "rate_384khz.mkv", "bad_sample_rate", "bad_sample_rate",
         "384 kHz PCM", _rate_384khz),
    Kind("channels_8", "channels_8.mkv", PROCESSED, ACCEPTED,
         "8 channels (7.1 FLAC)", _channels_8),
    Kind("channels_16", "channels_16.mkv", "bad_channel_count", "bad_channel_count",
         "16 channels PCM", _channels_16),
    Kind("nan_samples", "nan_samples.mkv", "nan_samples", ACCEPTED,
         "float PCM with NaN", _nan_samples),
    Kind("inf_samples", "inf_samples.mkv", "nan_samples", ACCEPTED,
         "float PCM with +-Inf", _inf_samples),
    Kind("two_hours", "two_hours.mkv", "too_long", "too_long",
         "2 h (sparse), header says 2 h", _two_hours),
    Kind("lying_duration", "lying_duration.mkv", "too_long", ACCEPTED,
         "2 h of audio+video, header 2 s", _lying_duration),
    Kind("lying_video", "lying_video.mkv", "too_long", ACCEPTED,
         "2 h of video, 2 s audio, header 2 s", _lying_video),
    Kind("late_audio", "late_audio.mkv", "too_long", ACCEPTED,
         "audio starts 2 h after video, header 2 s", _late_audio),
    Kind("one_frame", "one_frame.mkv", "too_few_frames", ACCEPTED,
         "a single video frame", _one_frame),
    Kind("frame_10000", "frame_10000.mov", "frame_too_large", "frame_too_large",
         "one 10000x10000 PNG frame", _frame_10000),
    Kind("huge_metadata", "huge_metadata.mkv", PROCESSED, ACCEPTED,
         "5 MB of tags", _huge_metadata),
    Kind("unicode_name", "ünïcødé 名前 🎬.mkv", PROCESSED, ACCEPTED,
         "unicode file name", write_good),
    Kind("spaces_name", "  clip   with spaces  .mkv", PROCESSED, ACCEPTED,
         "space-laden file name", write_good),
    Kind("dash_dots_name", "-..-%2e%2e%2Fx .mkv", PROCESSED, ACCEPTED,
         "leading dash, dots, %-escapes", write_good),
)


def build_corpus(folder: Path) -> dict[str, Path]:
    """Write every kind's file into ``folder``; returns kind name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in KINDS:
        if kind.make is not None:
            path = folder / kind.file_name
            kind.make(path)
            paths[kind.name] = path
    return paths

