"""Signals for the action tests: a speech-like buzz, a real talking-head clip, noise, SI-SDR."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

SR = 16000


def si_sdr(estimate: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> float:
    """Scale-invariant SDR in dB of a 1-D estimate against a 1-D reference."""
    est = np.asarray(estimate, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    est = est - est.mean()
    ref = ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    residual = est - target
    return float(10 * np.log10((target @ target) / max(residual @ residual, 1e-20)))


def speech_like(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> torch.Tensor:
    """Harmonic buzz (f0 110-150 Hz with drift, formant-ish tilt) under a 4 Hz syllable envelope.

    Returns (1, T) float32 with peak 0.5; about a third of the time is near-silent pauses, like
    speech.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 20 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = np.zeros_like(t)
    for k in range(1, 30):
        if k * 150 > sr / 2 - 500:
            break
        formant = np.exp(-((((k * 130) - 500) / 400) ** 2)) + 0.5 * np.exp(
            -((((k * 130) - 1500) / 600) ** 2)
        )
        sig += (1.0 / k + formant) * np.sin(k * phase + rng.uniform(0, 6.28))
    # syllables: raised-cosine bursts of random length, with pauses
    env = np.zeros_like(t)
    pos = 0.1
    while pos < seconds - 0.1:
        dur = rng.uniform(0.12, 0.3)
        idx = (t >= pos) & (t < pos + dur)
        env[idx] = np.sin(np.pi * (t[idx] - pos) / dur) ** 2 * rng.uniform(0.5, 1.0)
        pos += dur + rng.uniform(0.05, 0.25)
    sig = sig * env
    sig = 0.5 * sig / np.abs(sig).max()
    return torch.from_numpy(sig.astype(np.float32))[None]


def add_white_noise(clean: torch.Tensor, snr_db: float, seed: int = 1) -> torch.Tensor:
    """clean + white Gaussian noise at ``snr_db`` (power ratio over the whole clip)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=gen)
    p_s = clean.double().pow(2).mean()
    p_n = noise.double().pow(2).mean()
    noise = noise * torch.sqrt(p_s / (p_n * 10 ** (snr_db / 10))).float()
    return clean + noise


def decode_audio(path: Path, sr: int = SR, seconds: float | None = None) -> torch.Tensor:
    """Decode an AV file's audio with PyAV to mono float32 at ``sr``: (1, T)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32)
    if seconds is not None:
        audio = audio[: int(seconds * sr)]
    return torch.from_numpy(audio)[None]


def tone(freq: float, seconds: float, sr: int = SR, amplitude: float = 0.5) -> torch.Tensor:
    """(1, T) float32 sine computed in float64 (phase-accurate for long clips)."""
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()[None]


@pytest.fixture(scope="session")
def real_speech(real_av_dir: Path) -> torch.Tensor:
    """4 s of the talking_head_2 clip's audio, 16 kHz mono, (1, T)."""
    path = real_av_dir / "talking_head_2_retalking.mp4"
    if not path.is_file():
        pytest.skip(f"missing {path}")
    return decode_audio(path, SR, seconds=4.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The machine is shared: one torch thread for the action tests, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
