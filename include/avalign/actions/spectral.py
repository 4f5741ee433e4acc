"""One STFT convention for every spectral action: Hann window, 75 % overlap, ~32 ms frames.

At 16 kHz this is n_fft 512 / hop 128. Keeping a single convention means the shared noise
estimate (``noise.py``), the denoisers and the phase vocoder all see the same frames.
``istft(stft(x))`` reproduces ``x`` (COLA Hann, ``center=True``), and signals shorter than one
frame are zero-padded first so any T >= 1 works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

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
        return torch.hann_window(self.n_fft, periodic=True, device=device, dtype=dtype)

    def frame_rate(self, sample_rate: int) -> float:
        return sample_rate / self.hop


def stft_config(sample_rate: int) -> StftConfig:
    """Power-of-two frame of about 32 ms (512 at 16 kHz, 1024 at 44.1/48 kHz), hop n_fft/4."""
    n_fft = 2 ** max(6, round(math.log2(FRAME_SECONDS * sample_rate)))
    return StftConfig(n_fft=n_fft, hop=n_fft // 4)


def stft(x: Tensor, cfg: StftConfig) -> Tensor:
    """Complex STFT of (..., T) -> (..., F, N). Pads short signals with zeros to one frame."""
    lead, t = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, t)
    if t <= cfg.n_fft // 2:
        flat = torch.nn.functional.pad(flat, (0, cfg.n_fft // 2 + 1 - t))
    spec = torch.stft(
        flat,
        cfg.n_fft,
        hop_length=cfg.hop,
        window=cfg.window(x.device, x.dtype),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.reshape(*lead, spec.shape[-2], spec.shape[-1])


def istft(spec: Tensor, cfg: StftConfig, length: int) -> Tensor:
    """Inverse of :func:`stft`: (..., F, N) complex -> (..., length) real."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, spec.shape[-2], spec.shape[-1])
    real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
    y = torch.istft(
        flat,
        cfg.n_fft,
        hop_length=cfg.hop,
        window=cfg.window(flat.device, real_dtype),
        center=True,
        length=length,
    )
    return y.reshape(*lead, length)
