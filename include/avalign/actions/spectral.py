"""One STFT convention for every spectral action: Hann window, 75 % overlap, ~32 ms frames.

At 16 kHz this is n_fft 512 / hop 128; the Wiener filter alone uses 50 % overlap (hop 256,
``stft_config(sr, overlap=2)``), for which the noise estimate has its own calibration. Keeping
one convention means the shared noise estimate (``noise.py``), the denoisers and the phase
vocoder all see the same frames. ``istft(stft(x))`` reproduces ``x`` (Hann, ``center=True``,
divided by the window-square envelope, so any overlap that tiles the frame works), and signals
shorter than one frame are zero-padded first so any T >= 1 works.

Two layouts of the same frames: :func:`stft` / :func:`istft` use torch's (..., F, N) (frequency,
frame), :func:`stft_frames` / :func:`istft_frames` the time-major (..., N, F) the actions work
in, where a frame is one contiguous row (per-frame recursions, shifts along time and the FFTs
themselves run on contiguous memory). ``stft`` is ``stft_frames`` transposed (a view), equal to
``torch.stft(center=True, pad_mode="reflect")`` bit for bit. The inverse is a plain irfft plus an
overlap-add of n_fft / hop shifted blocks and a division by the window-square envelope,
which is what ``torch.istft`` computes, 4-6x faster on CPU (its overlap-add goes through a
generic ``unfold_backward``); on CPU float32 with numba installed, window, overlap-add and
envelope division are one compiled pass after the irfft.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._jit import numba_compile

FRAME_SECONDS = 0.032


@dataclass(frozen=True)
class StftConfig:
    """Frame geometry for one sample rate."""

    n_fft: int
    hop: int

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def window(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The periodic Hann window (shared between calls: read only)."""
        return _hann(self.n_fft, torch.device(device), dtype)

    @property
    def overlap(self) -> int:
        """Frames per window length (4: 75 % overlap, 2: 50 %)."""
        return self.n_fft // self.hop

    def frame_rate(self, sample_rate: int) -> float:
        return sample_rate / self.hop


OVERLAPS = (2, 4)
"""Frames per window length the actions use: 4 (75 %, the default) or 2 (50 %, Wiener's)."""


def stft_config(sample_rate: int, overlap: int = 4) -> StftConfig:
    """Power-of-two frame of about 32 ms (512 at 16 kHz, 1024 at 44.1/48 kHz), hop n_fft /
    ``overlap`` (4: 75 % overlap, 2: 50 %; the noise estimate is calibrated for both)."""
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap}")
    n_fft = 2 ** max(6, round(math.log2(FRAME_SECONDS * sample_rate)))
    return StftConfig(n_fft=n_fft, hop=n_fft // overlap)


@lru_cache(maxsize=32)
def _hann(n_fft: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cached: building the window was ~4 % of a Wiener call on a 10 s clip (twice per call)."""
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


def stft_frames(x: Tensor, cfg: StftConfig) -> Tensor:
    """Complex STFT of (..., T) -> time-major (..., N, F). Pads short signals to one frame."""
    lead, t = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, t)
    if t <= cfg.n_fft // 2:
        flat = F.pad(flat, (0, cfg.n_fft // 2 + 1 - t))
    half = cfg.n_fft // 2
    kernel = _compiled_analysis() if flat.device.type == "cpu" else None
    if kernel is not None and flat.dtype == torch.float32:
        rows = flat.contiguous()
        n = (rows.shape[-1] + 2 * half - cfg.n_fft) // cfg.hop + 1
        frames = torch.empty(rows.shape[0], n, cfg.n_fft)
        window = cfg.window(flat.device, flat.dtype).numpy()
        kernel(rows.numpy(), window, cfg.hop, half, frames.numpy())
    else:
        padded = F.pad(flat.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        frames = padded.unfold(-1, cfg.n_fft, cfg.hop) * cfg.window(x.device, flat.dtype)
    spec = torch.fft.rfft(frames)
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def _analysis_loops(x, window, hop, half, frames):  # type: ignore[no-untyped-def]
    """frames[r, i, j] = window[j] * x[r] reflect-padded by ``half`` at i * hop + j.

    The reflect pad, the framing and the window in one pass over each frame, the padded signal
    never built: torch's reflect pad of a 4-clip Wiener chunk alone took 0.6 ms, the windowed
    copy of its frames 0.4 ms. The same float32 products, so the frames are bit for bit torch's.
    """
    rows, t = x.shape
    _, n, size = frames.shape
    for r in range(rows):
        for i in range(n):
            first = i * hop - half  # x index of the frame's first sample, before reflection
            if first >= 0 and first + size <= t:
                for j in range(size):
                    frames[r, i, j] = window[j] * x[r, first + j]
            else:
                for j in range(size):
                    p = first + j
                    if p < 0:
                        p = -p
                    elif p >= t:
                        p = 2 * (t - 1) - p
                    frames[r, i, j] = window[j] * x[r, p]


@lru_cache(maxsize=1)
def _compiled_analysis():  # type: ignore[no-untyped-def]
    """``_analysis_loops`` compiled by numba (cached on disk), or None without numba. No
    fastmath: one product per sample, rounded as torch rounds it."""
    return numba_compile(_analysis_loops, error_model="numpy")


def stft(x: Tensor, cfg: StftConfig) -> Tensor:
    """Complex STFT of (..., T) -> (..., F, N) (torch.stft's layout; a transposed view)."""
    return stft_frames(x, cfg).transpose(-1, -2)


@lru_cache(maxsize=8)
def _envelope_pieces(n_fft: int, hop: int) -> tuple[Tensor, Tensor, Tensor]:
    """Head, one period and tail of the overlap-added squared Hann window (float64, CPU).

    With k = n_fft / hop frames overlapping, the sum is periodic (period hop; constant 1.5 for
    Hann at 75 %) except over the first and last (k - 1) hops.
    """
    k = n_fft // hop
    square = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).square()
    full = overlap_add(square.expand(1, 2 * k, n_fft), hop)[0]  # (3k - 1) hops long
    edge = (k - 1) * hop
    return full[:edge], full[edge : edge + hop], full[-edge:] if edge else full[:0]


def _envelope(n_fft: int, hop: int, frames: int) -> Tensor:
    """Overlap-added squared Hann window of ``frames`` frames: ((frames - 1) * hop + n_fft,)."""
    k = n_fft // hop
    if frames < 2 * k:
        square = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).square()
        return overlap_add(square.expand(1, frames, n_fft), hop)[0]
    head, period, tail = _envelope_pieces(n_fft, hop)
    return torch.cat([head, period.repeat(frames - k + 1), tail])


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Sum (R, N, n) frames placed ``hop`` apart: (R, (N - 1) * hop + n). ``n`` must be a
    multiple of ``hop``: the sum is n / hop shifted adds of (N, hop) blocks."""
    rows, n, size = frames.shape
    if size % hop:
        raise ValueError(f"frame length {size} is not a multiple of the hop {hop}")
    k = size // hop
    blocks = frames.reshape(rows, n, k, hop)
    out = torch.zeros(rows, n + k - 1, hop, device=frames.device, dtype=frames.dtype)
    for j in range(k):
        out[:, j : j + n] += blocks[:, :, j]
    return out.reshape(rows, (n + k - 1) * hop)


def istft_frames(
    spec: Tensor, cfg: StftConfig, length: int, out: Tensor | None = None
) -> Tensor:
    """Inverse of :func:`stft_frames`: time-major (..., N, F) complex -> (..., length) real.

    ``out``: a tensor of that shape (any real dtype) to write the result into and return; a
    contiguous float32 one on CPU is written by the compiled synthesis directly (a batch's rows:
    no copy of each chunk's result into it)."""
    lead, n = spec.shape[:-2], spec.shape[-2]
    flat = spec.reshape(-1, n, spec.shape[-1])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    kernel = _compiled_synthesis() if flat.device.type == "cpu" else None
    if kernel is not None and real_dtype == torch.float32 and cfg.n_fft % cfg.hop == 0:
        frames = torch.fft.irfft(flat, cfg.n_fft)
        if out is None or (out.dtype == torch.float32 and out.is_contiguous()):
            return _synthesis_compiled(kernel, frames, cfg, length, lead, out)
        return out.copy_(_synthesis_compiled(kernel, frames, cfg, length, lead))
    frames = torch.fft.irfft(flat, cfg.n_fft) * cfg.window(flat.device, real_dtype)
    y = overlap_add(frames, cfg.hop)
    start = cfg.n_fft // 2
    stop = min(start + length, y.shape[-1])
    envelope = _envelope(cfg.n_fft, cfg.hop, n)[start:stop].to(flat.device, real_dtype)
    result = y[:, start:stop] / envelope.clamp_min(1e-11)
    if result.shape[-1] < length:  # past the last frame: silence, as torch.istft
        result = F.pad(result, (0, length - result.shape[-1]))
    result = result.reshape(*lead, length)
    return result if out is None else out.copy_(result)


def _synthesis_compiled(
    kernel: object,
    frames: Tensor,
    cfg: StftConfig,
    length: int,
    lead: tuple[int, ...],
    out: Tensor | None = None,
) -> Tensor:
    """Window, overlap-add and envelope division of (R, N, n_fft) float32 irfft frames in one
    compiled pass (the torch ops take ~1 ms for a 10 s clip at 16 kHz: a windowed copy of the
    frames, a zeroed buffer, n_fft / hop strided adds and a division; this ~0.15 ms), into
    ``out`` (contiguous float32, ``lead + (length,)``) when given."""
    rows, n = frames.shape[0], frames.shape[1]
    start = cfg.n_fft // 2
    stop = min(start + length, (n - 1) * cfg.hop + cfg.n_fft)
    inverse = _inverse_envelope(cfg.n_fft, cfg.hop, n, start, stop)
    if out is None:
        out = torch.empty(*lead, length, dtype=torch.float32)
    elif out.shape != (*lead, length):
        raise ValueError(f"out must have shape {(*lead, length)}, got {tuple(out.shape)}")
    target = out.view(rows, length)
    target[:, stop - start :] = 0.0  # past the last frame: silence, as torch.istft
    window = cfg.window(torch.device("cpu"), torch.float32)
    rows_np = frames.contiguous().numpy()
    kernel(rows_np, window.numpy(), inverse.numpy(), cfg.hop, start, target.numpy())  # type: ignore
    return out


@lru_cache(maxsize=8)
def _inverse_envelope(n_fft: int, hop: int, frames: int, start: int, stop: int) -> Tensor:
    """1 / the window-square envelope over [start, stop), float32 (cached: building it costs
    ~0.5 ms for 10 s, half the synthesis; a batch or a bench repeats the same length)."""
    return (1.0 / _envelope(n_fft, hop, frames)[start:stop].clamp_min(1e-11)).float()


def _synthesis_loops(frames, window, inverse, hop, start, out):  # type: ignore[no-untyped-def]
    """out[r, i] = inverse[i] * sum_k frames[r, k, s - k * hop] * window[s - k * hop],
    s = i + start, over the (n_fft / hop) frames covering s; gathered per hop-long block."""
    rows, n, size = frames.shape
    overlap = size // hop
    m = inverse.shape[0]
    acc = np.empty(hop, dtype=np.float32)
    for r in range(rows):
        first_block = start // hop
        last_block = (start + m - 1) // hop
        for q in range(first_block, last_block + 1):  # samples [q * hop, (q + 1) * hop)
            acc[:] = 0.0
            for j in range(overlap):
                k = q - j  # frame k covers block q at offset j * hop
                if 0 <= k < n:
                    frame = frames[r, k, j * hop : (j + 1) * hop]
                    taper = window[j * hop : (j + 1) * hop]
                    for h in range(hop):
                        acc[h] += frame[h] * taper[h]
            base = q * hop - start
            lo = max(0, -base)
            hi = min(hop, m - base)
            row = out[r]
            for h in range(lo, hi):
                row[base + h] = acc[h] * inverse[base + h]


@lru_cache(maxsize=1)
def _compiled_synthesis():  # type: ignore[no-untyped-def]
    """``_synthesis_loops`` compiled by numba (cached on disk), or None without numba."""
    return numba_compile(_synthesis_loops, fastmath=True, error_model="numpy")


def istft(spec: Tensor, cfg: StftConfig, length: int) -> Tensor:
    """Inverse of :func:`stft`: (..., F, N) complex -> (..., length) real."""
    return istft_frames(spec.transpose(-1, -2), cfg, length)
