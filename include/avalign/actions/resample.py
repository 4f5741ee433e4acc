"""Band-limited interpolation at arbitrary positions (Kaiser-windowed sinc), and x4 oversampling.

Why not ``torchaudio.functional.resample``: it needs an integer ratio ``orig/new`` and its kernels
are ``orig`` taps wide after gcd reduction, so a speed factor of 1.001 (1001:1000) or a pitch
ratio of 2**(1/12) costs about a thousand multiply-adds per sample (that is why
``torchaudio.functional.pitch_shift`` takes seconds). Here every output sample reads
``2 * ceil(ZERO_CROSSINGS / cutoff)`` input samples, the ratio is any real number, and time maps
are exact (no rational approximation of the factor).

The filter weights come from a table of ``PHASES`` fractional offsets with linear interpolation
between them (error < 1e-6 of full scale), so no Bessel function is evaluated per sample.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

ZERO_CROSSINGS = 16
KAISER_BETA = 8.6
PHASES = 4096
ROLLOFF = 0.95
_CHUNK = 8192  # outputs per step: keeps the (m, 2K) gathers in cache (5x faster than 64k)


def _kernel(u: Tensor, cutoff: float, half_width: float) -> Tensor:
    """Kaiser-windowed sinc h(u); ``cutoff`` in units of the input Nyquist (1.0 = full band)."""
    v = (u / half_width).clamp(-1.0, 1.0)
    i0_beta = float(torch.special.i0(torch.tensor(KAISER_BETA, dtype=torch.float64)))
    window = torch.special.i0(KAISER_BETA * torch.sqrt(1.0 - v * v)) / i0_beta
    h = cutoff * torch.sinc(cutoff * u) * window
    return torch.where(u.abs() < half_width, h, torch.zeros_like(h))


@lru_cache(maxsize=32)
def _table(cutoff: float) -> tuple[Tensor, int]:
    """(PHASES + 1, 2K) float64 weights for fractional offsets p / PHASES, and K.

    Row p holds the weights of taps ``floor(pos) - K + 1 + j`` (j = 0..2K-1) for a position whose
    fractional part is p / PHASES (nearest phase: offset error <= 1/8192 sample, < -75 dB).
    """
    half_width = ZERO_CROSSINGS / cutoff
    k = int(math.ceil(half_width))
    frac = torch.arange(PHASES + 1, dtype=torch.float64) / PHASES
    j = torch.arange(2 * k, dtype=torch.float64)
    u = frac[:, None] + (k - 1) - j[None, :]
    return _kernel(u, cutoff, half_width), k


def interpolate(x: Tensor, positions: Tensor, cutoff: float = 1.0) -> Tensor:
    """Band-limited values of x (R, T) at fractional sample ``positions`` (M,).

    Samples outside [0, T) count as zero. ``cutoff`` in (0, 1] is the low-pass edge relative to the
    input Nyquist: use ``ROLLOFF * min(1, 1 / step)`` when reading with a stride ``step`` > 1 so
    nothing aliases. Rows are processed one by one, so a row's result never depends on the
    others (batch == single, bit for bit). Returns (R, M) in x's dtype.
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (R, T), got {tuple(x.shape)}")
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(f"cutoff must be in (0, 1], got {cutoff}")
    table64, k = _table(float(cutoff))
    table = table64.to(device=x.device, dtype=x.dtype)
    rows, t = x.shape
    # sample i of x sits at padded[i + 2k]; window w covers samples w - 2k .. w - 1
    frames = F.pad(x, (2 * k, 2 * k)).unfold(-1, 2 * k, 1)  # (R, t + 2k + 1, 2k), a view
    positions = positions.to(device=x.device, dtype=torch.float64)
    out = torch.empty(rows, positions.shape[0], device=x.device, dtype=x.dtype)
    for start in range(0, positions.shape[0], _CHUNK):
        pos = positions[start : start + _CHUNK]
        base = torch.floor(pos)
        phase = torch.round((pos - base) * PHASES).long()
        weights = table.index_select(0, phase)  # (m, 2k)
        window = base.long() + (k + 1)  # first tap floor(pos) - k + 1
        inside = (window >= 0) & (window <= t + 2 * k)
        if not bool(inside.all()):  # every tap of such a position is outside x: value 0
            weights = weights * inside.unsqueeze(1).to(weights.dtype)
            window = window.clamp(0, t + 2 * k)
        for r in range(rows):
            taps = frames[r].index_select(0, window)  # (m, 2k)
            out[r, start : start + pos.shape[0]] = (taps * weights).sum(dim=-1)
    return out


@lru_cache(maxsize=8)
def _oversample_kernel(factor: int) -> tuple[Tensor, int]:
    """(factor, 1, 2K) polyphase kernels for conv1d; phase r gives the value at n + r/factor."""
    half_width = float(ZERO_CROSSINGS)
    k = ZERO_CROSSINGS
    r = torch.arange(factor, dtype=torch.float64)[:, None] / factor
    j = torch.arange(2 * k, dtype=torch.float64)[None, :]
    # conv1d correlates: out[n] = sum_j w[j] * x[n - k + 1 + j]  -> offset u = r + k - 1 - j
    u = r + (k - 1) - j
    return _kernel(u, 1.0, half_width).unsqueeze(1), k


def oversample(x: Tensor, factor: int = 4) -> Tensor:
    """Band-limited x ``factor`` upsampling of (R, T) -> (R, T * factor), for true-peak metering."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return x
    kernel64, k = _oversample_kernel(factor)
    kernel = kernel64.to(device=x.device, dtype=x.dtype)
    rows, t = x.shape
    y = F.conv1d(F.pad(x.unsqueeze(1), (k - 1, k)), kernel)  # (R, factor, T)
    return y.transpose(1, 2).reshape(rows, t * factor)


MAX_RATIONAL_TERM = 64
"""Largest numerator/denominator of a step handled by :func:`interpolate_rational` (above it
the polyphase kernel gets wider than the table interpolator's gathers and is no faster)."""


@lru_cache(maxsize=256)
def as_small_fraction(step: float) -> tuple[int, int] | None:
    """(p, q) with p / q == ``step`` to 1e-12 relative and p, q <= MAX_RATIONAL_TERM, else None.

    Planner speed factors such as 1.1, 0.9 or 1.25 are such ratios; 1.001 (a slow drift) is not.
    Cached: ``Fraction.limit_denominator`` took ~11 us, a few % of a speed change's Python.
    """
    from fractions import Fraction

    frac = Fraction(step).limit_denominator(MAX_RATIONAL_TERM)
    p, q = frac.numerator, frac.denominator
    if p < 1 or p > MAX_RATIONAL_TERM or abs(p / q - step) > 1e-12 * step:
        return None
    return p, q


def nearest_fraction(value: float, tolerance: float, max_term: int) -> tuple[int, int] | None:
    """(p, q) with |p / q / value - 1| <= ``tolerance`` and p, q <= ``max_term``, the smallest
    such q (the cheapest polyphase kernel); None when no fraction is that close.

    For a pitch ratio 2^(s/12), a tolerance of 0.1 cent and terms up to 512 find a fraction for
    all but 10 of the 481 tenth-semitone steps in [-24, 24] (+2 semitones: 55/49, 0.02 cent).
    """
    if not value > 0 or tolerance < 0 or max_term < 1:
        raise ValueError(f"need value > 0, tolerance >= 0, max_term >= 1; got {value}, "
                         f"{tolerance}, {max_term}")
    for q in range(1, max_term + 1):
        p = round(value * q)
        if 1 <= p <= max_term and abs(p / q / value - 1.0) <= tolerance:
            return p, q
    return None


@lru_cache(maxsize=32)
def _polyphase_kernel(p: int, q: int, cutoff: float) -> tuple[Tensor, int]:
    """(q, 1, 2K + p - 1) float64 conv1d weights and K for reading x at n * p / q.

    Output n = m * q + r reads position m * p + a_r + f_r (a_r = floor(r p / q), f_r its
    fraction): taps x[m * p + a_r - K + 1 + j], weights h(f_r + K - 1 - j), j = 0..2K-1. In a
    conv1d with stride p over x padded by K - 1 on the left, that is kernel row r at offset a_r.
    The same Kaiser-windowed sinc as :func:`interpolate`, at the exact phases.
    """
    half_width = ZERO_CROSSINGS / cutoff
    k = int(math.ceil(half_width))
    r = torch.arange(q, dtype=torch.int64)
    offset, rem = (r * p) // q, (r * p) % q
    j = torch.arange(2 * k, dtype=torch.int64)
    taps = _kernel(rem[:, None].double() / q + (k - 1) - j[None, :].double(), cutoff, half_width)
    weights = torch.zeros(q, 2 * k + p - 1, dtype=torch.float64)
    weights.scatter_(1, offset[:, None] + j[None, :], taps)
    return weights.unsqueeze(1), k


def polyphase_phases(x: Tensor, p: int, q: int, n_out: int, cutoff: float = 1.0) -> Tensor:
    """The values of :func:`interpolate_rational` as one strided conv1d leaves them: (R, q,
    blocks), output n = m * q + r at [:, r, m] (blocks = ceil(n_out / q); past n_out: extra).
    A caller that interleaves them into its own result itself skips a copy."""
    if x.dim() != 2:
        raise ValueError(f"x must have shape (R, T), got {tuple(x.shape)}")
    if p < 1 or q < 1:
        raise ValueError(f"p and q must be >= 1, got {p}, {q}")
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(f"cutoff must be in (0, 1], got {cutoff}")
    weights, k = _polyphase_weights(p, q, float(cutoff), x.device, x.dtype)
    t = x.shape[-1]
    blocks = -(-n_out // q)
    need = (blocks - 1) * p + weights.shape[-1]
    # a padded copy of x: with its ``padding`` argument instead, the conv (oneDNN) took 3.2
    # rather than 1.3 ms for four 10 s clips at 11/10, the copy 0.16 ms
    padded = F.pad(x.unsqueeze(1), (k - 1, max(0, need - t - (k - 1))))
    return F.conv1d(padded, weights, stride=p)[..., :blocks]


@lru_cache(maxsize=32)
def _polyphase_weights(
    p: int, q: int, cutoff: float, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, int]:
    """:func:`_polyphase_kernel` in ``dtype`` on ``device`` (read only; cached: the conversion
    was two more ops per call)."""
    weights64, k = _polyphase_kernel(p, q, cutoff)
    return weights64.to(device=device, dtype=dtype), k


def interpolate_rational(x: Tensor, p: int, q: int, n_out: int, cutoff: float = 1.0) -> Tensor:
    """Band-limited values of x (R, T) at positions n * p / q for n < ``n_out``: (R, n_out).

    Same result as ``interpolate(x, arange(n_out) * p / q, cutoff)`` (to the table's 1e-6), as
    one strided polyphase conv1d (the torchaudio resample scheme) instead of per-sample gathers:
    several times faster for small p and q. Samples outside [0, T) count as zero.
    """
    y = polyphase_phases(x, p, q, n_out, cutoff)
    rows, q, blocks = y.shape
    return y.transpose(1, 2).reshape(rows, blocks * q)[:, :n_out]
