"""AV offset estimate: audio onsets against visual motion, with a confidence and a "cannot tell".

Sign convention (shared with the corruption injector and the time-shift action): a POSITIVE
offset means the audio is LATE against the picture; the repair is ``time_shift(-offset)``.

Method: the audio onset envelope and the visual motion-onset series are put on a 100 Hz grid,
standardised, and cross-correlated over lags within ±``max_lag_s``. The best lag is refined with a
parabola (sub-frame resolution). Confidence is the margin between the best peak and the best
peak more than 80 ms away from it (the only confidence measure that held up on real footage),
scaled by the peak's own height; below ``min_confidence`` the estimate is "cannot tell".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from avalign.describe.features import (
    ENVELOPE_RATE,
    motion_acceleration,
    motion_energy,
    onset_envelope,
    resample_series,
)

MIN_CONFIDENCE = 0.25
# The onset envelope fires on the first 20 ms window that contains an onset (log flux), while
# motion is placed midway between frames; on procedural clips of all 8 categories (4 seeds x 5
# offsets, exact ground truth) the raw estimate read a median 17 ms late for impact-like events.
# Subtracting 15 ms centres the event categories; speech-like (talking_mouth, fan_hum) read early.
ONSET_LATENCY_MS = 15.0


@dataclass(frozen=True)
class SyncEstimate:
    offset_ms: float | None  # None: cannot tell
    confidence: float  # [0, 1]
    peak_corr: float  # normalised correlation at the best lag, [-1, 1]
    method: str = "onset_motion_xcorr"
    candidates: dict = field(default_factory=dict)  # per-estimator raw answers, for the trace

    @property
    def known(self) -> bool:
        return self.offset_ms is not None

    def to_dict(self) -> dict:
        return asdict(self)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std()
    return (x - x.mean()) / sd if sd > 1e-12 else np.zeros_like(x)


def motion_onsets(motion_grid: np.ndarray) -> np.ndarray:
    """Positive change of motion energy: impacts, flashes and mouth openings start motion."""
    if motion_grid.size < 2:
        return np.zeros_like(motion_grid)
    d = np.diff(motion_grid, prepend=motion_grid[:1])
    return np.maximum(d, 0.0) + 0.5 * motion_grid


def xcorr_lags(audio_env: np.ndarray, visual: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cross-correlation c[L] = mean(a[t] * v[t - L]) over the overlap, for |L| <= max_lag.

    One ``np.correlate`` for all lags (the drift search calls this 41 times per clip; a dot per lag
    took ~2 ms a call on a 4 s clip). Lags whose overlap is 10 samples or fewer read 0.
    """
    n = min(audio_env.size, visual.size)
    a, v = _standardise(audio_env[:n]), _standardise(visual[:n])
    lags = np.arange(-max_lag, max_lag + 1)
    full = np.correlate(a, v, mode="full")  # full[n - 1 + L] = sum_t a[t] v[t - L]
    overlap = n - np.abs(lags)
    index = n - 1 + lags
    valid = (overlap > 10) & (index >= 0) & (index < full.size)
    corr = np.zeros(lags.size)
    corr[valid] = full[index[valid]] / overlap[valid]
    return lags, corr


@dataclass(frozen=True)
class _Peak:
    lag: float  # refined lag in grid steps (parabola through the best lag and its neighbours)
    peak: float  # correlation at the best lag
    margin: float  # peak minus the best peak more than ``exclusion`` away (0 when that one is higher)
    on_edge: bool  # the maximum sits on the edge of the search range: the true peak may lie outside


def _best_peak(lags: np.ndarray, corr: np.ndarray, exclusion: float) -> _Peak:
    best = int(np.argmax(corr))
    peak = float(corr[best])
    if best in (0, corr.size - 1):
        return _Peak(float(lags[best]), peak, 0.0, True)
    delta = 0.0
    y0, y1, y2 = corr[best - 1], corr[best], corr[best + 1]
    denom = y0 - 2 * y1 + y2
    if abs(denom) > 1e-12:
        delta = float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5))
    far = np.abs(lags - lags[best]) > exclusion
    second = float(corr[far].max()) if far.any() else 0.0
    return _Peak(float(lags[best] + delta), peak, max(peak - max(second, 0.0), 0.0), False)


def _margin_confidence(best: _Peak) -> float:
    """Margin over the peak, scaled down for peaks below 0.3: the confidence of every estimator
    here except the lips (whose gate is measured separately)."""
    return float(np.clip(best.margin / max(best.peak, 1e-6), 0.0, 1.0) * np.clip(best.peak / 0.3, 0.0, 1.0))


def estimate_offset(audio_env: np.ndarray, motion_grid: np.ndarray, *, rate: float = ENVELOPE_RATE,
                    max_lag_s: float = 1.0, min_confidence: float = MIN_CONFIDENCE,
                    exclusion_s: float = 0.08, onsets: bool = True) -> SyncEstimate:
    """Estimate the audio offset from an onset envelope and a visual series on one grid.

    ``onsets``: correlate against the series' onsets (:func:`motion_onsets`, for motion energy);
    False correlates against the series itself (a cue that already peaks at the event).
    """
    n = min(audio_env.size, motion_grid.size)
    max_lag = int(min(max_lag_s * rate, max(n // 2 - 1, 0)))
    if n < int(rate) or max_lag < 2 or audio_env[:n].std() < 1e-12 or motion_grid[:n].std() < 1e-12:
        return SyncEstimate(None, 0.0, 0.0)
    visual = motion_onsets(motion_grid[:n]) if onsets else motion_grid[:n]
    lags, corr = xcorr_lags(audio_env[:n], visual, max_lag)
    best = _best_peak(lags, corr, exclusion_s * rate)
    if best.on_edge:  # the maximum lies at the end of the search range, or beyond it
        return SyncEstimate(None, 0.0, best.peak, "edge")
    confidence = _margin_confidence(best)
    offset_ms = best.lag / rate * 1000.0 - ONSET_LATENCY_MS
    if confidence < min_confidence or best.peak <= 0:
        return SyncEstimate(None, confidence, best.peak)
    return SyncEstimate(float(offset_ms), confidence, best.peak)


# --- gradual drift: the audio plays a little fast or slow against the picture -----------------

DRIFT_SPEEDS = tuple(round(0.95 + 0.0025 * k, 4) for k in range(41))
"""Candidate playback speeds of the audio against the picture (±5 % in 0.25 % steps)."""
MIN_DRIFT = 0.01  # smaller drifts move onsets by < 40 ms over 4 s: a time shift covers them
MIN_DRIFT_GAIN = 1.2
"""The best warped peak must beat the unwarped one by 20 %. Measured on procedural clips (8
categories x 2 seeds, speeds 0.97-1.03): drifted clips gained 1.17-2.6x (median ~1.6x), undrifted
ones 1.00-1.15x (the bouncing ball, whose bounces slow down and speed up, the highest)."""


@dataclass(frozen=True)
class DriftEstimate:
    speed: float | None  # the audio plays ``speed`` times faster than the picture; None: no drift found
    confidence: float  # the warped estimate's margin confidence
    gain: float  # best warped peak over the unwarped peak
    offset_ms: float | None = None  # the offset left once the drift is undone (anchored at the start)

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_drift(audio_env: np.ndarray, motion_grid: np.ndarray, *, rate: float = ENVELOPE_RATE,
                   max_lag_s: float = 1.0, min_confidence: float = MIN_CONFIDENCE) -> DriftEstimate:
    """Playback-speed error of the audio, by warping its onset envelope against the motion onsets.

    Speed drift anchors at the start (as a resampled track does): audio time t holds the content
    of picture time ``t * speed``; the repair is ``speed_change(1 / speed)``. The answer is a
    speed only when the warp beats the unwarped correlation by ``MIN_DRIFT_GAIN``, the warped
    peak is confident, and the drift is at least ``MIN_DRIFT``.
    """
    n = min(audio_env.size, motion_grid.size)
    max_lag = int(min(max_lag_s * rate, max(n // 2 - 1, 0)))
    if n < int(rate) or max_lag < 2 or audio_env[:n].std() < 1e-12 or motion_grid[:n].std() < 1e-12:
        return DriftEstimate(None, 0.0, 0.0)
    visual = motion_onsets(motion_grid[:n])
    t = np.arange(n, dtype=np.float64)
    peaks = {}
    for speed in DRIFT_SPEEDS:
        warped = np.interp(t / speed, t, audio_env[:n], right=0.0)  # picture time t heard at t / speed
        lags, corr = xcorr_lags(warped, visual, max_lag)
        peaks[speed] = _best_peak(lags, corr, 0.08 * rate)
    speed = max(peaks, key=lambda k: peaks[k].peak)
    best, unwarped = peaks[speed], peaks[1.0]
    gain = best.peak / unwarped.peak if unwarped.peak > 1e-6 else float("inf")
    confidence = _margin_confidence(best)
    if (best.on_edge or abs(speed - 1.0) < MIN_DRIFT - 1e-9 or gain < MIN_DRIFT_GAIN
            or confidence < min_confidence):
        return DriftEstimate(None, confidence, float(min(gain, 99.0)))
    return DriftEstimate(round(float(speed), 5), confidence, float(min(gain, 99.0)),
                         float(best.lag / rate * 1000.0 - ONSET_LATENCY_MS))


def estimate_drift_clip(audio: np.ndarray, sample_rate: int, frames: np.ndarray, times: np.ndarray
                        ) -> DriftEstimate:
    """:func:`estimate_drift` from a clip's audio and frames (full-band onsets, whole-frame motion)."""
    duration = audio.size / sample_rate
    energy, et = motion_energy(frames, times)
    return estimate_drift(onset_envelope(audio, sample_rate), resample_series(energy, et, duration))


def sync_score(estimate: SyncEstimate, *, tolerance_ms: float = 60.0) -> float:
    """Map an offset estimate to [0, 1]: 1 = confidently in sync, 0 = confidently far off,
    0.5 = cannot tell. closeness = exp(-(offset/tolerance)^2 / 2), blended toward 0.5 by confidence."""
    if estimate.offset_ms is None:
        return 0.5
    closeness = float(np.exp(-0.5 * (estimate.offset_ms / tolerance_ms) ** 2))
    c = float(np.clip(estimate.confidence, 0.0, 1.0))
    return float(np.clip(0.5 + (closeness - 0.5) * (0.5 + 0.5 * c), 0.0, 1.0))


# --- the fused estimator: whole-frame motion, or the mouth when a face speaks -----------------

SPEECH_BAND_HZ = (300.0, 3000.0)
MIN_SPEECH_S = 3.0  # shorter speech gives estimates that mostly disagree with the full clip
MOUTH_AGREEMENT_MS = 80.0
# The lower third of a frontal Haar face box, where the mouth moves (fractions of the box).
MOUTH_X = (0.20, 0.80)
MOUTH_Y = (0.62, 0.98)


def face_box(frames: np.ndarray, samples: int = 10) -> tuple[int, int, int, int] | None:
    """Median frontal-face box (x, y, w, h) in pixels over evenly spread frames, or None."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    n, h, w = frames.shape[:3]
    boxes = []
    for i in np.linspace(0, n - 1, min(samples, n)).round().astype(int):
        grey = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
        side = max(16, int(0.12 * min(h, w)))
        found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(found):
            boxes.append(max(found, key=lambda b: b[2] * b[3]))
    if len(boxes) < max(2, samples // 3):
        return None
    x, y, bw, bh = np.median(np.array(boxes, dtype=float), axis=0)
    return int(x), int(y), int(bw), int(bh)


def mouth_motion(frames: np.ndarray, times: np.ndarray, box: tuple[int, int, int, int]
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Frame difference and vertical Farneback flow of the mouth crop, each with its times."""
    import cv2

    h, w = frames.shape[1:3]
    x, y, bw, bh = box
    x0, x1 = int(x + MOUTH_X[0] * bw), int(x + MOUTH_X[1] * bw)
    y0, y1 = int(y + MOUTH_Y[0] * bh), int(min(h, y + MOUTH_Y[1] * bh))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return {}
    crop = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[y0:y1, x0:x1] for f in frames])
    diff = np.abs(np.diff(crop.astype(np.float32), axis=0)).mean(axis=(1, 2))
    flow = np.array([
        np.abs(cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0)[..., 1]).mean()
        for a, b in zip(crop[:-1], crop[1:])
    ])
    t = (np.asarray(times[1:], dtype=float) + np.asarray(times[:-1], dtype=float)) / 2.0
    return {"mouth_diff": (diff, t), "mouth_flow": (flow, t)}


# Lip landmarks (``lips.lip_opening``): the mouth *opening* (positive change of the inner-lip gap)
# against the speech onset envelope. Gate measured on the real clips with speech and a face
# (3 talking heads + the eye-makeup narration, 13 injected offsets each, docs/architecture.md):
# every estimate with peak >= 0.2 and margin >= 0.035 was within ±1 frame; the head whose audio
# reads ~125 ms early at every offset (talking_head_1) and the voice-over peaked below the margin.
LIP_MIN_PEAK = 0.2
LIP_MIN_MARGIN = 0.035


def estimate_lips(speech_env: np.ndarray, opening: np.ndarray, times: np.ndarray, duration_s: float, *,
                  rate: float = ENVELOPE_RATE, max_lag_s: float = 1.0, exclusion_s: float = 0.08) -> SyncEstimate:
    """Offset from per-frame lip opening (NaN: no face in that frame) and the speech onset envelope.

    Confidence is ``margin / (2 * LIP_MIN_MARGIN)`` (capped at 1), so an estimate that passes the
    gate starts at 0.5; below the gate the answer is "cannot tell".
    """
    found = ~np.isnan(opening)
    if found.sum() < 2:
        return SyncEstimate(None, 0.0, 0.0, "lips")
    t = np.asarray(times, dtype=float)
    grid = resample_series(np.interp(t, t[found], opening[found]), t, duration_s, rate)
    opening_onsets = np.maximum(np.diff(grid, prepend=grid[:1]), 0.0)
    n = min(speech_env.size, opening_onsets.size)
    max_lag = int(min(max_lag_s * rate, max(n // 2 - 1, 0)))
    if n < int(rate) or max_lag < 2 or speech_env[:n].std() < 1e-12 or opening_onsets[:n].std() < 1e-12:
        return SyncEstimate(None, 0.0, 0.0, "lips")
    lags, corr = xcorr_lags(speech_env[:n], opening_onsets[:n], max_lag)
    best = _best_peak(lags, corr, exclusion_s * rate)
    confidence = float(min(1.0, best.margin / (2 * LIP_MIN_MARGIN)))
    if best.on_edge or best.peak < LIP_MIN_PEAK or best.margin < LIP_MIN_MARGIN:
        return SyncEstimate(None, confidence, best.peak, "lips")
    return SyncEstimate(float(best.lag / rate * 1000.0 - ONSET_LATENCY_MS), confidence, best.peak, "lips")


IMPACT_REFINE_MS = 40.0
"""A confident motion-energy estimate and an impact estimate within one frame are averaged. On the
default benchmark's procedural clips this moved the bouncing ball's -46 ms error to -36 ms at
-500/-200/-80 ms and every other category by <= 3 ms; on 16 held-out procedural clips
(seeds 5-6, offsets -500..500 ms) it changed no answer across the ±1 frame line."""
IMPACT_AGREEMENT = 0.5
"""An impact estimate counts only where the motion-energy correlation, within a frame of it,
reaches half its own peak.

On the default benchmark every impact estimate that was right sat where motion energy correlated
at >= 80 % of its peak; the wrong ones (a drum loop 1 s off, talking heads) sat at negative
correlation."""


def _agrees(audio_env: np.ndarray, motion_grid: np.ndarray, offset_ms: float, peak: float,
            rate: float = ENVELOPE_RATE) -> bool:
    """Whether the motion-energy cue does not contradict an offset found by another cue."""
    lag = int(round((offset_ms + ONSET_LATENCY_MS) / 1000.0 * rate))
    frame = int(round(0.04 * rate))  # the cues may place one event a frame apart
    n = min(audio_env.size, motion_grid.size)
    lags, corr = xcorr_lags(audio_env[:n], motion_onsets(motion_grid[:n]), abs(lag) + frame)
    near = np.abs(lags - lag) <= frame
    return peak > 0 and float(corr[near].max()) >= IMPACT_AGREEMENT * peak


def estimate_fused(audio: np.ndarray, sample_rate: int, frames: np.ndarray, times: np.ndarray, *,
                   speech_s: float = 0.0, min_confidence: float = MIN_CONFIDENCE) -> SyncEstimate:
    """One offset estimate for a clip, with "cannot tell" as a real answer.

    - At least ``MIN_SPEECH_S`` of speech and a face the mesh finds in half of the frames: the lip
      opening against the 300-3000 Hz speech onset envelope (:func:`estimate_lips`), or "cannot
      tell" below its gate. Whole-frame motion is not trusted on real footage with a face (it
      follows head and camera, not the voice).
    - Speech and a face that only the Haar detector finds (or no mediapipe): the mouth crop's frame
      difference and vertical optical flow must agree within 80 ms and be confident.
    - Otherwise: whole-frame motion against the full-band onset envelope, with the margin
      confidence, refined by the turning points of the motion (``impact``: a bounce or a hit,
      :func:`motion_acceleration`) when the two agree within a frame; where motion energy cannot
      tell, the impact cue alone under the same confidence rule. On real music, applause or
      ambience both mostly abstain, which is the point.
    """
    from avalign.describe import lips

    duration = audio.size / sample_rate
    energy, et = motion_energy(frames, times)
    audio_env = onset_envelope(audio, sample_rate)
    motion_grid = resample_series(energy, et, duration)
    general = estimate_offset(audio_env, motion_grid, min_confidence=min_confidence)
    candidates = {"whole_frame": _brief(general)}
    acc, at = motion_acceleration(frames, times)
    impact = estimate_offset(audio_env, resample_series(acc, at, duration), min_confidence=0.0, onsets=False)
    candidates["impact"] = _brief(impact)
    if general.offset_ms is not None and impact.offset_ms is not None \
            and abs(general.offset_ms - impact.offset_ms) <= IMPACT_REFINE_MS:
        # motion energy peaks at the fastest motion around an event, the turning point at the
        # event itself: two answers a frame apart are averaged
        general = SyncEstimate((general.offset_ms + impact.offset_ms) / 2.0, general.confidence, general.peak_corr)
    elif (general.offset_ms is None and general.method != "edge" and impact.offset_ms is not None
          and impact.confidence >= min_confidence
          and _agrees(audio_env, motion_grid, impact.offset_ms, general.peak_corr)):
        # motion energy cannot tell: where the motion turns may (not when motion energy's best lag
        # lies at the edge of the range: the offset may be beyond it, and a second cue would only
        # find a wrong peak inside it)
        general = SyncEstimate(impact.offset_ms, impact.confidence, impact.peak_corr, "impact")
    whole_frame = "impact" if general.method == "impact" else "whole_frame"
    if speech_s < MIN_SPEECH_S:
        return SyncEstimate(general.offset_ms, general.confidence, general.peak_corr, whole_frame, candidates)
    speech_env = onset_envelope(audio, sample_rate, band_hz=SPEECH_BAND_HZ)
    opening = lips.lip_opening(frames)
    if np.mean(~np.isnan(opening)) >= lips.MIN_FACE_SHARE:
        estimate = estimate_lips(speech_env, opening, times, duration)
        candidates["lips"] = _brief(estimate)
        return SyncEstimate(estimate.offset_ms, estimate.confidence, estimate.peak_corr, "lips", candidates)
    box = face_box(frames)
    if box is None:
        return SyncEstimate(general.offset_ms, general.confidence, general.peak_corr, whole_frame, candidates)
    mouth = {name: estimate_offset(speech_env, resample_series(v, t, duration), min_confidence=0.0)
             for name, (v, t) in mouth_motion(frames, times, box).items()}
    candidates.update({name: _brief(e) for name, e in mouth.items()})
    known = [e for e in mouth.values() if e.offset_ms is not None and e.confidence > 0]
    if len(known) == 2 and abs(known[0].offset_ms - known[1].offset_ms) <= MOUTH_AGREEMENT_MS:
        weights = np.array([e.confidence for e in known])
        offset = float(np.dot(weights, [e.offset_ms for e in known]) / weights.sum())
        confidence = float(min(e.confidence for e in known))
        peak = float(max(e.peak_corr for e in known))
        if confidence >= min_confidence:
            return SyncEstimate(offset, confidence, peak, "mouth", candidates)
        return SyncEstimate(None, confidence, peak, "mouth", candidates)
    return SyncEstimate(None, 0.0, 0.0, "mouth_disagree", candidates)


def _brief(e: SyncEstimate) -> dict:
    return {"offset_ms": None if e.offset_ms is None else round(e.offset_ms, 1),
            "confidence": round(e.confidence, 3), "peak_corr": round(e.peak_corr, 3)}
