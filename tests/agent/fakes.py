"""A test double for the Triton client, for unit tests of the loop only (never in the product).

It answers with the same weights-free measurements the real models use (avalign.describe.features,
avalign.describe.sync), so edits change its scores the way they change the real ones.
"""

from __future__ import annotations

import numpy as np

from avalign.describe.features import level_stats, motion_energy, onset_envelope, resample_series
from avalign.describe.scorer import audio_quality
from avalign.describe.sync import estimate_offset, sync_score
from avalign.serving.client import Description, Scores


class MeasuringClient:
    """Describes and scores with plain measurements; records every audio it was asked about."""

    def __init__(self, *, speech_s: float = 0.0, face_fraction: float = 0.0) -> None:
        self.speech_s = speech_s
        self.face_fraction = face_fraction
        self.scored_audio: list[np.ndarray] = []

    def model_version(self, model: str) -> str:
        return "test"

    def describe_audio(self, audio: np.ndarray) -> Description:
        stats = level_stats(audio, 16000)
        ev = {"duration_s": audio.size / 16000, "tags": [], "speech_s": self.speech_s, "transcript": "",
              "rms_dbfs": stats.rms_dbfs, "peak_dbfs": stats.peak_dbfs, "snr_db": stats.snr_db,
              "silence_fraction": stats.silence_fraction, "clipped_fraction": stats.clipped_fraction,
              "gaps": [list(g) for g in stats.gaps], "models": {}}
        return Description(f"snr {stats.snr_db:.1f}", ev)

    def describe_frames(self, frames, fps, times=None) -> Description:
        return Description("frames", {"face_fraction": self.face_fraction, "tags": [], "models": {}})

    def score(self, audio, frames, fps, evidence) -> Scores:
        self.scored_audio.append(np.array(audio, copy=True))
        times = np.asarray(evidence["frame_times_s"])
        energy, et = motion_energy(frames, times)
        est = estimate_offset(onset_envelope(audio, 16000), resample_series(energy, et, audio.size / 16000))
        q = audio_quality(audio)
        sync = sync_score(est)
        detail = {"offset_ms": est.offset_ms, "offset_confidence": est.confidence, **q}
        return Scores(0.5 * q["quality"] + 0.5 * sync, sync, detail)
