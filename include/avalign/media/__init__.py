"""avalign.media: PyAV probe, decode and remux on one timeline (zero = first video frame).

``probe`` gates a file, ``decode_audio`` / ``decode_frames`` read it onto the timeline, and
``remux_with_audio`` writes new audio under a bit-exact copy of its video stream.
"""

from avalign.media.decode import AudioTrack, VideoFrames, decode_audio, decode_frames, timeline_zero
from avalign.media.probe import MediaInfo, probe
from avalign.media.remux import container_for, remux_with_audio, write_audio

__all__ = [
    "AudioTrack",
    "MediaInfo",
    "VideoFrames",
    "container_for",
    "decode_audio",
    "decode_frames",
    "probe",
    "remux_with_audio",
    "timeline_zero",
    "write_audio",
]
