"""The one noise estimate every denoiser uses: minimum statistics over the STFT power.

Why not "the first 0.5 s is noise": in real clips speech or music often starts at frame 0, and
noise changes over a clip. Minimum statistics (Martin 2001, simplified for offline use) needs no
voice-activity decision: in every frequency bin the smoothed periodogram falls to the noise
level in the pauses between syllables/notes, so the minimum over a window of ~1.5 s, divided by
the known bias of a minimum, tracks the noise power spectral density (PSD) even while the signal
is present.

Steps, all batched over any leading dims:
1. smooth |X|^2 over time with a symmetric exponential kernel (weight ``SMOOTHING**|k|``; offline
   so no delay);
2. take the running minimum over ``window_s`` (centred; ``_filters.running_min``);
3. multiply by the bias of the minimum (a function of the number of frames in the window, from a
   table measured on white Gaussian noise for this smoothing and the 75 %-overlap Hann frames of
   ``spectral.py``, and a second table for 50 % overlap, which the Wiener filter uses).

The result is in the same units as the power it was given (|X|^2 per bin and frame).
:func:`noise_frames` works on the time-major (..., N, F) frames of ``spectral.stft_frames`` (what
the actions use), :func:`noise_psd` on torch's (..., F, N) layout.
:func:`stationary_noise_psd` reduces it to one value per frequency (the median over time), for
the estimators that assume stationary noise (spectral gating, wavelet thresholds).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._filters import running_min
from ._jit import numba_callee, numba_compile

SMOOTHING = 0.6
"""Time-smoothing factor of the periodogram per 75 %-overlap frame (8 ms at 16 kHz); with 50 %
overlap the same time constant is 0.6^2 per frame (:func:`smoothing_for`)."""

DEFAULT_WINDOW_S = 1.5
"""Length of the minimum search window: longer than a syllable, shorter than noise changes."""

# Bias of the minimum: mean noise power / E[running minimum], for windows of D frames, measured on
# white noise (16 x 90 s, 512-point Hann frames, smoothing_for(overlap); tests/actions/
# test_noise.py checks the estimate against the truth). Frames at 50 % overlap are nearly
# independent, so the minimum over as many of them falls lower: a larger bias.
_BIAS_FRAMES = np.array([1.0, 3.0, 9.0, 25.0, 65.0, 187.0, 375.0, 1001.0])
_BIAS_VALUES = {
    4: np.array([1.0, 1.154, 1.497, 1.993, 2.565, 3.267, 3.751, 4.477]),
    2: np.array([1.0, 1.352, 1.936, 2.672, 3.481, 4.478, 5.190, 6.269]),
}


def smoothing_for(overlap: int) -> float:
    """Per-frame smoothing factor with the same time constant as :data:`SMOOTHING` at 75 %."""
    _check_overlap(overlap)
    return SMOOTHING ** (4 / overlap)


def _check_overlap(overlap: int) -> None:
    if overlap not in _BIAS_VALUES:
        raise ValueError(f"overlap must be one of {sorted(_BIAS_VALUES)}, got {overlap}")


def minimum_bias(frames: int, overlap: int = 4) -> float:
    """Bias compensation factor for a running minimum over ``frames`` smoothed frames."""
    _check_overlap(overlap)
    d = float(min(max(frames, 1), _BIAS_FRAMES[-1]))
    return float(np.interp(math.log(d), np.log(_BIAS_FRAMES), _BIAS_VALUES[overlap]))


def smoothing_half(smoothing: float) -> int:
    """Frames on each side where :func:`smooth_frames`' kernel smoothing^|k| is cut (>= 1e-3)."""
    return max(1, int(math.ceil(math.log(1e-3) / math.log(smoothing))))


def smooth_frames(power: Tensor, smoothing: float | None = None) -> Tensor:
    """Symmetric exponential smoothing of time-major (..., N, F) power over N (replicate edges).

    One depthwise convolution with the frequency bins as channels: the (N, F) rows are already
    the channels-last layout of a (F, 1, N) image, so no transpose is needed (~2x faster than a
    conv1d over (F, N) rows, which needs one copy in and one out).
    """
    smoothing = SMOOTHING if smoothing is None else smoothing
    half = smoothing_half(smoothing)
    if power.device.type == "cpu" and power.dtype == torch.float32 and power.dim() >= 2:
        kernel = _compiled_smoothing()
        if kernel is not None:
            rows = power.detach().reshape(-1, power.shape[-2], power.shape[-1]).contiguous()
            out = torch.empty_like(rows)
            kernel(rows.numpy(), np.float32(smoothing), half, out.numpy())
            return out.reshape(power.shape)
    k = torch.arange(-half, half + 1, device=power.device, dtype=power.dtype)
    kernel = smoothing ** k.abs()
    kernel = kernel / kernel.sum()
    lead, (n, f) = power.shape[:-2], power.shape[-2:]
    flat = power.reshape(-1, n, f)
    padded = torch.cat(
        [flat[:, :1].expand(-1, half, -1), flat, flat[:, -1:].expand(-1, half, -1)], dim=1
    )
    image = padded.unsqueeze(1).permute(0, 3, 1, 2)  # (R, F, 1, N + 2 half), channels-last
    weight = kernel.view(1, 1, 1, -1).expand(f, 1, 1, -1)
    weight = weight.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(image, weight, groups=f)  # (R, F, 1, N)
    return out.permute(0, 2, 3, 1).reshape(*lead, n, f)


def _smoothing_loops(x, s, half, out):  # type: ignore[no-untyped-def]
    """:func:`smooth_frames`' truncated kernel s^|k|, |k| <= half, along axis 1 of (R, N, F)
    with replicated edges, for numba: :func:`_smooth_row` on every row."""
    rows, n, bins = x.shape
    fwd = np.empty((n + 2 * half, bins), dtype=np.float32)
    bwd = np.empty((n + 2 * half, bins), dtype=np.float32)
    for r in range(rows):
        _smooth_row(x[r], s, half, fwd, bwd, out[r])


@numba_callee(fastmath=True, error_model="numpy")
def _smooth_row(x, s, half, fwd, bwd, out):  # type: ignore[no-untyped-def]
    """One (N, F) row of :func:`_smoothing_loops` into ``out``, as two first-order recursions
    (``fwd``, ``bwd``: scratch of at least N + 2 half frames).

    sum_{k=0..h} s^k v[j-k] = y[j] - s^(h+1) y[j-h-1] for y[j] = v[j] + s y[j-1] over the padded
    row v (y = 0 before it), and the same backwards; the centre tap is counted twice, so it is
    subtracted once. Four passes over the bins of each frame instead of 2 h + 1 multiply-adds
    (the depthwise convolution took ~2 ms for a 10 s clip at 16 kHz, this ~0.3 ms); equal to the
    convolution within float32 rounding (tests/actions/test_noise.py).
    """
    n, bins = x.shape
    m = n + 2 * half
    tail = s ** (half + 1)
    norm = np.float32(0.0)
    w = np.float32(1.0)
    for _ in range(half):
        norm += w
        w *= s
    norm = np.float32(1.0) / (np.float32(2.0) * (norm + w) - np.float32(1.0))
    for j in range(m):
        src = x[min(max(j - half, 0), n - 1)]
        row = fwd[j]
        if j == 0:
            for f in range(bins):
                row[f] = src[f]
        else:
            prev = fwd[j - 1]
            for f in range(bins):
                row[f] = src[f] + s * prev[f]
    for j in range(m - 1, -1, -1):
        src = x[min(max(j - half, 0), n - 1)]
        row = bwd[j]
        if j == m - 1:
            for f in range(bins):
                row[f] = src[f]
        else:
            nxt = bwd[j + 1]
            for f in range(bins):
                row[f] = src[f] + s * nxt[f]
    for i in range(n):
        j = i + half
        src = x[i]
        target = out[i]
        before = fwd[j - half - 1] if j - half - 1 >= 0 else fwd[0]
        after = bwd[j + half + 1] if j + half + 1 < m else bwd[0]
        keep_before = tail if j - half - 1 >= 0 else np.float32(0.0)
        keep_after = tail if j + half + 1 < m else np.float32(0.0)
        cur_f = fwd[j]
        cur_b = bwd[j]
        for f in range(bins):
            causal = cur_f[f] - keep_before * before[f]
            anti = cur_b[f] - keep_after * after[f]
            target[f] = (causal + anti - src[f]) * norm


@lru_cache(maxsize=1)
def _compiled_smoothing():  # type: ignore[no-untyped-def]
    """``_smoothing_loops`` compiled by numba (cached on disk), or None without numba."""
    return numba_compile(_smoothing_loops, calls=(_smooth_row,), fastmath=True, error_model="numpy")


def smooth_power(power: Tensor, smoothing: float | None = None) -> Tensor:
    """:func:`smooth_frames` for torch's (..., F, N) layout."""
    return smooth_frames(power.transpose(-1, -2), smoothing).transpose(-1, -2)


def window_frames(frame_rate: float, window_s: float) -> int:
    """Odd number of frames in the minimum-search window."""
    d = max(1, int(round(window_s * frame_rate)))
    return d if d % 2 == 1 else d + 1


class TrackSettings(NamedTuple):
    """What :func:`noise_frames` does to a clip of a given length: the smoothing factor and
    its half-width in frames, the minimum-search window (odd; 2 N - 1 frames, the whole clip
    from every frame, when the clip is shorter than the window) and the bias the minima are
    multiplied by. A fused kernel reads these to compute the same track."""

    smoothing: float
    half: int
    width: int
    bias: float


def track_settings(
    n_frames: int, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, overlap: int = 4
) -> TrackSettings:
    """:class:`TrackSettings` of :func:`noise_frames` for ``n_frames`` frames."""
    if frame_rate <= 0 or window_s <= 0:
        raise ValueError(f"frame_rate and window_s must be > 0, got {frame_rate}, {window_s}")
    smoothing = smoothing_for(overlap)
    d = window_frames(frame_rate, window_s)
    half = smoothing_half(smoothing)
    whole = 2 * max(n_frames, 1) - 1
    if d >= whole:  # every window holds the whole clip: its minimum, with the clip's bias
        return TrackSettings(smoothing, half, whole, minimum_bias(n_frames, overlap))
    return TrackSettings(smoothing, half, d, minimum_bias(d, overlap))


def noise_frames(
    power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, overlap: int = 4
) -> Tensor:
    """Minimum-statistics noise PSD of time-major (..., N, F) power, same shape and units.
    ``overlap``: frames per window length of the STFT the power comes from (4 or 2)."""
    if power.dim() < 2:
        raise ValueError(f"power must have shape (..., N, F), got {tuple(power.shape)}")
    n = power.shape[-2]
    settings = track_settings(n, frame_rate, window_s, overlap)
    smoothed = smooth_frames(power, settings.smoothing)
    if settings.width >= 2 * n - 1:
        minimum = smoothed.amin(dim=-2, keepdim=True).expand_as(smoothed)
        return minimum * settings.bias
    # the bias applied as the minima are written: no pass of its own over the track
    return running_min(smoothed, settings.width, dim=-2, scale=settings.bias)


def noise_psd(
    power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, overlap: int = 4
) -> Tensor:
    """Minimum-statistics noise PSD per bin and frame.

    Args:
        power: |STFT|^2, shape (..., F, N), non-negative.
        frame_rate: STFT frames per second (sample_rate / hop).
        window_s: minimum-search window in seconds (clipped to the clip length).
        overlap: frames per window length of the STFT (4: 75 %, 2: 50 %).

    Returns:
        Tensor (..., F, N): the noise power estimate in the units of ``power``
        (:func:`noise_frames` on the transposed frames).
    """
    if power.dim() < 2:
        raise ValueError(f"power must have shape (..., F, N), got {tuple(power.shape)}")
    return noise_frames(power.transpose(-1, -2), frame_rate, window_s, overlap).transpose(-1, -2)


def stationary_noise_psd(
    power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S, overlap: int = 4
) -> Tensor:
    """One noise PSD per frequency: the median over time of :func:`noise_psd`, shape (..., F, 1)."""
    track = noise_psd(power, frame_rate, window_s, overlap)
    return track.median(dim=-1, keepdim=True).values
