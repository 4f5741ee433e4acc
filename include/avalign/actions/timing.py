"""Timing actions: speed change, pitch change (tempo kept) and time shift, on (B, C, T) batches.

All three keep the input length exactly, so the video they belong to keeps its duration. Each
has a time map (output second -> input second) that the edit objects expose:

- speed_change(factor):   t_in = t_out * factor   (factor 1.1 = 10 % faster)
- pitch_change(semitones): t_in = t_out           (tempo unchanged)
- time_shift(shift_ms):   t_in = t_out - shift    (positive shift = audio later)

Speed and pitch use the band-limited interpolator of ``resample.py`` at exact (irrational if need
be) ratios; pitch ratios within 0.1 cent of a fraction with terms <= 512 are applied as that
fraction (one polyphase convolution). Pitch is a phase-vocoder time stretch by 2^(s/12) (one
batched STFT pass) read back at 2^(s/12) samples per sample; ``torchaudio.functional.pitch_shift``
is not used because its integer-ratio resampler makes it take seconds per clip.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from ._checks import (
    ParamLike,
    check_batch,
    check_out,
    check_sample_rate,
    cpu_chunked,
    groups,
    per_item,
)
from ._jit import numba_compile
from .resample import (
    ROLLOFF,
    as_small_fraction,
    interpolate,
    interpolate_rational,
    nearest_fraction,
    polyphase_phases,
)
from .spectral import istft_frames, stft_config, stft_frames

SPEED_TAIL_FADE_S = 0.010
"""When speeding up, the last 10 ms of content fade out before the silent tail (no click)."""


def content_length(length: int, factor: float) -> int:
    """Output samples that carry content when reading ``length`` input samples at ``factor``."""
    return min(length, int(math.floor((length - 1) / factor)) + 1)


SPEED_CHUNK_SAMPLES = 2 * 160_000
"""Samples per CPU call of :func:`speed_change`: two 10 s clips at 16 kHz, a thread per chunk.
Its temporaries are small (one strided conv1d), so clips can share a call; one clip was too
short to gain from a thread of its own. B = 16, per clip on 1 / 2 threads, medians of 15
interleaved passes on the twelfth session's VM (after the compiled placement): chunks of 1 clip
0.553 / 0.369 ms, of 2 0.481 / 0.305, of 4 0.500 / 0.334; in a second run of 2 against 4 and 8:
0.501 / 0.304, 0.532 / 0.334, 0.562 / 0.343. (Before the placement was compiled, with ~30
torch ops a chunk, four clips had been best: 0.281 / 0.214 ms on the ninth session's VM.)"""


@cpu_chunked("factor", parallel_items=True, chunk_samples=SPEED_CHUNK_SAMPLES)
def speed_change(
    x: Tensor, sample_rate: int, factor: ParamLike, *, out: Tensor | None = None
) -> Tensor:
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
        out: optional tensor of ``x``'s shape, dtype and device to write the result into.
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, c, t = x.shape
    factors = per_item(factor, b, "factor", minimum=0.0, exclusive_minimum=True)
    out = check_out(out, x)
    plan = groups(factors)
    for value, items in plan.items():
        whole = len(items) == b
        if value == 1.0:
            if whole:
                out.copy_(x)
            else:
                out[items] = x[items]
            continue
        n = content_length(t, value)
        rows = (x if whole else x[items]).reshape(-1, t)
        cutoff = ROLLOFF * min(1.0, 1.0 / value)
        fraction = as_small_fraction(value)
        fade = min(n, max(1, int(round(SPEED_TAIL_FADE_S * sample_rate)))) if n < t else 0
        ramp = _tail_fade(fade, x.device, x.dtype)
        cpu_whole = whole and x.device.type == "cpu" and x.dtype == torch.float32
        place = _compiled_placement() if cpu_whole and fraction is not None else None
        if place is not None:
            # 1.1 = 11/10: one polyphase conv; its phases interleaved into the result with the
            # fade and the silent tail in one compiled pass (see _placement_loops)
            phases = polyphase_phases(rows, *fraction, n, cutoff=cutoff)
            place(phases.detach().numpy(), out.view(-1, t).detach().numpy(), n, ramp.numpy())
            continue
        if fraction is not None:
            y = interpolate_rational(rows, *fraction, n, cutoff=cutoff)
        else:
            positions = torch.arange(n, dtype=torch.float64) * value
            y = interpolate(rows, positions, cutoff=cutoff)
        if fade:
            y[:, n - fade :] *= ramp
        if whole:  # straight into the result: the silent tail is zeroed, no padded copy
            target = out.view(-1, t)
            target[:, :n] = y
            target[:, n:] = 0.0
        else:
            padded = torch.nn.functional.pad(y, (0, t - n))
            out[items] = padded.reshape(len(items), c, t).to(x.dtype)
    return out


@lru_cache(maxsize=16)
def _tail_fade(fade: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The raised-cosine fade-out over the last ``fade`` samples of content (read only)."""
    ramp = 0.5 * (1 + torch.cos(torch.linspace(0, math.pi, fade, device=device)))
    return ramp.to(dtype)


def _placement_loops(phases, out, n, ramp):  # type: ignore[no-untyped-def]
    """out[r, m * q + j] = phases[r, j, m] for the n samples of content, the last
    ``len(ramp)`` of them times the ramp, zeros after: (R, q, blocks) -> (R, T), for numba.

    With torch this was the interleaving copy, a copy into the result, six ops for the fade and
    the zeroing; each op hands the GIL to the other item thread and back (a speed change on a
    4-clip chunk ran ~30 ops). The same float32 products as ``y[:, n - fade:] *= ramp``.
    """
    rows, q, blocks = phases.shape
    t = out.shape[1]
    start = n - ramp.shape[0]
    full = n // q  # blocks with all q phases inside the content
    for r in range(rows):
        row = out[r]
        src = phases[r]
        for m in range(full):  # the output in order; the q phases are q read streams
            base = m * q
            for j in range(q):
                row[base + j] = src[j, m]
        for i in range(full * q, n):
            row[i] = src[i - full * q, full]
        for i in range(start, n):
            row[i] *= ramp[i - start]
        for i in range(n, t):
            row[i] = 0.0


@lru_cache(maxsize=1)
def _compiled_placement():  # type: ignore[no-untyped-def]
    """``_placement_loops`` compiled by numba (cached on disk), or None without numba."""
    return numba_compile(_placement_loops, error_model="numpy")


LOCK_BINS = 2
"""Identity phase locking reference: the loudest bin within +-2 bins (a Hann main lobe)."""

PITCH_TOLERANCE_CENTS = 0.1
"""Largest pitch error traded for speed: a ratio 2^(s/12) within 0.1 cent (1/1000 of a semitone,
far below what anyone hears) of a fraction p/q with p, q <= ``PITCH_MAX_TERM`` is applied as
exactly p/q, read back by one polyphase convolution (``resample.interpolate_rational``, ~1 ms
for 10 s) instead of the per-sample table interpolator (~10 ms). Other ratios (10 of the 481
tenth-semitone steps in [-24, 24], e.g. +-19) take the exact table path."""
PITCH_MAX_TERM = 512


def _lock_reference(mag: Tensor) -> Tensor:
    """For every bin of (..., F) magnitudes, the index of the loudest bin within +-LOCK_BINS.

    Inside a partial's main lobe that is the partial's peak bin, so the bins of one partial
    share one phase trajectory. An argmax over a sliding window without ``return_indices``
    (which makes max-pooling ~15x slower): magnitudes are >= 0, so their float32 bit patterns
    order like the values; the three low mantissa bits (a 1e-6 relative change) are replaced by
    the bin index mod 8 and the exponent raised by one (so no key is a denormal that a
    flush-to-zero mode would tie at 0), a plain max-pool picks the loudest key, and its low bits
    say which bin of the window it came from (offsets are within +-2, so mod 8 is unambiguous).
    """
    n_freq = mag.shape[-1]
    width = 2 * LOCK_BINS + 1
    flat = mag.reshape(-1, 1, n_freq)
    if flat.dtype != torch.float32:
        _, idx = torch.nn.functional.max_pool1d(
            flat, width, stride=1, padding=LOCK_BINS, return_indices=True
        )
        return idx.reshape(mag.shape)
    bins = torch.arange(n_freq, device=mag.device, dtype=torch.int32)
    key = (flat.contiguous().view(torch.int32) & ~7).add_((bins & 7) + (1 << 23))
    best = torch.nn.functional.max_pool1d(key.view(torch.float32), width, 1, LOCK_BINS)
    # winner's bin = this bin + (((winner code - this code + 4) mod 8) - 4)
    offset = best.view(torch.int32).add_(4 - (bins & 7)).bitwise_and_(7)
    return offset.long().add_(bins.long() - 4).reshape(mag.shape)


def _phase_vocoder(frames: Tensor, stretch: float) -> Tensor:
    """Time-stretch time-major (R, N, F) complex frames by ``stretch`` (>1 = longer):
    (R, ceil(N * stretch), F), same hop.

    Output frame k reads input position k / stretch (frame i0 = floor, weight a): magnitudes are
    interpolated between frames i0 and i0 + 1, and the phase advances by each bin's phase
    increment between the input frames it reads. With identity phase locking (after Laroche &
    Dolson 1999) every bin keeps its input phase offset to the loudest bin near it (its
    partial's peak), whose phase is the accumulated one; without it the bins of one partial
    drift apart (phasiness: a stretched sine loses up to half its amplitude).

    Accumulated phase of frame k: phi_k = phi_in[0] + sum_{l<k} (phi_in[i0_l + 1] - phi_in[i0_l])
    (mod 2 pi; the increment is the instantaneous frequency times the hop, whatever branch, as
    the output hop equals the input hop). Where i0 moves by exactly one frame the terms telescope
    to phi_in[i0_k]; only the "irregular" steps (a frame read twice when stretching, skipped when
    compressing) leave a correction c_l = phi_in[i0_l + 1] - phi_in[i0_{l+1}]. So
    phi_k = phi_in[i0_k] + D_k with D_k the running sum of the corrections, a cumulative sum over
    the irregular steps only (11 % of the frames for +2 semitones), and the locked phase is
    D_k[ref] + phi_in[i0_k]. No phase unwrapping, and all phases stay small (float32-exact).
    """
    n = frames.shape[-2]
    n_out = max(1, math.ceil(n * stretch - 1e-9))
    steps = torch.arange(n_out, dtype=torch.float64, device=frames.device) / stretch
    i0 = steps.floor().long().clamp(max=n - 1)
    alpha = (steps - i0.to(torch.float64)).clamp(max=1.0).to(torch.float32).unsqueeze(-1)
    re, im = frames.real.contiguous(), frames.imag.contiguous()
    mag_in = torch.hypot(re, im)
    phase_in = torch.atan2(im, re)
    # past the last frame the last one repeats (no phase increment); the caller's padding
    # makes the outermost frames silent
    i1 = (i0 + 1).clamp(max=n - 1)
    mag = torch.lerp(mag_in.index_select(-2, i0), mag_in.index_select(-2, i1), alpha)
    phase = phase_in.index_select(-2, i0)
    irregular = torch.nonzero(i0[1:] - i0[:-1] != 1).flatten()  # step l -> l + 1
    if irregular.numel():
        corrections = phase_in.index_select(-2, i1[irregular]) - phase_in.index_select(
            -2, i0[irregular + 1]
        )
        running = torch.cat(
            [torch.zeros_like(corrections[..., :1, :]), corrections.cumsum(dim=-2)], dim=-2
        )
        before = torch.zeros(n_out, dtype=torch.long, device=frames.device)
        before[irregular + 1] = 1
        offsets = running.index_select(-2, before.cumsum(0))  # D_k, (R, n_out, F)
        ref = _lock_reference(mag)
        phase = offsets.gather(-1, ref).add_(phase)
    out = torch.empty(*mag.shape, 2, device=mag.device, dtype=mag.dtype)
    out[..., 0] = mag * torch.cos(phase)  # contiguous products, then one interleaving copy
    out[..., 1] = mag * torch.sin(phase)  # each (3x faster than writing the products strided)
    return torch.view_as_complex(out)


@cpu_chunked("semitones", parallel_items=True)
def pitch_change(x: Tensor, sample_rate: int, semitones: ParamLike) -> Tensor:
    """Shift pitch by ``semitones`` (positive = higher) without changing tempo or length.

    The STFT (``spectral.py`` frames) is time-stretched by r = 2^(s/12) with a phase vocoder,
    and the stretched signal is read at r samples per output sample (band-limited), so every
    frequency is multiplied by r while events stay where they were. r is rounded to a fraction
    within ``PITCH_TOLERANCE_CENTS`` when one with small terms exists (both the stretch and the
    read use the same p/q, so timing stays exact). Outside the clip counts as silence, so a clip
    that starts or ends mid-sound gets a short onset artifact (a few ms, up to ~+2 dB) at that
    edge, as any STFT method does.

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
    tolerance = 2.0 ** (PITCH_TOLERANCE_CENTS / 1200.0) - 1.0
    plan = groups(steps)
    out = None if len(plan) == 1 and 0.0 not in plan else x.clone()  # one group: y is the output
    for value, items in plan.items():
        if value == 0.0:
            continue
        ratio = 2.0 ** (value / 12.0)
        fraction = nearest_fraction(ratio, tolerance, PITCH_MAX_TERM)
        if fraction is not None:
            ratio = fraction[0] / fraction[1]
        # one frame of silence on each side keeps the clip's edges away from the outermost
        # frames, which the inverse STFT only half reconstructs (they overshoot once stretched)
        pad = cfg.n_fft
        rows = (x if len(items) == b else x[items]).reshape(-1, t).float()
        rows = torch.nn.functional.pad(rows, (pad, pad))
        stretched = _phase_vocoder(stft_frames(rows, cfg), ratio)
        slow = istft_frames(stretched, cfg, int(math.ceil((t + 2 * pad) * ratio)) + 1)
        cutoff = ROLLOFF * min(1.0, 1.0 / ratio)
        if fraction is not None:  # output n reads slow at (n + pad) * p / q: skip pad outputs
            y = interpolate_rational(slow, *fraction, t + pad, cutoff=cutoff)[:, pad:]
        else:
            positions = (torch.arange(t, dtype=torch.float64) + pad) * ratio
            y = interpolate(slow, positions, cutoff=cutoff)
        y = y.reshape(len(items), c, t).to(x.dtype)
        if out is None:
            return y.contiguous()
        out[items] = y
    return out  # type: ignore[return-value]


def shift_samples(shift_ms: float, sample_rate: int) -> int:
    """The whole number of samples a shift of ``shift_ms`` moves by (round half away from 0)."""
    exact = shift_ms * sample_rate / 1000.0
    return int(math.copysign(math.floor(abs(exact) + 0.5), exact))


def time_shift(x: Tensor, sample_rate: int, shift_ms: ParamLike) -> Tensor:
    """Move audio by ``shift_ms`` (positive = later, a delay), same length, vacated part silent.

    The shift is a whole number of samples, ``shift_samples(shift_ms, sample_rate)``, so it is
    exact (no interpolation); shifts of the full length or more give silence. Items sharing a
    shift move in one copy; it is a copy, so there is no CPU chunking (it would only add a
    concatenation).
    """
    check_batch(x)
    sample_rate = check_sample_rate(sample_rate)
    b, _, t = x.shape
    shifts = per_item(shift_ms, b, "shift_ms")
    samples = [float(shift_samples(ms, sample_rate)) for ms in shifts]
    out = torch.empty_like(x)
    for value, items in groups(samples).items():
        rows = slice(None) if len(items) == b else items
        k = int(value)
        if k >= t or -k >= t:
            out[rows] = 0.0
        elif k >= 0:
            out[rows, :, :k] = 0.0
            out[rows, :, k:] = x[rows, :, : t - k]
        else:
            out[rows, :, : t + k] = x[rows, :, -k:]
            out[rows, :, t + k :] = 0.0
    return out
