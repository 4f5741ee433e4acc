"""Decode audio and sampled video frames onto one timeline.

Timeline convention (everything downstream relies on it): time zero is the presentation time of
the first decoded video frame; for a file without video it is the audio's own start.

* ``decode_audio`` places every decoded audio frame by its pts, so sample 0 is at time zero:
  audio that starts after the first frame gets leading zeros, audio that starts before it loses
  its leading samples. Encoder priming (AAC's 1024 samples, MP3's decoder delay) is removed by
  FFmpeg itself from the edit list / skip-samples side data before we see the frames.
* ``decode_frames`` reports each kept frame's pts relative to the same zero, so variable frame
  rate video keeps its real frame times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from avalign.errors import MediaError
from avalign.media import _av

# Gaps or overlaps between consecutive audio frames smaller than this are timestamp rounding
# (Matroska/AVI store ms) and are ignored; larger ones are real and filled with silence / trimmed.
# 5 ms is below any audible or lip-sync relevant offset and above every container's rounding.
AUDIO_RESYNC_TOLERANCE_S = 0.005

# When decoding without a declared duration we still stop this far past max_duration_s.
_TOO_LONG_SLACK_S = 1.0


@dataclass
class AudioTrack:
    """Decoded audio: float32 (channels, samples), sample 0 at timeline zero."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.shape[-1] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        """Number of channels (1 after a mono downmix)."""
        return int(self.samples.shape[0])


@dataclass
class VideoFrames:
    """Sampled RGB frames with their presentation times relative to timeline zero."""

    frames: np.ndarray  # uint8 (N, H, W, 3)
    times_s: np.ndarray  # float64 (N,)
    fps: float  # nominal average fps of the source
    width: int  # source width before any downscale
    height: int  # source height before any downscale

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def timeline_zero(path: str | Path) -> float:
    """Time zero of a file in its own clock: first video frame pts, else the audio's start."""
    t0 = _av.first_frame_time(path, "video")
    if t0 is None:
        t0 = _av.first_frame_time(path, "audio")
    return float(t0) if t0 is not None else 0.0


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int | None = 16000,
    mono: bool = True,
    max_duration_s: float | None = None,
) -> AudioTrack:
    """Decode the first audio stream to float32 (C, T) aligned to timeline zero.

    ``sample_rate=None`` keeps the native rate; ``mono`` averages all channels (5.1 included).
    Resampling is scipy's polyphase ``resample_poly``: deterministic and zero-phase, so it never
    shifts the audio in time. Raises MediaError: file_not_found, empty_file, undecodable,
    no_audio_stream, bad_sample_rate, too_long, zero_duration, nan_samples.
    """
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    p = Path(path)
    name = _av.name_of(p)
    with _av.open_input(p) as container:
        stream = _av.require_stream(container, p, "audio")
        _av.check_truncated(container, p)
        has_video = _av.video_stream(container) is not None
        _av.check_sample_rate(p, stream.codec_context.sample_rate)  # 0 Hz too, as probe does
        declared = _av.declared_duration(container)
        if max_duration_s is not None and declared is not None and declared > max_duration_s:
            raise MediaError(
                f"{name}: too long ({declared:.2f} s > limit {max_duration_s:.2f} s)",
                reason="too_long",
            )
        assembled = _decode_audio_stream(
            p, container, stream, mono=mono, max_duration_s=max_duration_s
        )

    samples, rate, first_index = assembled
    # Place sample 0 at time zero.
    t0 = _av.first_frame_time(p, "video") if has_video else None
    zero_index = round(t0 * rate) if t0 is not None else first_index
    lead = first_index - zero_index
    end = lead + samples.shape[1]
    if max_duration_s is not None and end > (max_duration_s + _TOO_LONG_SLACK_S) * rate:
        # Checked before the leading silence is made: audio that starts hours after the first
        # frame (under a header that says seconds) would otherwise allocate those hours.
        raise MediaError(
            f"{name}: too long (the audio starts {lead / rate:.2f} s after the first video frame "
            f"and ends past the limit of {max_duration_s:.2f} s)",
            reason="too_long",
        )
    if lead > 0:
        samples = np.concatenate([np.zeros((samples.shape[0], lead), np.float32), samples], axis=1)
    elif lead < 0:
        samples = samples[:, -lead:]
    if samples.shape[1] == 0:
        raise MediaError(
            f"{name}: zero duration (no audio at or after the first video frame)",
            reason="zero_duration",
        )

    if sample_rate is not None and sample_rate != rate:
        samples = _resample(samples, rate, sample_rate)
        rate = sample_rate
    return AudioTrack(
        samples=np.ascontiguousarray(samples, dtype=np.float32), sample_rate=int(rate)
    )


def _decode_audio_stream(
    path: Path,
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    *,
    mono: bool,
    max_duration_s: float | None,
) -> tuple[np.ndarray, int, int]:
    """Decode and assemble by pts. Returns (samples (C,T) native rate, rate, index of sample 0).

    The index is the first sample's absolute position (pts * rate) on the file's clock. With
    ``max_duration_s`` memory stays bounded whatever the header says: the length is checked
    before each chunk (and each silence that fills a hole in the timestamps) is kept.
    """
    name = _av.name_of(path)
    chunks: list[np.ndarray] = []
    rate: int | None = None
    channels: int | None = None
    first_index: int | None = None
    pos = 0  # absolute index of the next expected sample
    total = 0
    stats = _av.DecodeStats()
    tolerance = 0
    limit: int | None = None

    for frame in _av.decoded_frames(container, stream, stats):
        if frame.samples == 0:
            continue
        if rate is None:
            rate = _av.check_sample_rate(path, frame.sample_rate)
            tolerance = max(1, round(AUDIO_RESYNC_TOLERANCE_S * rate))
            if max_duration_s is not None:
                limit = int((max_duration_s + _TOO_LONG_SLACK_S) * rate)
        elif frame.sample_rate != rate:
            raise MediaError(
                f"{name}: audio sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz)",
                reason="undecodable",
            )
        data = _av.frame_to_float(frame)
        if mono:
            data = data.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
        elif channels is None:
            channels = data.shape[0]
        elif data.shape[0] != channels:
            raise MediaError(
                f"{name}: audio channel count changes mid-stream ({channels} -> {data.shape[0]})",
                reason="undecodable",
            )
        t = _av.frame_time(frame)
        index = round(t * rate) if t is not None else pos
        if first_index is None:
            first_index = pos = index
        else:
            gap = index - pos
            if gap > tolerance:  # real hole in the timestamps: keep time, fill with silence
                if limit is not None and total + gap > limit:
                    raise MediaError(
                        f"{name}: too long (a {gap / rate:.2f} s hole in the audio timestamps "
                        f"takes it past {max_duration_s:.2f} s)",
                        reason="too_long",
                    )
                chunks.append(np.zeros((data.shape[0], gap), np.float32))
                pos += gap
                total += gap
            elif gap < -tolerance:  # overlap: these samples are already placed
                data = data[:, -gap:]
        if data.shape[1] == 0:
            continue
        chunks.append(data)
        pos += data.shape[1]
        total += data.shape[1]
        if limit is not None and total > limit:
            raise MediaError(
                f"{name}: too long (more than {max_duration_s:.2f} s of audio)", reason="too_long"
            )

    if stats.broken():
        raise MediaError(
            f"{name}: undecodable audio ({stats.bad_packets} of {stats.packets} packets failed "
            "to decode)",
            reason="undecodable",
        )
    if not chunks or rate is None or first_index is None:
        raise MediaError(
            f"{name}: zero duration (no audio samples decoded)", reason="zero_duration"
        )
    samples = np.concatenate(chunks, axis=1)
    if not np.isfinite(samples).all():
        bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise MediaError(f"{name}: {bad} NaN/Inf audio samples", reason="nan_samples")
    return samples, rate, first_index


def downmix_resample(samples: np.ndarray, rate_in: int, rate_out: int | None) -> np.ndarray:
    """What ``decode_audio(mono=True, sample_rate=rate_out)`` does to already-decoded (C, T)
    samples: the same channel mean and the same polyphase resampler, so a caller that needs
    both the native and the model-rate audio decodes once."""
    mono = samples.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if rate_out is None or rate_out == rate_in:
        return mono
    return _resample(mono, rate_in, rate_out)


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    g = math.gcd(int(rate_in), int(rate_out))
    up, down = rate_out // g, rate_in // g
    out = resample_poly(samples.astype(np.float64), up, down, axis=1)
    return out.astype(np.float32)


def decode_frames(
    path: str | Path,
    *,
    sample_fps: float | None = None,
    max_side: int | None = 256,
    max_frames: int | None = None,
    max_duration_s: float | None = None,
) -> VideoFrames:
    """Decode RGB frames of the first video stream, sampled by pts, streaming.

    ``sample_fps``: keep the first frame at or after each tick k / sample_fps (None: every frame;
    a rate above the source's keeps every frame, never duplicates). ``max_side``: downscale so the
    longest side (display aspect, i.e. with the sample aspect ratio applied) is at most this.
    ``max_frames``: stop decoding once that many frames are kept. ``max_duration_s``: raise
    too_long at the first frame more than that (plus 1 s) after the first, whatever the header
    says. Only kept frames are held in memory, already downscaled. Frames larger than
    ``_av.MAX_FRAME_SIDE`` are refused from the header, and again from the first decoded frame.
    Raises MediaError: file_not_found, empty_file, undecodable, no_video_stream, frame_too_large,
    too_long, zero_duration.
    """
    if sample_fps is not None and sample_fps <= 0:
        raise ValueError(f"sample_fps must be positive, got {sample_fps}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    p = Path(path)
    name = _av.name_of(p)
    kept: list[np.ndarray] = []
    times: list[float] = []
    with _av.open_input(p) as container:
        stream = _av.require_stream(container, p, "video")
        _av.check_truncated(container, p)
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        src_w, src_h = int(cc.width or 0), int(cc.height or 0)
        _av.check_frame_size(p, src_w, src_h)
        sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
        target: tuple[int, int] | None = None
        t0: Fraction | None = None
        next_tick = 0
        eps = 1e-6
        stats = _av.DecodeStats()
        timed = _av.timed_video_frames(container, stream, stats)
        for frame, t in timed:
            if t0 is None:
                _av.check_frame_size(p, frame.width, frame.height)  # the bitstream may disagree
                t0 = t
                if not src_w or not src_h:
                    src_w, src_h = frame.width, frame.height
                target = _target_size(frame.width, frame.height, sar, max_side)
            rel = float(t - t0)
            if max_duration_s is not None and rel > max_duration_s + _TOO_LONG_SLACK_S:
                raise MediaError(
                    f"{name}: too long (video frames past {max_duration_s:.2f} s)",
                    reason="too_long",
                )
            if sample_fps is not None:
                if rel + eps < next_tick / sample_fps:
                    continue
                next_tick = math.floor((rel + eps) * sample_fps) + 1
            assert target is not None
            rgb = frame.reformat(width=target[0], height=target[1], format="rgb24")
            kept.append(rgb.to_ndarray())
            times.append(rel)
            if max_frames is not None and len(kept) >= max_frames:
                break  # stop decoding: the rest of the file is never read
        timed.close()

    if stats.broken():
        raise MediaError(
            f"{name}: undecodable video ({stats.bad_packets} of {stats.packets} packets failed "
            "to decode)",
            reason="undecodable",
        )
    if not kept:
        raise MediaError(f"{name}: zero duration (no video frames decoded)", reason="zero_duration")
    return VideoFrames(
        frames=np.stack(kept).astype(np.uint8, copy=False),
        times_s=np.asarray(times, dtype=np.float64),
        fps=fps,
        width=src_w,
        height=src_h,
    )


def _target_size(
    width: int, height: int, sar: Fraction | None, max_side: int | None
) -> tuple[int, int]:
    """Output size: display aspect kept (SAR applied), longest side <= max_side, never upscaled."""
    display_w = float(width) * float(sar) if sar and float(sar) > 0 else float(width)
    display_h = float(height)
    if max_side is None:
        if display_w == width:
            return width, height
        return max(1, round(display_w)), height
    scale = min(1.0, max_side / max(display_w, display_h))
    return max(1, round(display_w * scale)), max(1, round(display_h * scale))
