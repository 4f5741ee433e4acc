"""Fill blanks: find dropouts (near-digital silence inside sound) and conceal them from context.

What counts as a blank (the method leaves this open; decided here):
- a run of at least ``min_gap_ms`` where every sample (all channels) is more than ``depth_db``
  below the clip's active level (95th percentile of 20 ms RMS);
- inside the clip (sound on both sides: a clip that starts or ends in silence is content, not a
  dropout), sudden (the 5 ms on each side are at least 20 dB above the blank threshold: a
  natural pause or a noise gate fades out over tens of ms, a dropout does not) and at most
  ``max_gap_ms`` long (a long silence is more likely meant).

How it is filled (packet-loss concealment, no synthetic noise): the left context is continued
forward and the right context backward by copying a stretch of the clip whose lag best matches
the 20 ms next to the gap (normalised cross-correlation over one more 20 ms of lags, so periodic
sound continues in phase), each copy is scaled to its side's level (within -12..+3 dB), and the
two are cross-faded over the gap with a correlation-aware fade that keeps the level constant.
When a side lacks context the copy repeats with a shorter lag; with no usable context the gap
stays. Samples outside the blanks are never touched, so a clip without blanks comes back
bit-identical.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._checks import check_batch, check_sample_rate, parallel_map

CONTEXT_S = 0.020
"""Template length next to a gap, lag search span and edge-level window (20 ms)."""
LEVEL_S = 0.050
"""Context length whose RMS sets the fill level on each side."""
EDGE_S = 0.005
"""Window beside a blank that must still be loud: a dropout is abrupt, a pause fades out."""
EDGE_MARGIN_DB = 20.0
SILENT_CLIP_DB = -80.0
MAX_GAIN_DB = 3.0
MIN_GAIN_DB = -12.0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) if v.size else 0.0


def find_blanks(
    guide: np.ndarray,
    sample_rate: int,
    min_gap_ms: float = 40.0,
    max_gap_ms: float = 1000.0,
    depth_db: float = 50.0,
) -> list[tuple[int, int]]:
    """Blanks of one clip as [start, end) sample ranges, from its (C, T) float samples."""
    env = np.abs(guide).max(axis=0)
    t = env.shape[0]
    frame = max(1, int(round(CONTEXT_S * sample_rate)))
    n_frames = t // frame
    if n_frames < 1:
        return []
    frames = guide[:, : n_frames * frame].reshape(guide.shape[0], n_frames, frame)
    frame_rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=(0, 2)))
    active = float(np.percentile(frame_rms, 95))
    if active <= 10.0 ** (SILENT_CLIP_DB / 20.0):
        return []
    threshold = active * 10.0 ** (-depth_db / 20.0)
    edge_level = threshold * 10.0 ** (EDGE_MARGIN_DB / 20.0)
    min_len = max(1, int(round(min_gap_ms * sample_rate / 1000.0)))
    max_len = int(round(max_gap_ms * sample_rate / 1000.0))
    edge = max(1, int(round(EDGE_S * sample_rate)))
    blanks = []
    for start, end in _runs(env <= threshold):
        length = end - start
        if length < min_len or length > max_len or start == 0 or end == t:
            continue
        left = guide[:, max(0, start - edge) : start]
        right = guide[:, end : end + edge]
        if _rms(left) >= edge_level and _rms(right) >= edge_level:
            blanks.append((start, end))
    return blanks


def _best_lag(
    signal: np.ndarray, edge: int, length: int, forward: bool, sample_rate: int
) -> int | None:
    """Lag whose context best matches the 20 ms beside ``edge`` (None if there is no room).

    forward=True (left side, ``edge`` = gap start): the gap is continued with
    ``signal[edge - P + i]``; the lag P is chosen so that the 20 ms before ``edge - P`` look
    like the 20 ms before ``edge``. forward=False (right side, ``edge`` = gap end) mirrors this
    with ``signal[i + P]`` and the 20 ms after ``edge``. Lags run over [lo, lo + w] with
    lo = gap length when there is room (one copy, no repetition), else as long as the context
    allows (the copy then repeats, see :func:`_continue`).
    """
    w = max(1, int(round(CONTEXT_S * sample_rate)))
    t = signal.shape[0]
    room = edge if forward else t - edge  # samples of context on that side
    lo = min(length, room - 2 * w)
    if lo < w:
        return None
    lags = np.arange(lo, min(lo + w, room - w) + 1)
    if forward:
        template = signal[edge - w : edge]
        starts = edge - lags - w
    else:
        template = signal[edge : edge + w]
        starts = edge + lags
    windows = np.lib.stride_tricks.sliding_window_view(signal, w)[starts]
    num = windows @ template
    den = np.sqrt((windows * windows).sum(axis=1) * float(template @ template)) + 1e-20
    return int(lags[int(np.argmax(num / den))])


def _continue(x: np.ndarray, start: int, end: int, lag: int, forward: bool) -> np.ndarray:
    """(C, L) copy that continues x across [start, end) with ``lag`` (repeating if lag < L)."""
    length = end - start
    c = x.shape[0]
    if forward:
        buf = np.concatenate([x[:, start - lag : start], np.zeros((c, length))], axis=1)
        for i in range(0, length, lag):
            n = min(lag, length - i)
            buf[:, lag + i : lag + i + n] = buf[:, i : i + n]
        return buf[:, lag:]
    buf = np.concatenate([np.zeros((c, length)), x[:, end : end + lag]], axis=1)
    for i in range(length, 0, -lag):
        n = min(lag, i)
        buf[:, i - n : i] = buf[:, i - n + lag : i + lag]
    return buf[:, :length]


def _scaled(donor: np.ndarray, context: np.ndarray) -> np.ndarray:
    """Donor scaled to the context's RMS, the gain bounded to [MIN_GAIN_DB, MAX_GAIN_DB]."""
    d, c = _rms(donor), _rms(context)
    if d <= 0.0:
        return donor
    gain = min(max(c / d, 10.0 ** (MIN_GAIN_DB / 20.0)), 10.0 ** (MAX_GAIN_DB / 20.0))
    return donor * gain


def conceal(x: np.ndarray, start: int, end: int, sample_rate: int) -> np.ndarray | None:
    """(C, end - start) fill for one blank of x (C, T) float64, or None without context."""
    guide = x.mean(axis=0)
    length = end - start
    lvl = max(1, int(round(LEVEL_S * sample_rate)))
    fills = []
    lag = _best_lag(guide, start, length, True, sample_rate)
    if lag is not None:
        fills.append(
            _scaled(_continue(x, start, end, lag, True), x[:, max(0, start - lvl) : start])
        )
    lag_r = _best_lag(guide, end, length, False, sample_rate)
    if lag_r is not None:
        fills.append(_scaled(_continue(x, start, end, lag_r, False), x[:, end : end + lvl]))
    if not fills:
        return None
    if len(fills) == 1:
        return fills[0]
    left, right = fills
    u = 0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)  # 0 -> 1
    num = float((left * right).sum())
    den = math.sqrt(float((left * left).sum()) * float((right * right).sum())) + 1e-20
    rho = max(0.0, num / den)
    norm = np.sqrt((1 - u) ** 2 + u**2 + 2 * rho * u * (1 - u))
    return (left * (1 - u) + right * u) / norm


def fill_blanks(
    x: Tensor,
    sample_rate: int,
    min_gap_ms: float = 40.0,
    max_gap_ms: float = 1000.0,
    depth_db: float = 50.0,
) -> tuple[Tensor, list[list[tuple[float, float]]]]:
    """Detect and conceal blanks in every item of a (B, C, T) batch.

    Returns the filled audio (items without blanks are bit-identical copies) and, per item, the
    list of ``(start_s, dur_s)`` blanks that were filled.
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    for name, value, lo in (
        ("min_gap_ms", min_gap_ms, 1.0),
        ("max_gap_ms", max_gap_ms, 1.0),
        ("depth_db", depth_db, 1.0),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < lo
        ):
            raise ValueError(f"{name} must be a finite number >= {lo}, got {value!r}")
    if max_gap_ms < min_gap_ms:
        raise ValueError(f"max_gap_ms ({max_gap_ms}) must be >= min_gap_ms ({min_gap_ms})")

    def patches(item: Tensor) -> list[tuple[int, int, np.ndarray]]:
        samples = item.detach().to("cpu", torch.float64).numpy()
        found = find_blanks(samples, sample_rate, min_gap_ms, max_gap_ms, depth_db)
        fills = [(start, end, conceal(samples, start, end, sample_rate)) for start, end in found]
        return [(start, end, patch) for start, end, patch in fills if patch is not None]

    out = x.clone()
    reports: list[list[tuple[float, float]]] = []
    # items are independent numpy work: with several torch threads, several items at a time
    for i, fills in enumerate(parallel_map(patches, list(x))):
        for start, end, patch in fills:
            out[i, :, start:end] = torch.from_numpy(patch).to(out.device, out.dtype)
        reports.append([(s / sample_rate, (e - s) / sample_rate) for s, e, _ in fills])
    return out, reports
