"""Weights-free measurements of audio and frames: the evidence the describers and the scorer share.

All functions are pure numpy on one clip. Times are seconds on the clip's timeline (t=0 is the
first video frame, see ``avalign.media.decode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENVELOPE_RATE = 100.0  # Hz: onset envelope and motion energy are compared on this grid
_EPS = 1e-10


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """(n_frames, win) view of a 1-D signal, zero-padded at the end to a whole frame."""
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    n = 1 + (x.size - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def power_spectrogram(x: np.ndarray, sample_rate: int, *, win_s: float = 0.025,
                      hop_s: float = 0.010) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|STFT|^2 with a Hann window, not centred. Returns (power (F, N), freqs, frame centre times)."""
    win = max(16, int(round(win_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    frames = _frames(np.asarray(x, dtype=np.float64), win, hop) * np.hanning(win)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)).T ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    times = (np.arange(power.shape[1]) * hop + win / 2.0) / sample_rate
    return power, freqs, times


def onset_envelope(x: np.ndarray, sample_rate: int, *, band_hz: tuple[float, float] | None = None,
                   rate: float = ENVELOPE_RATE) -> np.ndarray:
    """Half-wave-rectified log spectral flux on a ``rate`` Hz grid, sample k at time k / rate.

    A 20 ms window with a 10 ms hop; the flux of frame i (difference to frame i-1) is placed at the
    leading edge of the new energy, i.e. between the two frame centres, which removes most of the
    early/late bias of a centred STFT (calibrated on procedural clicks in the tests).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n_out = int(np.ceil(x.size / sample_rate * rate))
    if x.size == 0 or n_out == 0:
        return np.zeros(0)
    power, freqs, times = power_spectrogram(x, sample_rate, win_s=0.020, hop_s=1.0 / rate)
    if band_hz is not None:
        keep = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
        power = power[keep]
    # A per-bin floor at twice the bin's 20th-percentile power keeps stationary noise from
    # producing flux of its own: only rises well above the noise floor count as onsets.
    floor = 2.0 * np.percentile(power, 20, axis=1, keepdims=True)
    logp = np.log10(power + floor + 1e-8)
    flux = np.maximum(np.diff(logp, axis=1), 0.0).sum(axis=0)
    flux_times = (times[1:] + times[:-1]) / 2.0
    grid = np.arange(n_out) / rate
    env = np.interp(grid, flux_times, flux, left=0.0, right=0.0) if flux.size else np.zeros(n_out)
    return env


def motion_energy(frames: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute grey-level difference between consecutive frames.

    Returns (energy (N-1,), times (N-1,)): each difference sits midway between its two frames'
    presentation times, which is unbiased for an event rendered at the first frame after it.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 2:
        return np.zeros(0), np.zeros(0)
    grey = frames.astype(np.float32).mean(axis=3)
    diff = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2)) / 255.0
    t = np.asarray(times_s, dtype=np.float64)
    return diff.astype(np.float64), (t[1:] + t[:-1]) / 2.0


def motion_acceleration(frames: np.ndarray, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How sharply the moving part of the picture changes direction: impacts and bounces.

    The centroid of each frame difference tracks what moves; the magnitude of its second
    difference peaks where a ball hits the floor or a hammer stops, which is where the sound is,
    while the difference energy itself peaks at the fastest motion around the impact. Returns
    (values (N-3,), times (N-3,)) at the middle difference's time.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 4:
        return np.zeros(0), np.zeros(0)
    t = np.asarray(times_s, dtype=np.float64)
    mid = ((t[1:] + t[:-1]) / 2.0)[1:-1]
    diff = np.abs(np.diff(frames.astype(np.float32).mean(axis=3), axis=0))
    h, w = diff.shape[1:]
    weight = diff.sum(axis=(1, 2))
    cy = (diff.sum(axis=2) * np.arange(h)).sum(axis=1) / np.maximum(weight, 1e-6)
    cx = (diff.sum(axis=1) * np.arange(w)).sum(axis=1) / np.maximum(weight, 1e-6)
    # a (nearly) still frame pair has no meaningful centroid: interpolate it from its neighbours
    moving = weight > 0.05 * max(float(np.median(weight)), 1e-6)
    if moving.sum() < 2:
        return np.zeros(mid.size), mid
    k = np.arange(weight.size)
    cy, cx = np.interp(k, k[moving], cy[moving]), np.interp(k, k[moving], cx[moving])
    return np.hypot(np.diff(cy, n=2), np.diff(cx, n=2)).astype(np.float64), mid


def resample_series(values: np.ndarray, times: np.ndarray, duration_s: float,
                    rate: float = ENVELOPE_RATE) -> np.ndarray:
    """Linear interpolation of an irregular series onto a ``rate`` Hz grid covering ``duration_s``."""
    n = int(np.ceil(duration_s * rate))
    if values.size == 0 or n <= 0:
        return np.zeros(max(n, 0))
    grid = np.arange(n) / rate
    return np.interp(grid, times, values, left=values[0], right=values[-1])


@dataclass(frozen=True)
class LevelStats:
    """Level measurements of one clip (all in dB)."""

    rms_dbfs: float
    peak_dbfs: float
    snr_db: float
    silence_fraction: float
    clipped_fraction: float
    gaps: list[tuple[float, float]]  # (start_s, duration_s) of digital-silence runs inside the clip


def level_stats(x: np.ndarray, sample_rate: int, *, min_gap_s: float = 0.04) -> LevelStats:
    """RMS, peak, a blind SNR estimate, the silent share, clipping and dropout gaps.

    SNR: ``blind_snr_db``. Silence: 20 ms frames below -60 dBFS.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return LevelStats(-120.0, -120.0, 0.0, 1.0, 0.0, [])
    rms = float(np.sqrt(np.mean(x**2)))
    peak = float(np.max(np.abs(x)))
    snr = blind_snr_db(x, sample_rate)
    frame_rms = np.sqrt(np.mean(_frames(x, int(0.02 * sample_rate), int(0.02 * sample_rate)) ** 2, axis=1))
    silence = float(np.mean(frame_rms < 1e-3)) if frame_rms.size else 1.0
    clipped = float(np.mean(np.abs(x) >= 0.999))
    return LevelStats(
        rms_dbfs=float(20 * np.log10(rms + _EPS)),
        peak_dbfs=float(20 * np.log10(peak + _EPS)),
        snr_db=float(np.clip(snr, -20.0, 60.0)),
        silence_fraction=silence,
        clipped_fraction=clipped,
        gaps=dropouts(find_gaps(x, sample_rate, min_gap_s=min_gap_s), x.size / sample_rate),
    )


def dropouts(gaps: list[tuple[float, float]], duration_s: float, *, max_gap_s: float = 1.0,
             max_share: float = 0.25) -> list[tuple[float, float]]:
    """Keep silent runs that look like dropouts, not like the content's own pauses.

    Content such as ticks or a metronome is mostly digital silence between events; a dropout is
    a short hole in otherwise continuous sound. So: each run at most ``max_gap_s``, and all runs
    together at most ``max_share`` of the clip; otherwise the silence is the content's.
    """
    short = [g for g in gaps if g[1] <= max_gap_s]
    if not short or sum(d for _, d in gaps) > max_share * duration_s:
        return []
    return short


def blind_snr_db(x: np.ndarray, sample_rate: int) -> float:
    """SNR without a reference: the minimum-statistics noise PSD that the denoisers share
    (``avalign.actions.noise``, bias-compensated), against the power above it.

    Frames of digital silence (dropouts, muted heads) are left out: they would pull the noise
    floor to zero. Capped to [-20, 60] dB. Non-stationary interference (babble, another clip)
    is partly counted as signal, as it is for every stationary-noise estimator.
    """
    import torch

    from avalign.actions.noise import stationary_noise_psd
    from avalign.actions.spectral import stft, stft_config

    x = np.asarray(x, dtype=np.float32).reshape(-1)
    cfg = stft_config(sample_rate)
    power = stft(torch.from_numpy(x)[None, None, :], cfg).abs().pow(2)[0, 0]  # (F, N)
    active = power.sum(dim=0) > 1e-10 * cfg.n_fft
    if int(active.sum()) < 4:
        return 60.0
    power = power[:, active]
    noise = stationary_noise_psd(power, cfg.frame_rate(sample_rate))[:, 0]
    signal = torch.clamp(power.mean(dim=1) - noise, min=0.0).sum()
    snr = 10.0 * torch.log10((signal + _EPS) / (noise.sum() + _EPS))
    return float(np.clip(float(snr), -20.0, 60.0))


def find_gaps(x: np.ndarray, sample_rate: int, *, min_gap_s: float = 0.04,
              threshold: float = 1e-5) -> list[tuple[float, float]]:
    """Runs of digital silence (|x| < threshold) at least ``min_gap_s`` long, strictly inside
    sound (a silent head or tail is not a dropout). Returns (start_s, duration_s) pairs."""
    x = np.asarray(x).reshape(-1)
    quiet = np.abs(x) < threshold
    if not quiet.any() or quiet.all():
        return []
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    min_len = int(min_gap_s * sample_rate)
    return [
        (round(s / sample_rate, 4), round((e - s) / sample_rate, 4))
        for s, e in zip(starts, ends)
        if e - s >= min_len and s > 0 and e < x.size
    ]
