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
   ``spectral.py``).

The result is in the same units as the power it was given (|X|^2 per bin and frame).
:func:`noise_frames` works on the time-major (..., N, F) frames of ``spectral.stft_frames`` (what
the actions use), :func:`noise_psd` on torch's (..., F, N) layout.
:func:`stationary_noise_psd` reduces it to one value per frequency (the median over time), for
the estimators that assume stationary noise (spectral gating, wavelet thresholds).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._filters import running_min

SMOOTHING = 0.6
"""Time-smoothing factor of the periodogram (per 75 %-overlap frame)."""

DEFAULT_WINDOW_S = 1.5
"""Length of the minimum search window: longer than a syllable, shorter than noise changes."""

# Bias of the minimum: mean noise power / E[running minimum], for windows of D frames, measured on
# white noise (see tests/actions/test_noise.py which checks the estimate against the truth).
_BIAS_FRAMES = np.array([1.0, 3.0, 9.0, 25.0, 65.0, 187.0, 375.0, 1001.0])
_BIAS_VALUES = np.array([1.0, 1.154, 1.497, 1.993, 2.565, 3.267, 3.751, 4.477])


def minimum_bias(frames: int) -> float:
    """Bias compensation factor for a running minimum over ``frames`` smoothed frames."""
    d = float(min(max(frames, 1), _BIAS_FRAMES[-1]))
    return float(np.interp(math.log(d), np.log(_BIAS_FRAMES), _BIAS_VALUES))


def smooth_frames(power: Tensor, smoothing: float | None = None) -> Tensor:
    """Symmetric exponential smoothing of time-major (..., N, F) power over N (replicate edges).

    One depthwise convolution with the frequency bins as channels: the (N, F) rows are already
    the channels-last layout of a (F, 1, N) image, so no transpose is needed (~2x faster than a
    conv1d over (F, N) rows, which needs one copy in and one out).
    """
    smoothing = SMOOTHING if smoothing is None else smoothing
    half = max(1, int(math.ceil(math.log(1e-3) / math.log(smoothing))))
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


def smooth_power(power: Tensor, smoothing: float | None = None) -> Tensor:
    """:func:`smooth_frames` for torch's (..., F, N) layout."""
    return smooth_frames(power.transpose(-1, -2), smoothing).transpose(-1, -2)


def window_frames(frame_rate: float, window_s: float) -> int:
    """Odd number of frames in the minimum-search window."""
    d = max(1, int(round(window_s * frame_rate)))
    return d if d % 2 == 1 else d + 1


def noise_frames(power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S) -> Tensor:
    """Minimum-statistics noise PSD of time-major (..., N, F) power, same shape and units."""
    if power.dim() < 2:
        raise ValueError(f"power must have shape (..., N, F), got {tuple(power.shape)}")
    if frame_rate <= 0 or window_s <= 0:
        raise ValueError(f"frame_rate and window_s must be > 0, got {frame_rate}, {window_s}")
    n = power.shape[-2]
    smoothed = smooth_frames(power)
    d = window_frames(frame_rate, window_s)
    if d >= 2 * n - 1:
        minimum = smoothed.amin(dim=-2, keepdim=True).expand_as(smoothed)
        effective = n
    else:
        minimum = running_min(smoothed, d, dim=-2)
        effective = d
    return minimum * minimum_bias(effective)


def noise_psd(power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S) -> Tensor:
    """Minimum-statistics noise PSD per bin and frame.

    Args:
        power: |STFT|^2, shape (..., F, N), non-negative.
        frame_rate: STFT frames per second (sample_rate / hop).
        window_s: minimum-search window in seconds (clipped to the clip length).

    Returns:
        Tensor (..., F, N): the noise power estimate in the units of ``power``
        (:func:`noise_frames` on the transposed frames).
    """
    if power.dim() < 2:
        raise ValueError(f"power must have shape (..., F, N), got {tuple(power.shape)}")
    return noise_frames(power.transpose(-1, -2), frame_rate, window_s).transpose(-1, -2)


def stationary_noise_psd(
    power: Tensor, frame_rate: float, window_s: float = DEFAULT_WINDOW_S
) -> Tensor:
    """One noise PSD per frequency: the median over time of :func:`noise_psd`, shape (..., F, 1)."""
    track = noise_psd(power, frame_rate, window_s)
    return track.median(dim=-1, keepdim=True).values
