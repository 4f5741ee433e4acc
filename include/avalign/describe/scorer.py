"""Reflection scorer: how well (edited) audio fits the picture. Served as ``av_scorer``.

Two scores in [0, 1], each a documented combination of measurements (docs/architecture.md,
"Reflection scores"):

- ``sync``: the AV offset estimate (``avalign.describe.sync``) mapped through ``sync_score``:
  1 = confidently in sync, 0 = confidently off by much more than 60 ms, 0.5 = cannot tell.
- ``alignment`` = content * sync, with content = 0.25 * semantic + 0.75 * sqrt(quality), where
  - semantic = the cosine of the MiniLM embeddings of what is heard and what is seen, rescaled
    linearly from [SEMANTIC_LOW, SEMANTIC_HIGH] to [0, 1] and clipped;
  - quality = q_snr * q_clipping * q_dropouts * q_level (each in [0, 1]), see ``audio_quality``,
    times q_offscreen = 1 - min(0.5, 2 * the share of the clip that carries an off-screen sound
    (the evidence's ``offscreen_s``, from ``avalign.describe.offscreen``)).

  Sound that is late or early does not fit the picture however clean and fitting it is, so sync
  multiplies rather than adds (with 0.2 * sync added, offsets moved the score by at most 0.2 and
  its Spearman correlation with the offset, pooled over the benchmark, was 0.22-0.25). The content
  weights were chosen on one benchmark build and checked on another (docs/evaluation.md,
  "Reflection calibration"). ``detail["content"]`` is reported so that a clip whose sync cannot be
  told is judged on it (``AlignConfig.passes``).

The visual side never changes within a clip; only the audio evidence is recomputed per cycle.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from avalign.describe.features import level_stats
from avalign.describe.sync import SyncEstimate, estimate_drift_clip, estimate_fused, sync_score

SAMPLE_RATE = 16000
# MiniLM cosines of short heard/seen phrases measured on the real clips: matching pairs
# 0.14-0.26, mismatched 0.03-0.10. So 0 maps to 0 and 0.25 (a clear match) to 1.
SEMANTIC_LOW, SEMANTIC_HIGH = 0.0, 0.25
CONTENT_WEIGHTS = {"semantic": 0.25, "quality": 0.75}
QUALITY_EXPONENT = 0.5
"""quality enters as its square root: the product of four or five factors falls fast."""

EmbedFn = Callable[[list[str]], np.ndarray]


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def audio_quality(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Quality components in [0, 1] from blind measurements of the audio alone.

    q_snr = sigmoid((snr_db - 10) / 3): 50 % at 10 dB, 95 % at about 19 dB.
    q_clipping = 1 - min(1, 100 * clipped share); q_dropouts = 1 - min(1, 4 * dropout share);
    q_level = sigmoid((rms_dbfs + 45) / 3): a clip at -45 dBFS RMS counts half.
    """
    stats = level_stats(x, sample_rate)
    duration = max(x.size / sample_rate, 1e-6)
    gap_share = sum(d for _, d in stats.gaps) / duration
    parts = {
        "snr_db": stats.snr_db,
        "q_snr": _sigmoid((stats.snr_db - 10.0) / 3.0),
        "q_clipping": 1.0 - min(1.0, 100.0 * stats.clipped_fraction),
        "q_dropouts": 1.0 - min(1.0, 4.0 * gap_share),
        "q_level": _sigmoid((stats.rms_dbfs + 45.0) / 3.0),
    }
    parts["quality"] = parts["q_snr"] * parts["q_clipping"] * parts["q_dropouts"] * parts["q_level"]
    return parts


def semantic_agreement(embed: EmbedFn, heard: str, seen: str) -> tuple[float, float]:
    """(rescaled agreement in [0, 1], raw cosine) between what is heard and what is seen."""
    vecs = np.asarray(embed([heard, seen]), dtype=np.float64)
    a, b = vecs[0], vecs[1]
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.clip((cos - SEMANTIC_LOW) / (SEMANTIC_HIGH - SEMANTIC_LOW), 0.0, 1.0)), cos


def scorer_inputs(audio: np.ndarray, frames: np.ndarray, fps: float, evidence: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (audio (T,) float32, frames (N, H, W, 3) uint8, frame times) for any av_scorer:
    the frames' own times from the evidence when they match, else a uniform grid at ``fps``."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("audio must be non-empty and finite")
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"need at least two (H, W, 3) frames, got shape {frames.shape}")
    times = np.asarray(evidence.get("frame_times_s") or (np.arange(frames.shape[0]) / fps), dtype=np.float64)
    if times.size != frames.shape[0]:
        times = np.arange(frames.shape[0]) / fps
    return x, frames, times


WHOLE_FRAME = ("whole_frame", "impact")
"""Estimates read from the whole picture (no speaking face): the drift search uses the same cue."""


class AVScorer:
    """Scores (audio, frames) given the describers' evidence; ``embed`` turns texts into vectors."""

    def __init__(self, embed: EmbedFn) -> None:
        self.embed = embed

    def score(self, audio: np.ndarray, frames: np.ndarray, fps: float,
              evidence: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
        x, frames, times = scorer_inputs(audio, frames, fps, evidence)
        estimate = estimate_fused(x, SAMPLE_RATE, frames, times, speech_s=float(evidence.get("speech_s") or 0.0))
        s_sync = sync_score(estimate)
        # drift is read from whole-frame motion only: a speaking face is judged by its lips
        drift = estimate_drift_clip(x, SAMPLE_RATE, frames, times) if estimate.method in WHOLE_FRAME else None
        if drift is not None and drift.speed is not None:
            # a drifting track is off by |1 - speed| * t at time t: score its mean displacement
            mean_ms = abs(1.0 - drift.speed) * x.size / SAMPLE_RATE * 1000.0 / 2.0
            s_sync = min(s_sync, sync_score(SyncEstimate(mean_ms, drift.confidence, 0.0)))

        quality = audio_quality(x)
        offscreen_share = float(evidence.get("offscreen_s") or 0.0) / max(x.size / SAMPLE_RATE, 1e-6)
        quality["q_offscreen"] = 1.0 - min(0.5, 2.0 * offscreen_share)
        quality["quality"] *= quality["q_offscreen"]
        heard = evidence.get("heard") or evidence.get("audio_description", "")
        seen = evidence.get("seen") or evidence.get("visual_description", "")
        if heard and seen:
            s_sem, cos = semantic_agreement(self.embed, heard, seen)
        else:
            s_sem, cos = 0.5, float("nan")
        content = (CONTENT_WEIGHTS["semantic"] * s_sem
                   + CONTENT_WEIGHTS["quality"] * quality["quality"] ** QUALITY_EXPONENT)
        alignment = content * s_sync
        detail = {
            "semantic": round(s_sem, 4),
            "semantic_cosine": None if np.isnan(cos) else round(cos, 4),
            **{k: round(float(v), 4) for k, v in quality.items()},
            "content": round(content, 4),
            "sync": round(s_sync, 4),
            "offset_ms": None if estimate.offset_ms is None else round(estimate.offset_ms, 2),
            "offset_confidence": round(estimate.confidence, 4),
            "offset_peak_corr": round(estimate.peak_corr, 4),
            "offset_method": estimate.method,
            "offset_candidates": estimate.candidates,
            "drift_speed": None if drift is None or drift.speed is None else drift.speed,
            "drift_offset_ms": None if drift is None or drift.offset_ms is None else round(drift.offset_ms, 2),
            "drift_confidence": None if drift is None else round(drift.confidence, 4),
            "drift_gain": None if drift is None else round(drift.gain, 3),
            "weights": {**CONTENT_WEIGHTS, "quality_exponent": QUALITY_EXPONENT, "sync": "multiplies"},
        }
        return float(np.clip(alignment, 0.0, 1.0)), float(s_sync), detail
