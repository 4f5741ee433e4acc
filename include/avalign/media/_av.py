"""PyAV plumbing shared by probe, decode and remux: opening with clear errors, streams, times.

Kept private so the public modules stay one concept each, and so that every path that opens a
file maps FFmpeg's failures onto the same ``MediaError`` reasons.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from avalign.errors import MediaError

# Sample rates outside (MIN, MAX] are not audio we can use (telephony is 8 kHz, studio 192 kHz).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 192_000

# More channels than this cannot be written back: FLAC (our output codec) and ``layout_for`` stop at
# 8 (7.1). A 16-channel file is quarantined at probe instead of failing in the remux.
MAX_CHANNELS = 8

# Frames larger than this are rejected from the header, before anything is decoded: one decoded
# 10000x10000 frame is 300 MB of RGB, and no describer looks at more than a few hundred pixels.
# 8192 x 4320 (8K DCI) is the largest format a camera or an editor delivers.
MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 8192 * 4320

# Decoders output frames in presentation order, but AVI (packed B-frames) hands them the wrong
# packets' pts. Re-pairing the frames with the sorted pts of a small window fixes that, and is a
# no-op for well-formed streams whose pts already increase.
REORDER_WINDOW = 4

# Decoding errors on single packets are tolerated (FFmpeg's CLI does the same), but a stream where
# more than this share of packets fail to decode is treated as broken.
MAX_BAD_PACKET_SHARE = 0.05


def name_of(path: Path) -> str:
    """The file name used at the start of every message (short, still says which clip)."""
    return path.name or str(path)


@contextmanager
def open_input(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open a media file for reading, turning every failure into a MediaError with a reason."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{name_of(p)}: file not found ({p})", reason="file_not_found")
    if p.is_dir():
        raise MediaError(f"{name_of(p)}: is a directory, not a media file", reason="undecodable")
    if p.stat().st_size == 0:
        raise MediaError(f"{name_of(p)}: empty file (0 bytes)", reason="empty_file")
    try:
        container = av.open(str(p), mode="r", metadata_errors="replace")
    except PermissionError as exc:
        raise MediaError(f"{name_of(p)}: permission denied", reason="permission_denied") from exc
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(
            f"{name_of(p)}: not a readable media container ({_ffmpeg_message(exc)})",
            reason="undecodable",
        ) from exc
    try:
        yield container
    finally:
        container.close()


def _ffmpeg_message(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__


def is_attached_picture(stream: av.stream.Stream) -> bool:
    """Cover art in mp3/m4a shows up as a one-frame video stream; it is not video."""
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream (attached pictures excluded), or None."""
    for stream in container.streams.video:
        if not is_attached_picture(stream) and stream.codec_context is not None:
            return stream
    return None


def audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """The first audio stream, or None."""
    for stream in container.streams.audio:
        if stream.codec_context is not None:
            return stream
    return None


def require_stream(
    container: av.container.InputContainer, path: Path, kind: str
) -> av.stream.Stream:
    """The first real ``kind`` ('audio'/'video') stream, or MediaError.

    A file with no audio or video stream at all (an MP4 cut before its moov, a text file that
    FFmpeg sniffed as something) is undecodable rather than "missing a stream".
    """
    video = video_stream(container)
    audio = audio_stream(container)
    if video is None and audio is None:
        raise MediaError(
            f"{name_of(path)}: no decodable audio or video stream (streams: "
            f"{describe_streams(container)}); not a media file, or truncated",
            reason="undecodable",
        )
    stream = video if kind == "video" else audio
    if stream is None:
        raise MediaError(
            f"{name_of(path)}: no {kind} stream (streams: {describe_streams(container)})",
            reason=f"no_{kind}_stream",
        )
    return stream


def describe_streams(container: av.container.InputContainer) -> str:
    """'video h264, audio aac' – used in messages so a reader sees what the file does contain."""
    parts = []
    for stream in container.streams:
        codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
        kind = "cover art" if is_attached_picture(stream) else stream.type
        parts.append(f"{kind} {codec}")
    return ", ".join(parts) if parts else "none"


def frame_time(frame: av.frame.Frame) -> Fraction | None:
    """Exact presentation time of a decoded frame in seconds, or None when it has no pts."""
    if frame.pts is None or frame.time_base is None:
        return None
    return frame.pts * Fraction(frame.time_base)


def stream_start(stream: av.stream.Stream) -> Fraction | None:
    """The demuxer's start time of a stream in seconds (fallback when nothing decodes)."""
    if stream.start_time is None or stream.time_base is None:
        return None
    return stream.start_time * Fraction(stream.time_base)


@dataclass
class DecodeStats:
    """Packets seen and packets that failed to decode, to tell a few glitches from a broken file."""

    packets: int = 0
    bad_packets: int = 0

    def broken(self) -> bool:
        return self.packets > 0 and self.bad_packets > max(2, MAX_BAD_PACKET_SHARE * self.packets)


def decoded_frames(
    container: av.container.InputContainer, stream: av.stream.Stream, stats: DecodeStats
) -> Iterator[av.frame.Frame]:
    """Decode one stream; packets FFmpeg rejects are skipped and counted in ``stats``."""
    for packet in container.demux(stream):
        if packet.size:
            stats.packets += 1
        try:
            frames = packet.decode()
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            stats.bad_packets += 1
            continue
        yield from frames


def timed_video_frames(
    container: av.container.InputContainer, stream: av.stream.Stream, stats: DecodeStats
) -> Iterator[tuple[av.VideoFrame, Fraction]]:
    """Video frames in display order with their presentation times (seconds, file clock).

    Times are the frames' pts re-sorted over a window of REORDER_WINDOW frames (see there);
    frames without pts get the nominal frame interval after the latest time seen.
    """
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    step = Fraction(1) / Fraction(rate) if rate else Fraction(1, 25)
    waiting: deque[av.VideoFrame] = deque()
    times: list[Fraction] = []
    latest: Fraction | None = None
    for frame in decoded_frames(container, stream, stats):
        t = frame_time(frame)
        if t is None:
            t = latest + step if latest is not None else Fraction(0)
        latest = t if latest is None else max(latest, t)
        waiting.append(frame)
        heapq.heappush(times, t)
        if len(waiting) > REORDER_WINDOW:
            yield waiting.popleft(), heapq.heappop(times)
    while waiting:
        yield waiting.popleft(), heapq.heappop(times)


def first_frame_time(path: str | Path, kind: str) -> Fraction | None:
    """Presentation time of the first frame the decoder outputs for the first ``kind`` stream.

    This is what defines time zero (the first video frame); it is read from decoded frames, not
    the demuxer's start_time, because edit lists, B-frame reordering and AVI's guessed pts can make
    the two differ. Opens its own container so the caller's read position is untouched.
    """
    with open_input(path) as container:
        stream = video_stream(container) if kind == "video" else audio_stream(container)
        if stream is None:
            return None
        stats = DecodeStats()
        if kind == "video":
            for _, t in timed_video_frames(container, stream, stats):
                return t
        else:
            for frame in decoded_frames(container, stream, stats):
                t = frame_time(frame)
                if t is not None:
                    return t
                break
        return stream_start(stream)


def declared_duration(container: av.container.InputContainer) -> float | None:
    """Duration the container declares (seconds), or the longest stream's, or None."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best: float | None = None
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            d = float(stream.duration * stream.time_base)
            best = d if best is None else max(best, d)
    return best


def scan_duration(container: av.container.InputContainer) -> float | None:
    """Duration from packet timestamps (reads packets, decodes nothing): for files without one."""
    start: float | None = None
    end: float | None = None
    for packet in container.demux():
        if packet.pts is None or packet.time_base is None or packet.size == 0:
            continue
        t0 = float(packet.pts * packet.time_base)
        t1 = t0 + float((packet.duration or 0) * packet.time_base)
        start = t0 if start is None else min(start, t0)
        end = t1 if end is None else max(end, t1)
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def check_truncated(container: av.container.InputContainer, path: Path) -> None:
    """Raise MediaError(undecodable) when the file is shorter than its own header says.

    A cut file often still opens and decodes its first part without a single error, so this
    compares the header with what is there: MP4's sample index (moov) must not point past the end
    of the file, and an AVI's header frame count (dwLength) must match the index it holds.
    """
    size = path.stat().st_size
    for stream in container.streams:
        if stream.type not in ("audio", "video"):
            continue
        try:
            entries = stream.index_entries
            n = len(entries)
        except (AttributeError, TypeError):
            n = 0
        # The largest offsets sit at the end of the index; looking at the tail is enough and cheap.
        for i in range(max(0, n - 64), n):
            entry = entries[i]
            if entry.pos is not None and entry.pos >= 0 and entry.pos + entry.size > size:
                raise MediaError(
                    f"{name_of(path)}: truncated (the {stream.type} index points past the end "
                    f"of the {size}-byte file)",
                    reason="undecodable",
                )
        if container.format.name == "avi" and stream.frames and stream.duration is not None:
            if stream.duration < 0.8 * stream.frames - 1:
                tb = float(stream.time_base)
                raise MediaError(
                    f"{name_of(path)}: truncated (the AVI header declares "
                    f"{stream.frames * tb:.2f} s "
                    f"of {stream.type}, the file holds {stream.duration * tb:.2f} s)",
                    reason="undecodable",
                )


def frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """Decoded audio frame → float32 (channels, samples) in [-1, 1], whatever its sample format."""
    fmt = frame.format
    channels = frame.layout.nb_channels
    data = frame.to_ndarray()
    if not fmt.is_planar:
        data = data.reshape(-1, channels).T
    else:
        data = data.reshape(channels, -1)
    if data.dtype == np.float32:
        return data
    if data.dtype == np.float64:
        return data.astype(np.float32)
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    if data.dtype == np.int32:
        return (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype == np.int64:
        return (data.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    raise MediaError(f"unsupported audio sample format {fmt.name}", reason="undecodable")


def check_sample_rate(path: Path, rate: int | None) -> int:
    """Reject sample rates no audio model can use, with the rate in the message."""
    if rate is None or rate <= MIN_SAMPLE_RATE or rate > MAX_SAMPLE_RATE:
        raise MediaError(
            f"{name_of(path)}: bad audio sample rate {rate} Hz "
            f"(must be > {MIN_SAMPLE_RATE} and <= {MAX_SAMPLE_RATE})",
            reason="bad_sample_rate",
        )
    return int(rate)


def check_channels(path: Path, channels: int | None) -> int:
    """Reject channel counts the pipeline cannot write back (0, or more than MAX_CHANNELS)."""
    if channels is None or channels < 1 or channels > MAX_CHANNELS:
        raise MediaError(
            f"{name_of(path)}: {channels} audio channels (must be 1..{MAX_CHANNELS})",
            reason="bad_channel_count",
        )
    return int(channels)


def check_frame_size(path: Path, width: int | None, height: int | None) -> None:
    """Reject frames too large to decode safely (see MAX_FRAME_SIDE); unknown sizes pass here and
    are checked again on the first decoded frame."""
    w, h = int(width or 0), int(height or 0)
    if max(w, h) > MAX_FRAME_SIDE or w * h > MAX_FRAME_PIXELS:
        raise MediaError(
            f"{name_of(path)}: video frames of {w}x{h} are too large to decode "
            f"(limit {MAX_FRAME_SIDE} px a side, {MAX_FRAME_PIXELS / 1e6:.1f} MP)",
            reason="frame_too_large",
        )


def layout_for(channels: int) -> str:
    """FFmpeg's default layout name for a channel count (what an encoder needs)."""
    layouts = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
    if channels not in layouts:
        raise ValueError(f"unsupported channel count {channels} (1..8)")
    return layouts[channels]
