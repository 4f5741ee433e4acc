"""All pure action functions in one namespace (torchaudio.functional style).

Every function takes a (B, C, T) float tensor and the sample rate, accepts per-item parameters
(a number, a list of B numbers or a (B,) tensor), works on CPU or CUDA and keeps the length.
``fill_blanks`` and ``suppress_event`` return ``(audio, per-item report)``; so do ``deepfilternet``
and ``rnnoise``, which run on the CPU item by item (their C runtimes are single-stream); a CUDA
input comes back on CUDA.
"""

from __future__ import annotations

from .blanks import fill_blanks, find_blanks
from .denoise import spectral_gating, spectral_subtraction, wavelet_denoise, wiener_filter
from .isolated import find_isolated_events, suppress_event
from .level import integrated_loudness, limit_true_peak, true_peak, volume_adjust
from .neural import deepfilternet, rnnoise
from .noise import noise_psd, stationary_noise_psd
from .timing import pitch_change, shift_samples, speed_change, time_shift

__all__ = [
    "deepfilternet",
    "fill_blanks",
    "find_blanks",
    "find_isolated_events",
    "integrated_loudness",
    "limit_true_peak",
    "noise_psd",
    "pitch_change",
    "rnnoise",
    "shift_samples",
    "spectral_gating",
    "spectral_subtraction",
    "speed_change",
    "stationary_noise_psd",
    "suppress_event",
    "time_shift",
    "true_peak",
    "volume_adjust",
    "wavelet_denoise",
    "wiener_filter",
]
