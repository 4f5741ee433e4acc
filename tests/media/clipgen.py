"""Synthetic clips written with PyAV for the media tests: tiny, fast, an impulse at a known time.

Frame i of a synthetic clip is a flat grey of level ``grey_level(i)`` so a test can tell which
source frame it got back; the audio is silent except one click of 0.9 at ``click_s``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REAL_CLIPS = [
    "airplane_field_moviepy.mp4",
    "bbb_small_5ch1_lhotse.mp4",
    "chaplin_moviepy.mp4",
    "eye_makeup_mmaction2.avi",
    "fireplace_dog_moviepy.mp4",
    "smpte_bars_2997_moviepy.mp4",
    "stage_applause_videollama.mp4",
    "talking_head_1_retalking.mp4",
    "talking_head_2_retalking.mp4",
    "talking_head_3_retalking.mp4",
]

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def grey_level(i: int) -> int:
    """Grey value of synthetic frame i (distinct for the first 25 frames)."""
    return (i * 10) % 250


def click_signal(
    sample_rate: int,
    duration_s: float,
    click_s: float,
    channels: int = 1,
    click_channel: int | None = None,
) -> np.ndarray:
    """(C, T) float32 silence with one 0.9 click at click_s (on one channel, or all)."""
    x = np.zeros((channels, int(round(duration_s * sample_rate))), np.float32)
    rows = slice(None) if click_channel is None else click_channel
    x[rows, int(round(click_s * sample_rate))] = 0.9
    return x


def _audio_frame(chunk: np.ndarray, fmt: av.AudioFormat, layout: str) -> av.AudioFrame:
    data = chunk
    if fmt.name.startswith("s16"):
        data = (np.clip(chunk, -1, 1) * 32767).round().astype(np.int16)
    elif fmt.name.startswith("s32"):
        data = (np.clip(chunk, -1, 1) * 2147483647).round().astype(np.int32)
    elif fmt.name.startswith("dbl"):
        data = chunk.astype(np.float64)
    if not fmt.is_planar:
        data = np.ascontiguousarray(data.T).reshape(1, -1)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name, layout=layout)


def write_clip(
    path: Path,
    *,
    video_codec: str | None = "libx264",
    audio_codec: str | None = "aac",
    fmt: str | None = None,
    sample_rate: int = 48000,
    channels: int = 1,
    duration_s: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (64, 64),
    click_s: float = 1.0,
    click_channel: int | None = None,
    video_start_frames: int = 0,
    audio_start_s: float = 0.0,
    audio: np.ndarray | None = None,
) -> Path:
    """Write a small clip with PyAV. The click is at ``click_s`` on the audio's own clock."""
    container = av.open(str(path), "w", format=fmt)
    vstream = astream = None
    if video_codec:
        vstream = container.add_stream(video_codec, rate=fps)
        vstream.width, vstream.height = size
        vstream.pix_fmt = "yuv420p"
        if video_codec == "libvpx-vp9":
            vstream.options = {"deadline": "realtime", "cpu-used": "8"}
    if audio_codec:
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = _LAYOUTS[channels]
        astream.format = astream.codec_context.codec.audio_formats[0].name
    if vstream is not None:
        for i in range(int(round(duration_s * fps))):
            img = np.full((size[1], size[0], 3), grey_level(i), np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i + video_start_frames
            frame.time_base = Fraction(1, fps)
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
    if astream is not None:
        x = (
            audio
            if audio is not None
            else click_signal(sample_rate, duration_s, click_s, channels, click_channel)
        )
        fmt_obj = astream.codec_context.codec.audio_formats[0]
        step = astream.codec_context.frame_size or 1024
        start = int(round(audio_start_s * sample_rate))
        for s in range(0, x.shape[1], step):
            frame = _audio_frame(x[:, s : s + step], fmt_obj, _LAYOUTS[channels])
            frame.sample_rate = sample_rate
            frame.time_base = Fraction(1, sample_rate)
            frame.pts = start + s
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def impulse_time(samples: np.ndarray, sample_rate: int) -> float:
    """Time (s) of the largest absolute sample: where the click landed."""
    return float(np.argmax(np.abs(samples).max(axis=0))) / sample_rate
