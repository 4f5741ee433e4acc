"""Timing actions: speed change, pitch change (tempo kept) and time shift, on (B, C, T) batches.

All three keep the input length exactly, so the video they belong to keeps its duration. Each
has a time map (output second -> input second) that the edit objects expose:

- speed_change(factor):   t_in = t_out * factor   (factor 1.1 = 10 % faster)
- pitch_change(semitones): t_in = t_out           (tempo unchanged)
- time_shift(shift_ms):   t_in = t_out - shift    (positive shift = audio later)

Speed and pitch use the band-limited interpolator of ``resample.py`` at exact (irrational if need
be) ratios. Pitch is a phase-vocoder time stretch by 2^(s/12) (one batched STFT pass) read back
at 2^(s/12) samples per sample; ``torchaudio.functional.pitch_shift`` is not used because its
integer-ratio resampler makes it take seconds per clip.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import ParamLike, check_batch, check_sample_rate, cpu_chunked, groups, per_item
from .resample import ROLLOFF, as_small_fraction, interpolate, interpolate_rational
from .spectral import istft, stft, stft_config

SPEED_TAIL_FADE_S = 0.010
"""When speeding up, the last 10 ms of content fade out before the silent tail (no click)."""


def content_length(length: int, factor: float) -> int:
    """Output samples that carry content when reading ``length`` input samples at ``factor``."""
    return min(length, int(math.floor((length - 1) / factor)) + 1)


@cpu_chunked("factor")
def speed_change(x: Tensor, sample_rate: int, factor: ParamLike) -> Tensor:
    """Play audio ``factor`` times faster (pitch moves with it, like a tape), same length.

    Output sample n is the input at n * factor (band-limited, anti-aliased when factor > 1); a
    factor that is a small fraction (1.1 = 11/10) runs as one polyphase convolution with the same
    kernel, any other (1.001) through the table interpolator.
    Speeding up (factor > 1) leaves the end of the output without content: it is silence, and the
    last 10 ms of content fade out. Slowing down (factor < 1) drops what no longer fits.

    Args:
        x: (B, C, T) float audio.
        sample_rate: Hz (used for the tail fade).
        factor: > 0 per item; 1.0 returns an exact copy.
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, c, t = x.shape
    factors = per_item(factor, b, "factor", minimum=0.0, exclusive_minimum=True)
    out = x.clone()
    for value, items in groups(factors).items():
        if value == 1.0:
            continue
        n = content_length(t, value)
        rows = x[items].reshape(-1, t)
        cutoff = ROLLOFF * min(1.0, 1.0 / value)
        fraction = as_small_fraction(value)
        if fraction is not None:  # 1.1 = 11/10: one polyphase conv, same kernel
            y = interpolate_rational(rows, *fraction, n, cutoff=cutoff)
        else:
            positions = torch.arange(n, dtype=torch.float64) * value
            y = interpolate(rows, positions, cutoff=cutoff)
        if n < t:
            fade = min(n, max(1, int(round(SPEED_TAIL_FADE_S * sample_rate))))
            ramp = 0.5 * (1 + torch.cos(torch.linspace(0, math.pi, fade, device=x.device)))
            y[:, n - fade :] *= ramp.to(y.dtype)
            y = torch.nn.functional.pad(y, (0, t - n))
        out[items] = y.reshape(len(items), c, t).to(x.dtype)
    return out


LOCK_BINS = 2
"""Identity phase locking reference: the loudest bin within +-2 bins (a Hann main lobe)."""


def _lock_reference(mag: Tensor) -> Tensor:
    """For every bin of (..., F) magnitudes, the index of the loudest bin within +-LOCK_BINS.

    Inside a partial's main lobe that is the partial's peak bin, so the bins of one partial
    share one phase trajectory (a max-pool with indices; much cheaper than a nearest-peak search).
    """
    n_freq = mag.shape[-1]
    width = 2 * LOCK_BINS + 1
    _, idx = torch.nn.functional.max_pool1d(
        mag.reshape(-1, 1, n_freq), width, stride=1, padding=LOCK_BINS, return_indices=True
    )
    return idx.reshape(mag.shape)


def _phase_vocoder(spec: Tensor, stretch: float, hop: int) -> Tensor:
    """Time-stretch (R, F, N) complex frames by ``stretch`` (>1 = longer): ceil(N * stretch) frames.

    Output frame k reads input position k / stretch: magnitudes are interpolated between the two
    neighbouring input frames; phases advance by each bin's instantaneous frequency (the
    principal-value deviation from the bin centre between those two frames), accumulated with a
    cumulative sum so the pass is vectorised. Identity phase locking (after Laroche & Dolson
    1999): every bin keeps its input phase offset to the loudest bin near it (its partial's
    peak), whose phase is the accumulated one. Without it the bins of one partial drift apart
    (phasiness: a stretched sine loses up to half its amplitude). Works time-major (R, N, F) so
    the per-frame ops are contiguous.
    """
    n_freq, n = spec.shape[-2], spec.shape[-1]
    frames = spec.transpose(-1, -2)  # (R, N, F)
    steps = torch.arange(0, n, 1.0 / stretch, dtype=torch.float64, device=spec.device)
    i0 = steps.floor().long()
    alpha = (steps - i0.to(torch.float64)).to(torch.float32).unsqueeze(-1)
    mag_in = torch.nn.functional.pad(frames.abs(), (0, 0, 0, 1))
    phase_in = frames.angle()
    advance = torch.linspace(0, math.pi * hop, n_freq, device=spec.device)
    step = phase_in[..., 1:, :] - phase_in[..., :-1, :] - advance
    step = step - 2 * math.pi * torch.round(step / (2 * math.pi)) + advance
    step = torch.nn.functional.pad(step, (0, 0, 0, 1))  # per input pair (i, i + 1)
    mag = torch.lerp(mag_in.index_select(-2, i0), mag_in.index_select(-2, i0 + 1), alpha)
    delta = step.index_select(-2, i0)
    accumulated = torch.cat([phase_in[..., :1, :], delta[..., :-1, :]], dim=-2).cumsum(dim=-2)
    angle0 = phase_in.index_select(-2, i0)
    ref = _lock_reference(mag)
    phase = accumulated.gather(-1, ref) + angle0 - angle0.gather(-1, ref)
    return torch.polar(mag, phase).transpose(-1, -2)  # one pass instead of cos, sin, complex


@cpu_chunked("semitones")
def pitch_change(x: Tensor, sample_rate: int, semitones: ParamLike) -> Tensor:
    """Shift pitch by ``semitones`` (positive = higher) without changing tempo or length.

    The STFT (``spectral.py`` frames) is time-stretched by r = 2^(s/12) with a phase vocoder,
    and the stretched signal is read at r samples per output sample (band-limited), so every
    frequency is multiplied by r while events stay where they were. Outside the clip counts as
    silence, so a clip that starts or ends mid-sound gets a short onset artifact (a few ms, up
    to ~+2 dB) at that edge, as any STFT method does.

    Args:
        x: (B, C, T) float audio.
        sample_rate: Hz.
        semitones: per item, in [-24, 24]; 0 returns an exact copy.
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, c, t = x.shape
    steps = per_item(semitones, b, "semitones", minimum=-24.0, maximum=24.0)
    cfg = stft_config(sample_rate)
    out = x.clone()
    for value, items in groups(steps).items():
        if value == 0.0:
            continue
        ratio = 2.0 ** (value / 12.0)
        rows = x[items].reshape(-1, t).float()
        # one frame of silence on each side keeps the clip's edges away from the outermost
        # frames, which the inverse STFT only half reconstructs (they overshoot once stretched)
        pad = cfg.n_fft
        rows = torch.nn.functional.pad(rows, (pad, pad))
        stretched = _phase_vocoder(stft(rows, cfg), ratio, cfg.hop)
        slow = istft(stretched, cfg, int(math.ceil((t + 2 * pad) * ratio)) + 1)
        positions = (torch.arange(t, dtype=torch.float64) + pad) * ratio
        y = interpolate(slow, positions, cutoff=ROLLOFF * min(1.0, 1.0 / ratio))
        out[items] = y.reshape(len(items), c, t).to(x.dtype)
    return out


def shift_samples(shift_ms: float, sample_rate: int) -> int:
    """The whole number of samples a shift of ``shift_ms`` moves by (round half away from 0)."""
    exact = shift_ms * sample_rate / 1000.0
    return int(math.copysign(math.floor(abs(exact) + 0.5), exact))


@cpu_chunked("shift_ms")
def time_shift(x: Tensor, sample_rate: int, shift_ms: ParamLike) -> Tensor:
    """Move audio by ``shift_ms`` (positive = later, a delay), same length, vacated part silent.

    The shift is a whole number of samples, ``shift_samples(shift_ms, sample_rate)``, so it is
    exact (no interpolation); shifts of the full length or more give silence.
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, _, t = x.shape
    shifts = per_item(shift_ms, b, "shift_ms")
    out = torch.zeros_like(x)
    for i, ms in enumerate(shifts):
        k = shift_samples(ms, sample_rate)
        if k >= 0 and k < t:
            out[i, :, k:] = x[i, :, : t - k]
        elif k < 0 and -k < t:
            out[i, :, : t + k] = x[i, :, -k:]
    return out
