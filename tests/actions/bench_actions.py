"""Timing printout for the actions (not a test): median ms per 10 s clip, one thread by default.

Run from the repo root:
    PYTHONPATH=include .venv/bin/python tests/actions/bench_actions.py [--device cuda] [--batch 8]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from avalign.actions import functional as AF

SR = 16000


def _clip(seconds: float, seed: int) -> torch.Tensor:
    """Speech-like buzz under a syllable envelope plus white noise at 10 dB SNR, (1, T)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 0.7 * t)) / SR
    sig = sum(np.sin(k * phase) / k for k in range(1, 40))
    sig *= np.sin(2 * np.pi * 2.0 * t) ** 2
    sig = 0.5 * sig / np.abs(sig).max()
    noisy = sig + rng.standard_normal(sig.shape) * np.sqrt(np.mean(sig**2) / 10)
    noisy[int(3.0 * SR) : int(3.1 * SR)] = 0.0  # one dropout for fill_blanks
    return torch.from_numpy(noisy.astype(np.float32))[None]


ACTIONS = {
    "spectral_subtraction": lambda x: AF.spectral_subtraction(x, SR),
    "wiener_filter": lambda x: AF.wiener_filter(x, SR),
    "wavelet_denoise": lambda x: AF.wavelet_denoise(x, SR),
    "spectral_gating": lambda x: AF.spectral_gating(x, SR),
    "speed_change": lambda x: AF.speed_change(x, SR, 1.1),
    "pitch_change": lambda x: AF.pitch_change(x, SR, 2.0),
    "volume_adjust": lambda x: AF.volume_adjust(x, SR, -23.0),
    "volume_adjust(limiting)": lambda x: AF.volume_adjust(x, SR, -12.0),
    "fill_blanks": lambda x: AF.fill_blanks(x, SR)[0],
    "time_shift": lambda x: AF.time_shift(x, SR, 123.0),
}


def _time(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.stack([_clip(args.seconds, i) for i in range(args.batch)]).to(args.device)
    print(
        f"device={args.device} threads={args.threads} batch={args.batch} "
        f"x {args.seconds:g} s mono {SR} Hz"
    )
    print(f"{'action':26s} {'ms/batch':>10s} {'ms/clip':>10s}")
    for name, fn in ACTIONS.items():
        ms = _time(fn, x, args.repeats)
        per_clip = ms / args.batch * 10.0 / args.seconds
        print(f"{name:26s} {ms:10.1f} {per_clip:10.1f}")
    assert math.isfinite(ms)


if __name__ == "__main__":
    main()
