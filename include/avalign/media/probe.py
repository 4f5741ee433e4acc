"""Probe a media file: what streams it has, how long it is, and whether we can use it at all.

``probe`` is the gate in front of every clip: it turns each way a file can be unusable into a
``MediaError`` with a stable ``reason`` so the batch quarantines that clip and goes on.
Start times are those of the first *decoded* frames, which is the timeline convention
``decode`` uses (time zero = first video frame), so probe and decode never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from avalign.errors import MediaError
from avalign.media import _av


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds. Times are seconds on the container's own clock."""

    path: str
    container: str
    duration_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None  # average frame rate
    video_start_s: float | None  # pts of the first decoded video frame
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    audio_start_s: float | None  # pts of the first decoded audio sample (after encoder priming)

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) for manifests and traces."""
        return asdict(self)


def probe(
    path: str | Path,
    *,
    max_duration_s: float | None = None,
    require_video: bool = True,
    require_audio: bool = True,
) -> MediaInfo:
    """Describe ``path`` or raise MediaError saying precisely why it cannot be used.

    Reasons: file_not_found, empty_file, undecodable, no_video_stream, no_audio_stream,
    bad_sample_rate, bad_channel_count, frame_too_large, zero_duration, too_long.
    ``require_video`` / ``require_audio`` (default both, since every clip of this platform is
    audio-visual) can be relaxed for one-sided media. Everything is decided from headers and
    packet timestamps before the first frame is decoded (a frame may be 100 megapixels); the
    only decoding is of the first frame of each stream, for the start times.
    """
    p = Path(path)
    name = _av.name_of(p)
    with _av.open_input(p) as container:
        video = _av.video_stream(container)
        audio = _av.audio_stream(container)
        streams = _av.describe_streams(container)
        if video is None and audio is None:
            _av.require_stream(container, p, "video")  # raises undecodable
        _av.check_truncated(container, p)
        if video is None and require_video:
            raise MediaError(
                f"{name}: no video stream (streams: {streams})", reason="no_video_stream"
            )
        if audio is None and require_audio:
            raise MediaError(
                f"{name}: no audio stream (streams: {streams})", reason="no_audio_stream"
            )

        sample_rate = channels = None
        if audio is not None:
            sample_rate = _av.check_sample_rate(p, audio.codec_context.sample_rate)
            channels = _av.check_channels(p, audio.codec_context.layout.nb_channels)
        if video is not None:
            _av.check_frame_size(p, video.codec_context.width, video.codec_context.height)

        duration = _av.declared_duration(container)
        if duration is None:
            duration = _av.scan_duration(container)
        if not duration or duration <= 0:
            raise MediaError(
                f"{name}: zero duration (no timed media in {streams})", reason="zero_duration"
            )
        if max_duration_s is not None and duration > max_duration_s:
            raise MediaError(
                f"{name}: too long ({duration:.2f} s > limit {max_duration_s:.2f} s)",
                reason="too_long",
            )

        fps = width = height = video_codec = None
        if video is not None:
            cc = video.codec_context
            video_codec, width, height = cc.name, cc.width or None, cc.height or None
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else None
        container_name = _container_name(container.format.name, p)
        audio_codec = audio.codec_context.name if audio is not None else None

    video_start = _av.first_frame_time(p, "video") if video is not None else None
    audio_start = _av.first_frame_time(p, "audio") if audio is not None else None
    return MediaInfo(
        path=str(p),
        container=container_name,
        duration_s=float(duration),
        has_video=video is not None,
        has_audio=audio is not None,
        video_codec=video_codec,
        width=width,
        height=height,
        fps=fps,
        video_start_s=float(video_start) if video_start is not None else None,
        audio_codec=audio_codec,
        sample_rate=sample_rate,
        channels=channels,
        audio_start_s=float(audio_start) if audio_start is not None else None,
    )


def _container_name(demuxer: str, path: Path) -> str:
    """'mov,mp4,m4a,...' → 'mp4' for clip.mp4: the demuxer alias that matches the file's suffix."""
    names = demuxer.split(",")
    suffix = path.suffix.lower().lstrip(".")
    if suffix in names:
        return suffix
    if suffix == "mkv" and "matroska" in names:
        return "matroska"
    return names[0]
